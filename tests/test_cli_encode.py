"""``siamtext encode INPUT -o OUTPUT`` on the tiny model and small files."""

from __future__ import annotations

import json
import re

import numpy as np
import pyarrow.parquet as pq
import pytest
from safetensors.numpy import load_file

from siamtext.cli import main


def encode(tiny_bert_dir, *argv: str) -> int:
    return main(["encode", *argv, "--model", str(tiny_bert_dir), "--device", "cpu",
                 "--no-progress"])


def test_encode_jsonl_to_npy_safetensors_and_parquet(tiny_model, tiny_bert_dir, corpus,
                                                     tmp_path, capsys):
    texts = corpus[:20]
    data = tmp_path / "q.jsonl"
    data.write_text("".join(json.dumps({"question": t}) + "\n" for t in texts))
    expected = tiny_model.encode(texts)
    npy, st, par = tmp_path / "e.npy", tmp_path / "e.safetensors", tmp_path / "e.parquet"
    assert encode(tiny_bert_dir, str(data), "-o", str(npy), "--column", "question",
                  "--chunk-size", "6", "--batch-size", "4") == 0
    assert f"-> {npy} (float32)" in capsys.readouterr().err
    np.testing.assert_allclose(np.load(npy), expected, atol=1e-6)
    assert encode(tiny_bert_dir, str(data), "-o", str(st), "--column", "question",
                  "--dtype", "float16") == 0
    got = load_file(st)["embeddings"]
    np.testing.assert_array_equal(got, expected.astype(np.float16))
    assert encode(tiny_bert_dir, str(data), "-o", str(par), "--column", "question",
                  "--shard", "1/2") == 0
    table = pq.read_table(par)
    assert table.column("id").to_pylist() == list(range(10, 20))
    np.testing.assert_allclose(np.array(table.column("embedding").to_pylist()), expected[10:],
                               atol=1e-6)


@pytest.mark.parametrize(("argv", "message"), [
    (["--shard", "3/3"], "shard must be .* got '3/3'"),
    (["--shard", "1/0"], "shard must be .* got '1/0'"),
    (["--column", "question"], r"no column 'question' \(columns: \['text'\]\)"),
    (["--chunk-size", "0"], "--chunk-size must be a positive integer, got 0"),
])
def test_encode_errors_exit_2(tiny_bert_dir, tmp_path, capsys, argv, message):
    data = tmp_path / "q.csv"
    data.write_text("text\nhello\n")
    assert encode(tiny_bert_dir, str(data), "-o", str(tmp_path / "e.npy"), *argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("siamtext encode: error: ")
    assert re.search(message, err)


def test_encode_refuses_an_existing_output_and_unknown_types(tiny_bert_dir, tmp_path, capsys):
    data = tmp_path / "q.txt"
    data.write_text("hello\n\nworld\n")
    out = tmp_path / "e.npy"
    out.write_bytes(b"keep")
    assert encode(tiny_bert_dir, str(data), "-o", str(out)) == 2
    assert "exists; pass overwrite=True (--overwrite)" in capsys.readouterr().err
    assert out.read_bytes() == b"keep"
    assert encode(tiny_bert_dir, str(data), "-o", str(out), "--overwrite") == 0
    assert np.load(out).shape[0] == 3  # the empty line keeps its row
    assert encode(tiny_bert_dir, str(data), "-o", str(tmp_path / "e.csv")) == 2
    assert "expected one of ['.npy', '.parquet', '.safetensors']" in capsys.readouterr().err


def test_backend_options(tiny_model, tiny_bert_dir, corpus, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    data = tmp_path / "t.txt"
    data.write_text("".join(t + "\n" for t in corpus[:10]))
    exported = tmp_path / "exported"
    quant = tiny_model.export("onnx", path=exported, quantize="int8").name
    out = tmp_path / "e.npy"
    assert main(["encode", str(data), "-o", str(out), "--model", str(exported),
                 "--backend", "onnx", "--no-progress"]) == 0
    assert np.abs(np.load(out) - tiny_model.encode(corpus[:10])).max() <= 1e-4
    assert main(["encode", str(data), "-o", str(tmp_path / "q.npy"), "--model", str(exported),
                 "--backend", "onnx", "--file-name", quant, "--no-progress"]) == 0
    assert encode(tiny_bert_dir, str(data), "-o", str(tmp_path / "x.npy"),
                  "--file-name", quant) == 2
    assert "--file-name selects an exported file" in capsys.readouterr().err
