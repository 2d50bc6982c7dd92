"""sentence-transformers loads an exported siamtext folder with its own ``backend=``.

sentence-transformers' onnx/openvino back ends need optimum (transformers < 4.58), which
cannot share our venv: the check runs in the venv ``make peer-venv`` builds
(``benchmarks/.peer-venv``, or ``$SIAMTEXT_PEER_PYTHON``), in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from siamtext import SiamText

REPO = Path(__file__).resolve().parents[2]
PEER_VENV = REPO / "benchmarks" / ".peer-venv"
PEER_PYTHON = Path(os.environ.get("SIAMTEXT_PEER_PYTHON", PEER_VENV / "bin" / "python"))
# `make peer-venv` stamps the venv once everything is installed
PEER_READY = PEER_PYTHON.is_file() and ("SIAMTEXT_PEER_PYTHON" in os.environ
                                        or (PEER_VENV / ".installed").is_file())
TEXTS = ["How do I reset my password?", "I forgot my password", "card declined",
         "What is the exchange rate for euros to dollars today, and is there a fee?"]

SCRIPT = """
import json, sys
import numpy as np
from sentence_transformers import SentenceTransformer

folder, backend, file_name, texts, out = sys.argv[1:6]
kwargs = {"file_name": file_name}
if backend == "openvino":  # fp32 as siamtext runs it; OpenVINO may pick bf16 on its own
    kwargs["ov_config"] = {"INFERENCE_PRECISION_HINT": "f32"}
model = SentenceTransformer(folder, backend=backend, device="cpu", model_kwargs=kwargs)
np.save(out, model.encode(json.loads(texts), convert_to_numpy=True))
"""

pytestmark = pytest.mark.skipif(
    not PEER_READY,
    reason=f"no sentence-transformers peer venv at {PEER_PYTHON}: run `make peer-venv`")


def st_encode(folder: Path, backend: str, file_name: str, tmp_path: Path) -> np.ndarray:
    out = tmp_path / f"{backend}-{file_name}.npy"
    proc = subprocess.run([str(PEER_PYTHON), "-c", SCRIPT, str(folder), backend, file_name,
                           json.dumps(TEXTS), str(out)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return np.load(out)


@pytest.mark.parametrize("backend,quantize", [("onnx", None), ("onnx", "int8"),
                                              ("openvino", None)])
def test_sentence_transformers_runs_our_exported_file(minilm, tmp_path, backend, quantize):
    if backend == "openvino":
        pytest.importorskip("openvino")
    pytest.importorskip("onnx")
    folder = tmp_path / "exported"
    path = minilm.export(backend, path=folder, quantize=quantize)
    ours = SiamText(folder, backend=backend, file_name=path.name).encode(TEXTS)
    theirs = st_encode(folder, backend, path.name, tmp_path)
    assert theirs.shape == ours.shape
    assert np.abs(theirs - ours).max() <= 1e-4
