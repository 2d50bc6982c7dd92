"""backend="openvino": the compiled OpenVINO model behind SiamText.encode."""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest

from siamtext import SiamText
from siamtext.backends.openvino import QUANTIZED_FILE, OpenVINOTransformer

pytest.importorskip("openvino", reason="backend='openvino' needs pip install 'siamtext[openvino]'")

TEXTS = ["How do I reset my password?", "I forgot my password", "", "card declined",
         "What is the exchange rate for euros to dollars today, and is there a fee?"]


@pytest.mark.parametrize("batch_size", [1, 32])
def test_encode_matches_torch(tiny_model, tiny_ov, corpus, batch_size):
    assert isinstance(tiny_ov._engine, OpenVINOTransformer) and tiny_ov.backend == "openvino"
    texts = corpus[:20] + TEXTS
    ref = tiny_model.encode(texts, batch_size=batch_size)
    out = tiny_ov.encode(texts, batch_size=batch_size)
    assert out.shape == ref.shape and out.dtype == np.float32
    assert np.abs(out - ref).max() <= 1e-4


def test_files_have_the_sentence_transformers_names(tiny_ov_dir):
    names = sorted(p.name for p in (tiny_ov_dir / "openvino").iterdir())
    assert names == ["openvino_model.bin", "openvino_model.xml",
                     "openvino_model_qint8_quantized.bin", "openvino_model_qint8_quantized.xml"]


def test_int8_is_close_and_independent_of_the_batch(tiny_ov, tiny_ov_dir, corpus):
    int8 = SiamText(tiny_ov_dir, backend="openvino", file_name=QUANTIZED_FILE)
    one, many = int8.encode(corpus[:40], batch_size=1), int8.encode(corpus[:40], batch_size=32)
    assert np.abs(one - many).max() <= 1e-4  # static scales: no batch-neighbour effect
    cos = (many * tiny_ov.encode(corpus[:40])).sum(axis=1)
    assert cos.min() > 0.9  # random tiny weights: a loose check; MiniLM below is the real one


def test_save_load_round_trip_and_hub_check(tiny_ov_dir, tmp_path):
    from siamtext.hub import model_files

    model = SiamText(tiny_ov_dir, backend="openvino", file_name=QUANTIZED_FILE)
    folder = model.save_pretrained(tmp_path / "saved")
    assert (folder / "openvino" / QUANTIZED_FILE).is_file()
    assert (folder / "openvino" / QUANTIZED_FILE.replace(".xml", ".bin")).is_file()
    again = SiamText(folder, backend="openvino", file_name=QUANTIZED_FILE)
    assert np.array_equal(again.encode(TEXTS), model.encode(TEXTS))
    pushed = {p.as_posix() for p in model_files(folder)}  # IR weights are not pickles
    assert "openvino/openvino_model_qint8_quantized.bin" in pushed
    (folder / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ValueError, match="pytorch_model.bin"):
        model_files(folder)


def test_threads_share_one_model(tiny_ov):
    want = tiny_ov.encode(TEXTS)
    got: list[np.ndarray] = [None] * 8  # type: ignore[list-item]

    def work(i: int) -> None:
        got[i] = tiny_ov.encode(TEXTS)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(g, want) for g in got)


def test_missing_file_and_fit(tiny_ov_dir, tiny_ov):
    with pytest.raises(FileNotFoundError, match=r"nope\.xml.*openvino/openvino_model\.xml"):
        SiamText(tiny_ov_dir, backend="openvino", file_name="nope.xml")
    with pytest.raises(ValueError, match="fit needs backend='torch'"):
        tiny_ov.fit([{"anchor": "a", "positive": "b"}])


def test_missing_package_names_the_extra(tiny_ov_dir, tiny_model, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(ImportError, match=r"pip install 'siamtext\[openvino\]'"):
        SiamText(tiny_ov_dir, backend="openvino")
    with pytest.raises(ImportError, match=r"pip install 'siamtext\[openvino\]'"):
        tiny_model.export("openvino", path=tmp_path / "x")
    assert not (tmp_path / "x").exists()


@pytest.mark.integration
def test_minilm_fp32_and_int8(minilm, corpus, tmp_path):
    minilm.export("openvino", path=tmp_path, quantize="int8")
    fp32 = SiamText(tmp_path, backend="openvino")
    int8 = SiamText(tmp_path, backend="openvino", file_name=QUANTIZED_FILE)
    ref = fp32.encode(corpus, batch_size=64)
    assert np.abs(ref[:64] - minilm.encode(corpus[:64])).max() <= 1e-4
    cos = (int8.encode(corpus, batch_size=64) * ref).sum(axis=1)
    assert cos.mean() >= 0.99 and cos.min() >= 0.95, (cos.mean(), cos.min())


def test_cli_export_calibrates_on_the_given_texts(tiny_bert_dir, corpus, tmp_path, capsys):
    pytest.importorskip("nncf")
    from siamtext.cli import main

    calibration = tmp_path / "calibration.txt"
    calibration.write_text("".join(t + "\n" for t in corpus[:50]))
    out = tmp_path / "ov"
    assert main(["export", str(tiny_bert_dir), str(out), "--backend", "openvino",
                 "--quantize", "int8", "--calibration", str(calibration)]) == 0
    assert capsys.readouterr().out.strip() == f"openvino/{QUANTIZED_FILE}"
    model = SiamText(out, backend="openvino", file_name=QUANTIZED_FILE)
    assert model.encode(TEXTS).shape == (len(TEXTS), model.embedding_dim)
    with pytest.raises(ValueError, match="calibration_texts must be a non-empty list"):
        SiamText(tiny_bert_dir).export("openvino", path=tmp_path / "bad", quantize="int8",
                                       calibration_texts=[])
    assert not (tmp_path / "bad").exists()  # refused before anything is written


def test_set_threads_compiles_again_with_the_same_output(tiny_model, tiny_ov_dir):
    import torch

    engine = OpenVINOTransformer(tiny_ov_dir / "openvino" / "openvino_model.xml", threads=1)
    batch = tiny_model.tokenize(TEXTS)
    before = engine(**batch)
    compiled = engine.compiled
    engine.set_threads(2)
    assert engine.threads == 2 and engine.compiled is not compiled
    assert engine.compiled.get_property("INFERENCE_NUM_THREADS") == 2
    assert torch.allclose(engine(**batch), before, atol=1e-5)
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        engine.set_threads(0)


def test_streams_run_concurrent_batches_with_the_same_output(tiny_model, tiny_ov_dir, corpus):
    engine = OpenVINOTransformer(tiny_ov_dir / "openvino" / "openvino_model.xml", threads=2)
    assert engine.concurrency == 2
    batches = [tiny_model.tokenize(corpus[i : i + 7]) for i in range(0, 42, 7)]
    want = [engine(**b) for b in batches]
    got: list = [None] * len(batches)

    def work(i: int) -> None:
        got[i] = engine.one_thread(**batches[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(g.shape == w.shape and (g - w).abs().max() <= 1e-5 for g, w in zip(got, want))
    assert engine._streams.get_property("NUM_STREAMS") == 2
    assert engine._streams.get_property("INFERENCE_NUM_THREADS") == 2
    engine.set_threads(1)  # the streams follow the thread count, compiled again on first use
    assert engine.concurrency == 1 and engine._streams is None
    assert (engine.one_thread(**batches[0]) - want[0]).abs().max() <= 1e-5
    assert engine._streams.get_property("NUM_STREAMS") == 1


def test_encode_on_streams_equals_one_request(tiny_ov, corpus, monkeypatch):
    engine = tiny_ov._engine
    monkeypatch.setattr(engine, "concurrency", 1)
    alone = tiny_ov.encode(corpus[:60], batch_size=8)
    calls = []
    real = engine.one_thread

    def one_thread(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "concurrency", 2)
    monkeypatch.setattr(engine, "one_thread", one_thread)
    both = tiny_ov.encode(corpus[:60], batch_size=8)
    assert len(calls) >= 2 and np.abs(both - alone).max() <= 1e-5
