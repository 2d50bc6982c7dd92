"""Layer-reduced students (siamtext.training.distill): the layer choice and cut, the loss, a few
distillation steps, save/load/export round trips and the errors, on tiny random towers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from siamtext import SiamText
from siamtext.testing import tiny_bert
from siamtext.training.distill import distill, reduce_layers
from siamtext.training.distill_loss import EmbeddingDistillationLoss, embedding_distillation_loss
from siamtext.training.distill_trainer import TargetCollator, agreement, target_rows
from siamtext.training.layer_select import check_layers, spread_layers
from siamtext.training.projection import ProjectedSiamText, pca_projection

TEXTS = ["How do I reset my password?", "I forgot my password", "card declined"]


@pytest.fixture(autouse=True)
def one_thread():
    """Two threads on the shared 2-core machine made a 1 s training run take 27 s."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def teacher6(tmp_path_factory: pytest.TempPathFactory, corpus: list[str]) -> SiamText:
    """A 6-layer tiny BERT, whose random layers barely change its embeddings."""
    return SiamText(tiny_bert(tmp_path_factory.mktemp("t6"), corpus, num_layers=6), device="cpu")


@pytest.fixture(scope="module")
def sharp_teacher(tmp_path_factory: pytest.TempPathFactory, corpus: list[str]) -> SiamText:
    """A 4-layer tiny BERT whose layers' matrices are drawn with std 0.2 (not 0.02), so that
    every layer moves the embeddings and a 2-layer student starts far from it (held-out
    cosine -0.03)."""
    model = SiamText(tiny_bert(tmp_path_factory.mktemp("t4"), corpus, num_layers=4),
                     device="cpu")
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.transformer.encoder.layer.parameters():
            if param.ndim == 2:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.2)
    return model


@pytest.fixture(scope="module")
def student(sharp_teacher: SiamText, corpus: list[str]) -> SiamText:
    return distill(sharp_teacher, corpus, 2, epochs=2, batch_size=16, learning_rate=3e-3,
                   show_progress=False)


def _layer_tensors(model: SiamText, index: int) -> dict[str, torch.Tensor]:
    return model.transformer.encoder.layer[index].state_dict()


# ---------------------------------------------------------------------- layer choice
@pytest.mark.parametrize(("total", "count", "expected"), [
    (6, 3, [0, 2, 5]),      # 0, 2.5 -> 2 (half to even), 5
    (6, 4, [0, 2, 3, 5]),   # 0, 1.67, 3.33, 5
    (6, 2, [0, 5]),
    (6, 1, [0]),
    (6, 6, [0, 1, 2, 3, 4, 5]),
    (12, 4, [0, 4, 7, 11]),  # 0, 3.67, 7.33, 11
    (12, 6, [0, 2, 4, 7, 9, 11]),  # 0, 2.2, 4.4, 6.6, 8.8, 11
])
def test_spread_layers(total, count, expected):
    assert spread_layers(total, count) == expected
    assert check_layers(count, total) == expected


def test_student_layers_are_the_teachers_chosen_ones_by_count(teacher6):
    student = reduce_layers(teacher6, 3)
    assert len(student.transformer.encoder.layer) == 3
    assert student.transformer.config.num_hidden_layers == 3
    for new, old in enumerate([0, 2, 5]):
        mine, theirs = _layer_tensors(student, new), _layer_tensors(teacher6, old)
        assert mine.keys() == theirs.keys()
        for name in theirs:
            assert torch.equal(mine[name], theirs[name]), (new, old, name)
        assert mine["attention.self.query.weight"].data_ptr() != \
            theirs["attention.self.query.weight"].data_ptr()  # a copy, not the teacher's
    embeddings = student.transformer.embeddings.state_dict()
    for name, tensor in teacher6.transformer.embeddings.state_dict().items():
        assert torch.equal(embeddings[name], tensor), name
    assert student.transformer.encoder.layer[2].attention.self.layer_idx == 2
    assert len(teacher6.transformer.encoder.layer) == 6  # the teacher is not changed
    assert teacher6.transformer.config.num_hidden_layers == 6
    assert student.config == teacher6.config and student.embedding_dim == teacher6.embedding_dim


def test_student_layers_are_the_teachers_chosen_ones_by_index(teacher6):
    student = reduce_layers(teacher6, [1, 4])
    assert student.transformer.config.num_hidden_layers == 2
    for new, old in enumerate([1, 4]):
        mine, theirs = _layer_tensors(student, new), _layer_tensors(teacher6, old)
        assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
    # the cut model is what the teacher's embeddings and those two layers compute (one text
    # at a time: no padding, so no attention mask to build)
    for text in TEXTS:
        batch = teacher6.tokenize([text])
        with torch.inference_mode():
            hidden = teacher6.transformer.embeddings(input_ids=batch["input_ids"],
                                                     token_type_ids=batch["token_type_ids"])
            for old in (1, 4):
                out = teacher6.transformer.encoder.layer[old](hidden)
                hidden = out[0] if isinstance(out, tuple) else out
            ref = student.transformer(**batch).last_hidden_state
        assert torch.allclose(hidden, ref, atol=1e-5)


# ---------------------------------------------------------------------- loss
def test_loss_by_hand():
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    t = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    # row 0 differs by (1, -1): squares 1 + 1; row 1 by 0 -> 2 / 4 elements
    assert embedding_distillation_loss(s, t, "mse").item() == pytest.approx(0.5)
    # cosines 0 and 1 -> (1 - 0 + 1 - 1) / 2
    assert embedding_distillation_loss(s, t, "cosine").item() == pytest.approx(0.5)
    s, t = torch.tensor([[3.0, 4.0]]), torch.tensor([[6.0, 8.0]])
    assert embedding_distillation_loss(s, t, "mse").item() == pytest.approx((9 + 16) / 2)
    assert embedding_distillation_loss(s, t, "cosine").item() == pytest.approx(0.0, abs=1e-7)


def test_loss_checks_its_inputs(tiny_model):
    loss = EmbeddingDistillationLoss(tiny_model)
    batch = tiny_model.tokenize(TEXTS)
    targets = torch.from_numpy(tiny_model.encode(TEXTS))
    assert loss([batch], targets).item() < 1e-10  # the model against itself
    with pytest.raises(ValueError, match="shape"):
        loss([batch], targets[:2])
    with pytest.raises(ValueError, match="targets"):
        loss([batch], None)
    with pytest.raises(ValueError, match="1 feature group"):
        loss([batch, batch], targets)
    with pytest.raises(ValueError, match="metric"):
        EmbeddingDistillationLoss(tiny_model, metric="l1")
    assert loss.get_config_dict() == {"metric": "mse"}


def test_rows_and_collator_carry_the_targets(tiny_model):
    targets = np.arange(3 * tiny_model.embedding_dim, dtype=np.float32).reshape(3, -1)
    rows = target_rows(tiny_model, TEXTS, targets)
    batch = TargetCollator(tiny_model)([rows[2], rows[0]])
    assert torch.equal(batch["labels"], torch.from_numpy(targets[[2, 0]]))
    assert batch["features"][0]["input_ids"].shape[0] == 2
    with pytest.raises(ValueError, match="targets"):
        target_rows(tiny_model, TEXTS, targets[:2])


def test_agreement_by_hand():
    out = agreement(np.array([[1.0, 0.0], [0.0, 2.0]]), np.array([[0.0, 1.0], [0.0, 1.0]]))
    assert out["teacher_cosine"] == pytest.approx(0.5)  # cosines 0 and 1
    assert out["teacher_cosine_min"] == pytest.approx(0.0)
    assert out["teacher_mse"] == pytest.approx((1 + 1 + 0 + 1) / 4)


# ---------------------------------------------------------------------- training
def test_distillation_brings_the_student_to_the_teacher(student, sharp_teacher, corpus):
    info = student.card_data.training["distillation"]
    history = info["history"]
    assert [h["epoch"] for h in history] == [0.0, 1.0, 2.0]
    assert info["layers"] == [0, 3] and info["teacher_layers"] == 4
    assert info["held_out"] == len(set(corpus)) // 10
    assert info["texts"] + info["held_out"] == len(set(corpus))
    before, after = history[0], history[-1]
    assert before["teacher_cosine"] < 0.2  # far from the teacher at the start
    assert after["teacher_cosine"] > 0.9
    assert after["teacher_mse"] < 0.1 * before["teacher_mse"]
    assert student.card_data.eval_metrics["eval_teacher_cosine"] == \
        pytest.approx(after["teacher_cosine"])
    assert student.card_data.training["loss"] == "EmbeddingDistillationLoss"
    assert student.card_data.training["steps"] == 2 * -(-info["texts"] // 16)
    assert len(sharp_teacher.transformer.encoder.layer) == 4  # the teacher is not changed


def test_cosine_loss_and_explicit_layers_train_too(sharp_teacher, corpus):
    student = sharp_teacher.distill(corpus[:120], [1], loss="cosine", eval_size=20, epochs=1,
                                    batch_size=16, learning_rate=3e-3, show_progress=False)
    history = student.card_data.training["distillation"]["history"]
    assert history[-1]["teacher_cosine"] > history[0]["teacher_cosine"] + 0.3
    assert student.card_data.training["loss_config"] == {"metric": "cosine"}
    assert student.card_data.training["distillation"]["held_out"] == 20


def test_precomputed_teacher_embeddings_are_used(teacher6, corpus):
    texts = corpus[:40] + corpus[:5]  # repeated texts are used once
    fake = np.zeros((len(texts), teacher6.embedding_dim), dtype=np.float32)
    fake[:, 0] = 1.0  # every text's "teacher embedding" is e0
    student = distill(teacher6, texts, 1, teacher_embeddings=fake, epochs=1, batch_size=8,
                      learning_rate=1e-3, show_progress=False)
    info = student.card_data.training["distillation"]
    assert info["texts"] + info["held_out"] == 40
    history = info["history"]
    assert history[-1]["teacher_mse"] < history[0]["teacher_mse"]  # pulled towards e0


def test_time_budget_stops_after_one_step(teacher6, corpus):
    student = distill(teacher6, corpus[:80], 2, epochs=5, batch_size=8, max_time=1e-6,
                      show_progress=False)
    assert student.card_data.training["steps"] == 1
    assert student.card_data.training["distillation"]["stopped_by_time_budget"] is True


def test_checkpoints_are_loadable_students(teacher6, corpus, tmp_path):
    distill(teacher6, corpus[:60], 2, epochs=1, batch_size=16, output_dir=str(tmp_path),
            show_progress=False)
    (checkpoint,) = sorted(tmp_path.glob("checkpoint-*"))
    loaded = SiamText(checkpoint, device="cpu")
    assert loaded.transformer.config.num_hidden_layers == 2
    again = distill(teacher6, corpus[:60], 2, epochs=1, batch_size=16,
                    output_dir=str(tmp_path), resume_from_checkpoint=True, show_progress=False)
    assert np.abs(again.encode(TEXTS) - loaded.encode(TEXTS)).max() <= 1e-6  # nothing left


# ---------------------------------------------------------------------- round trips
def test_save_load_round_trip(student, tmp_path):
    folder = student.save_pretrained(tmp_path / "student")
    loaded = SiamText(folder, device="cpu")
    assert loaded.transformer.config.num_hidden_layers == 2
    assert len(loaded.transformer.encoder.layer) == 2
    assert np.array_equal(loaded.encode(TEXTS), student.encode(TEXTS))
    history = loaded.card_data.training["distillation"]["history"]
    assert history == student.card_data.training["distillation"]["history"]
    assert "EmbeddingDistillationLoss" in (folder / "README.md").read_text(encoding="utf-8")


def test_onnx_export_round_trip(student, tmp_path):
    pytest.importorskip("onnxruntime", reason="needs pip install 'siamtext[onnx]'")
    pytest.importorskip("onnx", reason="needs pip install 'siamtext[onnx]'")
    path = student.export("onnx", path=tmp_path / "onnx", quantize="int8")
    fp32 = SiamText(tmp_path / "onnx", backend="onnx")
    assert fp32.backend == "onnx"
    assert np.abs(fp32.encode(TEXTS) - student.encode(TEXTS)).max() <= 1e-4
    int8 = SiamText(tmp_path / "onnx", backend="onnx", file_name=path.name)
    cos = (int8.encode(TEXTS) * student.encode(TEXTS)).sum(axis=1)
    assert cos.min() > 0.9  # random tiny weights: a loose check
    with pytest.raises(ValueError, match="teacher runs on backend='onnx'"):
        fp32.distill(TEXTS * 10, 1)  # an exported student cannot be distilled again


def test_openvino_export_round_trip(student, tmp_path):
    pytest.importorskip("openvino", reason="needs pip install 'siamtext[openvino]'")
    student.export("openvino", path=tmp_path / "ov")
    ov = SiamText(tmp_path / "ov", backend="openvino")
    assert ov.backend == "openvino"
    assert np.abs(ov.encode(TEXTS) - student.encode(TEXTS)).max() <= 1e-4


# ---------------------------------------------------------------------- errors
@pytest.mark.parametrize(("layers", "error", "match"), [
    (7, ValueError, r"layers=7: the teacher has 6 layers"),
    (0, ValueError, r"layers=0"),
    ([0, 0, 3], ValueError, r"indices \[0\] are given more than once"),
    ([0, 6], ValueError, r"indices \[6\] are out of range; the teacher has 6 layers"),
    ([-1], ValueError, r"out of range"),
    ([3, 1], ValueError, r"increasing order"),
    ([], ValueError, r"empty list"),
    (True, TypeError, r"layers must be"),
    ("3", TypeError, r"layers must be"),
    ([1.0], TypeError, r"layer indices"),
])
def test_bad_layers(teacher6, corpus, layers, error, match, monkeypatch):
    monkeypatch.setattr("siamtext.training.distill.copy.deepcopy", _no_work)
    with pytest.raises(error, match=match):
        distill(teacher6, corpus, layers)
    with pytest.raises(error, match=match):
        reduce_layers(teacher6, layers)


def _no_work(*args, **kwargs):
    raise AssertionError("work started before the arguments were checked")


@pytest.mark.parametrize(("texts", "eval_size", "match"), [
    (TEXTS * 3, 0.1, r"texts: 3 distinct texts are too few to hold out eval_size=0.1 "
                     r"\(0 texts\).*at least 10"),
    (TEXTS, 3, r"texts: 3 distinct texts are too few to hold out eval_size=3"),
    (TEXTS, 0, r"eval_size=0"),
    (TEXTS, 1.5, r"eval_size=1.5: a share must be in \(0, 1\)"),
])
def test_too_few_texts(teacher6, texts, eval_size, match, monkeypatch):
    monkeypatch.setattr("siamtext.training.distill.copy.deepcopy", _no_work)
    with pytest.raises(ValueError, match=match):
        distill(teacher6, texts, 2, eval_size=eval_size)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"loss": "l1"}, "loss"),
    ({"epochs": 0}, "epochs"),
    ({"learning_rate": -1}, "learning_rate"),
    ({"warmup_ratio": 1}, "warmup_ratio"),
    ({"batch_size": 0}, "batch_size"),
    ({"max_time": 0}, "max_time"),
    ({"teacher_embeddings": np.zeros((3, 32))}, r"teacher_embeddings must have shape"),
    ({"mixed_precision": "fp8"}, "mixed_precision"),  # a training argument, checked first
])
def test_bad_arguments(teacher6, corpus, kwargs, match, monkeypatch):
    monkeypatch.setattr("siamtext.training.distill.copy.deepcopy", _no_work)
    with pytest.raises(ValueError, match=match):
        distill(teacher6, corpus, 2, **kwargs)


def test_bad_teacher_and_texts(teacher6, tiny_albert_dir, tiny_t5_dir):
    with pytest.raises(TypeError, match="teacher must be a SiamText"):
        distill("a model", TEXTS, 1)
    with pytest.raises(TypeError, match="texts"):
        distill(teacher6, [1, 2, 3], 1)
    with pytest.raises(ValueError, match="'albert'.*share"):
        reduce_layers(SiamText(tiny_albert_dir, device="cpu"), 1)
    with pytest.raises(ValueError, match="'t5'"):
        reduce_layers(SiamText(tiny_t5_dir, device="cpu"), 1)


def test_the_method_delegates(teacher6):
    student = teacher6.distill(TEXTS * 4 + ["a", "b", "c", "d", "e", "f", "g"], 1, epochs=1,
                               show_progress=False)
    assert isinstance(student, SiamText) and student is not teacher6
    assert student.transformer.config.num_hidden_layers == 1



# ---------------------------------------------------------------------- width reduction
def test_pca_projection_by_hand():
    # spread 2 along e0, 1 along e1, none along e2; every row offset by 5 along e2
    x = np.array([[2, 0, 5], [-2, 0, 5], [0, 1, 5], [0, -1, 5]], dtype=np.float32)
    weight, bias = pca_projection(x, 2)
    assert np.allclose(weight, [[1, 0, 0], [0, 1, 0]], atol=1e-6)
    assert np.array_equal(bias, [0.0, 0.0])  # no centring: cosines stay the teacher's
    with pytest.raises(ValueError, match="at most 3 components"):
        pca_projection(x, 4)


def test_from_model_projects_after_pooling(teacher6):
    model = reduce_layers(teacher6, 2)
    pooled = model.encode(TEXTS, normalize=False)
    eye = np.eye(5, model.embedding_dim, dtype=np.float32)  # keep the first 5 dimensions
    projected = ProjectedSiamText.from_model(model, eye, np.ones(5, dtype=np.float32))
    assert projected is model and projected.embedding_dim == 5
    assert projected.transformer_dim == teacher6.embedding_dim
    assert np.allclose(projected.encode(TEXTS, normalize=False), pooled[:, :5] + 1, atol=1e-6)
    with pytest.raises(TypeError, match="plain SiamText"):
        ProjectedSiamText.from_model(projected, eye, np.zeros(5))


@pytest.fixture(scope="module")
def narrow_student(sharp_teacher, corpus):
    return distill(sharp_teacher, corpus, 2, dims=8, epochs=2, batch_size=16,
                   learning_rate=3e-3, show_progress=False)


def test_narrow_student_trains(narrow_student):
    assert isinstance(narrow_student, ProjectedSiamText)
    assert narrow_student.embedding_dim == 8 and narrow_student.encode(TEXTS).shape == (3, 8)
    info = narrow_student.card_data.training["distillation"]
    assert info["dims"] == 8
    before, after = info["history"][0], info["history"][-1]
    assert after["teacher_cosine"] > before["teacher_cosine"] + 0.5  # -0.28 -> 0.84 measured


def test_narrow_student_save_load_and_sentence_transformers(narrow_student, teacher6, tmp_path):
    folder = narrow_student.save_pretrained(tmp_path / "narrow")
    loaded = ProjectedSiamText(folder, device="cpu")
    assert np.array_equal(loaded.encode(TEXTS), narrow_student.encode(TEXTS))
    assert loaded.card_data.training["distillation"]["dims"] == 8
    with pytest.raises(ValueError, match="Dense"):
        SiamText(folder)  # plain SiamText has no projection: refused, not other embeddings
    with pytest.raises(ValueError, match="holds no projection"):
        ProjectedSiamText(teacher6.save_pretrained(tmp_path / "plain"))
    with pytest.raises(ValueError, match="devices"):
        loaded.encode(TEXTS, devices=["cpu", "cpu"])
    st = pytest.importorskip("sentence_transformers")
    peer = st.SentenceTransformer(str(folder), device="cpu")
    assert np.abs(peer.encode(TEXTS) - narrow_student.encode(TEXTS)).max() <= 1e-5


def test_narrow_student_onnx_export(narrow_student, tmp_path):
    pytest.importorskip("onnxruntime", reason="needs pip install 'siamtext[onnx]'")
    pytest.importorskip("onnx", reason="needs pip install 'siamtext[onnx]'")
    path = narrow_student.export("onnx", path=tmp_path / "onnx", quantize="int8")
    fp32 = ProjectedSiamText(tmp_path / "onnx", backend="onnx")
    assert fp32.backend == "onnx" and fp32.embedding_dim == 8
    assert np.abs(fp32.encode(TEXTS) - narrow_student.encode(TEXTS)).max() <= 1e-4
    int8 = ProjectedSiamText(tmp_path / "onnx", backend="onnx", file_name=path.name)
    assert (int8.encode(TEXTS) * narrow_student.encode(TEXTS)).sum(axis=1).min() > 0.9
    # the server's lanes embed arrays: the projection applies there too
    from siamtext.serve.batcher import Batcher

    batcher = Batcher(fp32)
    pooled = batcher._forward([fp32.token_ids([t]) for t in TEXTS])
    assert [p.shape for p in pooled] == [(1, 8)] * len(TEXTS)
    np.testing.assert_allclose(np.concatenate(pooled), fp32.encode(TEXTS, normalize=False),
                               atol=1e-5)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"dims": 0}, "dims"),
    ({"dims": 33}, r"dims=33 is wider than the teacher's 32"),
    ({"dims": 8, "teacher_embeddings": np.zeros((320, 32))}, "teacher_embeddings cannot"),
    ({"dims": 8, "resume_from_checkpoint": True}, "resume_from_checkpoint"),
    ({"dims": 8, "load_best_model_at_end": True}, "load_best_model_at_end"),
])
def test_bad_dims(teacher6, corpus, kwargs, match, monkeypatch):
    monkeypatch.setattr("siamtext.training.distill.copy.deepcopy", _no_work)
    with pytest.raises(ValueError, match=match):
        distill(teacher6, corpus, 2, **kwargs)


def test_dims_needs_enough_texts(teacher6, corpus, monkeypatch):
    monkeypatch.setattr("siamtext.training.distill.copy.deepcopy", _no_work)
    with pytest.raises(ValueError, match=r"dims=20: PCA of 18 training texts"):
        distill(teacher6, corpus[:20], 2, dims=20, eval_size=2)


@pytest.fixture
def fake_push(monkeypatch, tmp_path):
    """push_to_hub with the upload replaced by a copy into ``tmp_path/hub/<repo>``."""
    import shutil

    import siamtext.hub as hub

    def upload(folder, repo_id, **kwargs):
        shutil.copytree(folder, tmp_path / "hub" / repo_id)
        return f"fake://{repo_id}"

    monkeypatch.setattr(hub, "_check_online", lambda: None)
    monkeypatch.setattr(hub, "resolve_token", lambda token: "token")
    monkeypatch.setattr(hub, "push_folder_to_hub", upload)
    return tmp_path / "hub"


def test_students_push_like_any_model(student, narrow_student, fake_push):
    assert student.push_to_hub("alice/student") == "fake://alice/student"
    assert narrow_student.push_to_hub("alice/narrow") == "fake://alice/narrow"
    pulled = SiamText(fake_push / "alice" / "student", device="cpu")
    assert np.array_equal(pulled.encode(TEXTS), student.encode(TEXTS))
    narrow = ProjectedSiamText(fake_push / "alice" / "narrow", device="cpu")
    assert np.array_equal(narrow.encode(TEXTS), narrow_student.encode(TEXTS))


DDP_SCRIPT = """
import json
import sys
import torch
torch.set_num_threads(1)
from siamtext import SiamText, distributed
texts = [line for line in open(sys.argv[2], encoding="utf-8").read().splitlines() if line]
student = SiamText(sys.argv[1], device="cpu").distill(
    texts, 2, epochs=1, batch_size=8, learning_rate=1e-3, show_progress=False)
info = student.card_data.training
emb = student.encode(["card lost", "reset my password"])
result = [info["world_size"], info["global_batch_size"], info["steps"], info["rows_seen"],
          float(emb.sum())]
with open(f"result_{distributed.rank()}.json", "w", encoding="utf-8") as f:
    json.dump(result, f)
"""


@pytest.mark.slow
def test_data_parallel_on_two_cpu_processes(tmp_path, corpus):
    """torchrun, 2 processes on gloo: each embeds half of every global batch of 16, both
    end with the same student (measured: 18 steps of 16, 144 rows per process)."""
    import json
    import socket
    import subprocess
    import sys

    with socket.socket() as sock:  # a free loopback port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    folder = tiny_bert(tmp_path / "teacher", corpus, num_layers=4)
    (tmp_path / "corpus.txt").write_text("\n".join(corpus), encoding="utf-8")
    (tmp_path / "run.py").write_text(DDP_SCRIPT, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_addr", "127.0.0.1", "--master_port", str(port), str(tmp_path / "run.py"),
         str(folder),
         str(tmp_path / "corpus.txt")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads((tmp_path / f"result_{rank}.json").read_text()) for rank in (0, 1)]
    n_train = len(set(corpus)) - len(set(corpus)) // 10
    for world, global_batch, steps, seen, _ in rows:
        assert (world, global_batch, steps) == (2, 16, -(-n_train // 16))
        assert seen == n_train // 2
    assert rows[0][4] == rows[1][4]  # the same weights on both processes


def test_a_narrow_student_serves_classifiers_and_an_index(narrow_student, corpus, tmp_path):
    from siamtext.classify import IntentClassifier
    from siamtext.index import Index

    texts = ["reset my password", "forgot my password", "card lost", "lost my card"]
    labels = ["password", "password", "card", "card"]
    clf = IntentClassifier(narrow_student, mode="knn", n_neighbors=1).fit(texts, labels)
    assert list(clf.predict(texts)) == labels  # each text is its own nearest neighbour
    with Index.create(tmp_path / "idx", model=narrow_student) as idx:
        ids = idx.add(texts=corpus[:20])
        assert idx.info()["dim"] == 8
        hits = idx.search(corpus[3], k=1)
        assert hits[0].id == ids[3] and hits[0].score == pytest.approx(1.0, abs=1e-5)
