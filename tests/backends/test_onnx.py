"""backend="onnx": the ONNX Runtime session behind SiamText.encode."""

from __future__ import annotations

import logging
import sys

import numpy as np
import pytest
import torch

from siamtext import SiamText
from siamtext.backends.export import quantized_file_name
from siamtext.backends.onnx import OnnxTransformer, find_onnx_file

pytest.importorskip("onnxruntime", reason="backend='onnx' needs pip install 'siamtext[onnx]'")

TEXTS = ["How do I reset my password?", "I forgot my password", "", "card declined",
         "What is the exchange rate for euros to dollars today, and is there a fee?"]


def test_session_gives_token_embeddings(tiny_model, tiny_onnx):
    batch = tiny_model.tokenize(TEXTS)
    with torch.inference_mode():
        ref = tiny_model.transformer(**batch).last_hidden_state
    out = tiny_onnx._engine(**batch)
    assert isinstance(tiny_onnx._engine, OnnxTransformer)
    assert out.shape == ref.shape and out.dtype == torch.float32
    assert (out - ref).abs().max().item() <= 1e-4


def test_arrays_in_and_out_give_what_tensors_give(tiny_model, tiny_onnx):
    """The server's lanes pad, run and pool in NumPy (no torch call); the same texts as
    tensors through ``embed`` give the same embeddings, on either session."""
    ids = tiny_onnx.token_ids(TEXTS)
    arrays = tiny_onnx.pad_arrays(ids)
    tensors = tiny_onnx.pad(ids)
    assert set(arrays) == set(tensors)
    for name, value in arrays.items():
        assert value.dtype == np.int64
        np.testing.assert_array_equal(value, tensors[name].numpy())
    with torch.inference_mode():
        want = tiny_onnx.embed(**tensors).numpy()
    for one_thread in (False, True):
        got = tiny_onnx._embed_arrays(arrays, one_thread)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    with pytest.raises(RuntimeError, match="needs an exported model"):
        tiny_model._embed_arrays(arrays)


@pytest.mark.parametrize("batch_size", [1, 2, 32])
@pytest.mark.parametrize("normalize", [True, False])
def test_encode_matches_torch(tiny_model, tiny_onnx, corpus, batch_size, normalize):
    texts = corpus[:20] + TEXTS
    ref = tiny_model.encode(texts, batch_size=batch_size, normalize=normalize)
    out = tiny_onnx.encode(texts, batch_size=batch_size, normalize=normalize)
    assert out.shape == ref.shape and out.dtype == np.float32
    assert np.abs(out - ref).max() <= 1e-4


def test_encode_options(tiny_model, tiny_onnx):
    single = tiny_onnx.encode("card declined", convert_to="torch", show_progress=True)
    assert isinstance(single, torch.Tensor) and single.shape == (tiny_onnx.embedding_dim,)
    short = tiny_onnx.encode(TEXTS, max_length=4)
    assert np.abs(short - tiny_model.encode(TEXTS, max_length=4)).max() <= 1e-4
    sim = tiny_onnx.similarity(TEXTS[:2], TEXTS)
    assert sim.shape == (2, len(TEXTS))
    assert np.abs(sim - tiny_model.similarity(TEXTS[:2], TEXTS)).max() <= 1e-4


def test_other_architectures(tiny_albert_dir, tiny_t5_dir, tmp_path):
    for name, folder in [("albert", tiny_albert_dir), ("t5", tiny_t5_dir)]:
        torch_model = SiamText(folder, device="cpu")
        torch_model.export("onnx", path=tmp_path / name)
        onnx_model = SiamText(tmp_path / name, backend="onnx")
        ref, out = torch_model.encode(TEXTS), onnx_model.encode(TEXTS)
        assert np.abs(out - ref).max() <= 1e-4, name


def test_save_load_round_trip(tiny_onnx, tiny_onnx_dir, tmp_path):
    quant = quantized_file_name("int8")
    model = SiamText(tiny_onnx_dir, backend="onnx", file_name=quant)
    assert model._engine.path.name == quant
    folder = model.save_pretrained(tmp_path / "saved")
    assert (folder / "onnx" / quant).is_file() and (folder / "model.safetensors").is_file()
    again = SiamText.from_pretrained(folder, backend="onnx", file_name=f"onnx/{quant}")
    assert np.array_equal(again.encode(TEXTS), model.encode(TEXTS))
    torch_again = SiamText(folder, device="cpu")  # the folder still loads on torch
    assert np.abs(torch_again.encode(TEXTS) - tiny_onnx.encode(TEXTS)).max() <= 1e-4


def test_int8_stays_close(tiny_onnx, tiny_onnx_dir, corpus):
    quant = SiamText(tiny_onnx_dir, backend="onnx", file_name=quantized_file_name("int8"))
    cos = (quant.encode(corpus[:100]) * tiny_onnx.encode(corpus[:100])).sum(axis=1)
    assert cos.min() > 0.9  # random tiny weights: a loose check; MiniLM below is the real one


def test_missing_file_lists_what_exists(tiny_onnx_dir):
    with pytest.raises(FileNotFoundError, match=r"nope\.onnx.*onnx/model\.onnx"):
        SiamText(tiny_onnx_dir, backend="onnx", file_name="nope.onnx")
    with pytest.raises(FileNotFoundError, match="holds no .onnx file"):
        find_onnx_file(tiny_onnx_dir / "1_Pooling")


def test_folder_without_onnx_is_exported_on_the_fly(tiny_model, tiny_bert_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="siamtext.backends"):
        model = SiamText(tiny_bert_dir, backend="onnx")
    assert "exporting it now" in caplog.text
    assert not any(tiny_bert_dir.rglob("*.onnx"))  # the source folder is left alone
    assert np.abs(model.encode(TEXTS) - tiny_model.encode(TEXTS)).max() <= 1e-4


def test_fit_is_refused(tiny_onnx):
    with pytest.raises(ValueError, match="fit needs backend='torch'"):
        tiny_onnx.fit([{"anchor": "a", "positive": "b"}])


def test_bad_arguments(tiny_bert_dir, tiny_onnx):
    with pytest.raises(ValueError, match="backend must be one of"):
        SiamText(tiny_bert_dir, backend="tensorrt")
    with pytest.raises(ValueError, match="runs on CPU"):
        SiamText(tiny_bert_dir, backend="onnx", device="cuda")
    with pytest.raises(ValueError, match="precision='bf16'"):
        tiny_onnx.encode(TEXTS, precision="bf16")
    with pytest.raises(ValueError, match="runs on CPU"):
        tiny_onnx.encode(TEXTS, devices=["cpu", "cuda:0"])


@pytest.mark.parametrize("package", ["onnxruntime", "onnx"])
def test_missing_package_names_the_extra(tiny_model, tiny_onnx_dir, tmp_path, monkeypatch,
                                         package):
    monkeypatch.setitem(sys.modules, package, None)  # import fails as if not installed
    with pytest.raises(ImportError, match=r"pip install 'siamtext\[onnx\]'"):
        tiny_model.export("onnx", path=tmp_path)
    assert not any(tmp_path.iterdir())
    if package == "onnxruntime":
        with pytest.raises(ImportError, match=r"pip install 'siamtext\[onnx\]'"):
            SiamText(tiny_onnx_dir, backend="onnx")


def test_a_file_the_engine_cannot_run_falls_back_to_torch(tiny_model, tiny_onnx_dir,
                                                         tmp_path, caplog):
    import shutil

    folder = tmp_path / "broken"
    shutil.copytree(tiny_onnx_dir, folder)
    import onnx

    graph = onnx.load(str(folder / "onnx" / "model.onnx"))
    graph.opset_import[0].version = 999  # an opset no runtime knows
    onnx.save(graph, str(folder / "onnx" / "model.onnx"))
    with caplog.at_level(logging.WARNING, logger="siamtext.backends"):
        model = SiamText(folder, backend="onnx")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "encoding with torch instead" in warnings[0].getMessage()
    assert model.backend == "torch" and model._engine is None
    assert np.array_equal(model.encode(TEXTS), tiny_model.encode(TEXTS))


def test_a_file_name_outside_the_folder_is_refused(tiny_onnx_dir):
    with pytest.raises(ValueError, match="leads outside"):
        SiamText(tiny_onnx_dir, backend="onnx", file_name="../../etc/model.onnx")


def test_a_process_pool_runs_the_same_exported_file(tiny_onnx, tiny_onnx_dir):
    texts = [f"{t} {i}" for i in range(12) for t in TEXTS]
    int8 = SiamText(tiny_onnx_dir, backend="onnx", file_name=quantized_file_name("int8"))
    pooled8 = int8.encode(texts, devices=["cpu"], batch_size=4)
    # the worker runs the int8 file: close to this process's int8 (its activation scales
    # follow the batch, and the pool batches differently), not equal to the fp32 file
    assert np.abs(pooled8 - int8.encode(texts, batch_size=4)).max() <= 5e-3
    assert np.abs(pooled8 - tiny_onnx.encode(texts, batch_size=4)).max() > 1e-5


def test_classifiers_run_on_an_exported_model_and_keep_it(tiny_onnx, tiny_onnx_dir, tmp_path):
    from siamtext import DuplicateDetector, IntentClassifier

    quant = quantized_file_name("int8")
    model = SiamText(tiny_onnx_dir, backend="onnx", file_name=quant)
    texts = ["card declined", "my card was declined", "reset password", "forgot password"]
    labels = ["card", "card-declined", "reset", "forgot"]  # one text each: its own prototype
    clf = IntentClassifier(model).fit(texts, labels)
    assert list(clf.predict(texts)) == labels
    clf.save(tmp_path / "clf")
    again = IntentClassifier.load(tmp_path / "clf", backend="onnx", file_name=quant)
    assert again.model.backend == "onnx" and again.model._engine.path.name == quant
    assert list(again.predict(texts)) == labels
    det = DuplicateDetector(model, threshold=0.99)
    assert det.is_duplicate("card declined", "card declined")
    found = det.find_duplicates(texts + ["card declined"])
    assert [0, 4] in found.groups


def test_file_name_says_which_exported_file_runs(tiny_model, tiny_onnx, tiny_onnx_dir):
    quant = quantized_file_name("int8")
    assert SiamText(tiny_onnx_dir, backend="onnx", file_name=quant).file_name == quant
    assert tiny_onnx.file_name == "model.onnx" and tiny_model.file_name is None


def test_concurrent_batches_give_the_one_at_a_time_result(tiny_onnx_dir, corpus, monkeypatch):
    import threading

    model = SiamText(tiny_onnx_dir, backend="onnx")
    engine = model._engine
    texts = corpus[:40] + TEXTS
    monkeypatch.setattr(engine, "concurrency", 1)
    one_at_a_time = model.encode(texts, batch_size=4)

    threads, real = set(), engine.one_thread

    def one_thread(*args, **kwargs):
        threads.add(threading.get_ident())
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "concurrency", 3)
    monkeypatch.setattr(engine, "one_thread", one_thread)
    together = model.encode(texts, batch_size=4)
    assert np.array_equal(together, one_at_a_time)  # the same batches, so the same rows
    assert len(threads) > 1 and threading.get_ident() not in threads
    # a single batch runs on the session with every thread
    threads.clear()
    model.encode(texts[:4], batch_size=4)
    assert not threads

    def failing(*args, **kwargs):
        raise RuntimeError("engine failed")

    monkeypatch.setattr(engine, "one_thread", failing)
    with pytest.raises(RuntimeError, match="engine failed"):
        model.encode(texts, batch_size=4)


def test_set_threads_rebuilds_the_session_with_the_same_output(tiny_model, tiny_onnx_dir):
    engine = OnnxTransformer(tiny_onnx_dir / "onnx" / "model.onnx", threads=1)
    assert engine.threads == 1 and engine.concurrency == 1
    batch = tiny_model.tokenize(TEXTS)
    before = engine(**batch)
    session = engine.session
    engine.set_threads(2)
    assert engine.threads == 2 and engine.concurrency == 2 and engine.session is not session
    assert torch.equal(engine(**batch), before)
    engine.set_threads(2)  # the same count: nothing rebuilt
    assert engine.threads == 2
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="threads must be a positive integer"):
            engine.set_threads(bad)
    assert engine.threads == 2
