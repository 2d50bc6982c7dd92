"""Exported copies of the tiny models, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_onnx_dir(tiny_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT saved with ``onnx/model.onnx`` and ``onnx/model_qint8_<isa>.onnx``."""
    pytest.importorskip("onnxruntime", reason="backend='onnx' needs pip install 'siamtext[onnx]'")
    pytest.importorskip("onnx", reason="export needs pip install 'siamtext[onnx]'")
    folder = tmp_path_factory.mktemp("tiny_onnx")
    tiny_model.export("onnx", path=folder, quantize="int8")
    return folder


@pytest.fixture(scope="session")
def tiny_onnx(tiny_onnx_dir: Path):
    from siamtext import SiamText

    return SiamText(tiny_onnx_dir, backend="onnx")


@pytest.fixture(scope="session")
def tiny_ov_dir(tiny_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT saved with ``openvino/openvino_model.xml`` and its int8 twin."""
    pytest.importorskip("openvino", reason="backend='openvino' needs siamtext[openvino]")
    pytest.importorskip("nncf", reason="int8 export needs pip install 'siamtext[openvino]'")
    folder = tmp_path_factory.mktemp("tiny_openvino")
    tiny_model.export("openvino", path=folder, quantize="int8")
    return folder


@pytest.fixture(scope="session")
def tiny_ov(tiny_ov_dir: Path):
    from siamtext import SiamText

    return SiamText(tiny_ov_dir, backend="openvino")
