"""model.export("onnx", quantize=...): the graph's contract and int8 accuracy."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from siamtext import SiamText
from siamtext.backends.export import isa_suffix, quantized_file_name

onnx = pytest.importorskip("onnx", reason="export needs pip install 'siamtext[onnx]'")


def test_graph_has_the_sentence_transformers_contract(tiny_onnx_dir):
    graph = onnx.load(str(tiny_onnx_dir / "onnx" / "model.onnx")).graph
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    assert [o.name for o in graph.output] == ["last_hidden_state"]
    for value in (*graph.input, *graph.output):
        dims = value.type.tensor_type.shape.dim
        assert [d.dim_param for d in dims[:2]] == ["batch_size", "sequence_length"]


def test_quantized_file_is_int8(tiny_onnx_dir):
    name = quantized_file_name("int8")
    assert re.fullmatch(r"model_qint8_(avx2|avx512|avx512_vnni|arm64)\.onnx", name)
    assert name.endswith(f"_{isa_suffix()}.onnx")
    graph = onnx.load(str(tiny_onnx_dir / "onnx" / name)).graph
    weights = {t.name for t in graph.initializer}
    fp32 = [n.name for n in graph.node
            if n.op_type == "MatMul" and any(i in weights for i in n.input)]
    assert fp32 == ["/transformer/encoder/layer.0/output/dense/MatMul"]  # the first down-projection
    ops = Counter(n.op_type for n in graph.node)
    assert ops["MatMulInteger"] == 6 * 2 - 1  # 2 layers of q, k, v, output, up, down
    assert ops["DynamicQuantizeLinear"] > 0
    assert sorted(p.name for p in (tiny_onnx_dir / "onnx").iterdir()) == ["model.onnx", name]


def test_export_from_an_onnx_model_keeps_its_files(tiny_onnx, tmp_path):
    path = tiny_onnx.export("onnx", path=tmp_path / "again", quantize="int8")
    assert path.name == quantized_file_name("int8") and path.is_file()
    assert (tmp_path / "again" / "onnx" / "model.onnx").is_file()


def test_bad_export_arguments(tiny_model, tmp_path):
    with pytest.raises(ValueError, match="quantize must be one of"):
        tiny_model.export("onnx", path=tmp_path, quantize="int4")
    with pytest.raises(ValueError, match="backend must be one of"):
        tiny_model.export("tensorrt", path=tmp_path)
    assert not any(tmp_path.iterdir())  # nothing written before the checks


@pytest.mark.integration
def test_minilm_fp32_and_int8(minilm, corpus, tmp_path):
    """fp32 ONNX matches torch; int8 keeps the embeddings on the 320 demo utterances
    (short intents: the hardest sample we have; on an AVX-512 VNNI Xeon they gave mean 0.9923
    / worst 0.9581 to fp32 ONNX, and 640 STS-B test sentences 0.9949 / 0.9834)."""
    minilm.export("onnx", path=tmp_path, quantize="int8")
    fp32 = SiamText(tmp_path, backend="onnx")
    int8 = SiamText(tmp_path, backend="onnx", file_name=quantized_file_name("int8"))
    ref = fp32.encode(corpus, batch_size=64)
    assert np.abs(ref[:64] - minilm.encode(corpus[:64])).max() <= 1e-4
    cos = (int8.encode(corpus, batch_size=64) * ref).sum(axis=1)
    assert cos.mean() >= 0.99 and cos.min() >= 0.95, (cos.mean(), cos.min())


def test_cli_export_then_encode_with_the_printed_file(tiny_model, tiny_bert_dir, tmp_path,
                                                      capsys):
    from siamtext.cli import main

    out = tmp_path / "exported"
    assert main(["export", str(tiny_bert_dir), str(out), "--quantize", "int8"]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed == f"onnx/{quantized_file_name('int8')}" and (out / printed).is_file()
    texts = tmp_path / "t.txt"
    texts.write_text("card declined\nI forgot my password\n")
    assert main(["encode", str(texts), "-o", str(tmp_path / "e.npy"), "--model", str(out),
                 "--backend", "onnx", "--file-name", printed, "--no-progress"]) == 0
    assert np.load(tmp_path / "e.npy").shape == (2, tiny_model.embedding_dim)
