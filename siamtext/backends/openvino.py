"""Run an exported transformer with OpenVINO on CPU, and write OpenVINO files.

:class:`OpenVINOTransformer` stands in for the torch transformer inside
:meth:`siamtext.SiamText.embed`, like the ONNX Runtime session of
:mod:`siamtext.backends.onnx`. The IR is converted from the same ONNX graph
(``ov.convert_model``), so it has the same inputs and the ``last_hidden_state`` output, and
is saved in fp32 as ``openvino/openvino_model.xml`` + ``.bin``, the names
sentence-transformers uses.

int8 is static post-training quantisation with NNCF (``nncf.quantize``,
``ModelType.TRANSFORMER``), calibrated on a few hundred texts: the scales are fixed, so an
int8 embedding does not depend on its batch neighbours (ONNX Runtime's dynamic quantisation
computes one scale per batch). It is saved as ``openvino/openvino_model_qint8_quantized.xml``
as sentence-transformers' ``export_static_quantized_openvino_model`` names it.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from siamtext.backends import (
    DEFAULT_FILES,
    FOLDERS,
    default_threads,
    graph_inputs,
    output_name,
    require,
)
from siamtext.backends.export import export_onnx
from siamtext.samples import load_demo_intents, load_demo_questions
from siamtext.validation import check_positive_int

if TYPE_CHECKING:
    from siamtext.model import SiamText

OV_DIR, OV_FILE = FOLDERS["openvino"], DEFAULT_FILES["openvino"]
QUANTIZED_FILE = "openvino_model_qint8_quantized.xml"
#: Calibration texts used per quantisation when the caller gives none.
CALIBRATION_SIZE = 300


def require_openvino():
    """Import and return ``openvino``; a missing one names ``siamtext[openvino]``."""
    return require("openvino", "openvino")


def require_engine() -> None:
    """Check that OpenVINO is there (naming ``siamtext[openvino]`` when it is not)."""
    require_openvino()


class OpenVINOTransformer:
    """A compiled OpenVINO model that maps a padded batch to token embeddings.

    Each thread gets its own infer request (a request is not safe to share), so calls from
    several threads run side by side. Calling the engine runs a batch on every thread;
    :meth:`one_thread` runs it on one of ``threads`` streams of a second compilation
    (OpenVINO's own way to run several requests at once), which is what ``SiamText.encode``
    and the server's inference lanes use for concurrent batches, as with ONNX Runtime
    (``concurrency``).

    Args:
        path: The IR ``.xml`` (with its ``.bin`` beside it) or an ``.onnx`` file.
        threads: Inference threads; ``None``: :func:`~siamtext.backends.default_threads`.

    Raises:
        ImportError: If openvino is not installed.
        ValueError: If the graph has no token-embedding output.
    """

    def __init__(self, path: str | Path, *, threads: int | None = None) -> None:
        self._ov = require_openvino()
        self.path = Path(path)
        self._tmp: object | None = None  # keeps a temporary export folder alive
        #: Inference threads of the compiled model.
        self.threads = threads or default_threads()
        #: Batches run at once by ``SiamText.encode`` and the server's lanes: one per stream.
        self.concurrency = self.threads
        self._streams_lock = threading.Lock()
        self._compile(self.threads)

    def _compile(self, threads: int) -> None:
        core = self._ov.Core()
        model = core.read_model(str(self.path))
        outputs = {name: i for i, out in enumerate(model.outputs) for name in out.get_names()}
        self._output = outputs[output_name(self.path, list(outputs))]
        # fp32 arithmetic: on CPUs with bf16 units OpenVINO would otherwise pick bf16
        self.compiled = core.compile_model(model, "CPU", {
            "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "f32",
        })
        self.input_names = [i.get_any_name() for i in self.compiled.inputs]
        self._local = threading.local()
        self._model = model
        #: The streams' compilation (:meth:`one_thread`), made on first use with this count.
        self._streams: object | None = None

    def set_threads(self, threads: int) -> None:
        """Run on ``threads`` inference threads from now on (the model is compiled again),
        as :meth:`siamtext.backends.onnx.OnnxTransformer.set_threads`.

        Raises:
            ValueError: If ``threads`` is not a positive integer.
        """
        check_positive_int(threads, "threads")
        if threads != self.threads:
            self._compile(threads)
            self.threads = threads
            self.concurrency = threads

    def _request(self):
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        return request

    def _stream_request(self):
        request = getattr(self._local, "stream_request", None)
        if request is None:  # one per thread; _compile starts a new thread-local
            request = self._local.stream_request = self._compiled_streams().create_infer_request()
        return request

    def _compiled_streams(self):
        with self._streams_lock:
            if self._streams is None:
                # one thread per stream; measured against ONNX Runtime's one-thread sessions
                # on the passes a server makes of merged single texts: docs/benchmarks.md
                self._streams = self._ov.Core().compile_model(self._model, "CPU", {
                    "NUM_STREAMS": self.threads,
                    "INFERENCE_NUM_THREADS": self.threads,
                    "INFERENCE_PRECISION_HINT": "f32",
                })
            return self._streams

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 **inputs: torch.Tensor) -> torch.Tensor:
        """Token embeddings ``(batch, seq, dim)`` (float32, CPU) of a padded batch."""
        return self._infer(self._request(), input_ids, attention_mask, **inputs)

    def one_thread(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   **inputs: torch.Tensor) -> torch.Tensor:
        """As calling the engine, on one stream (one thread) of a second compilation with
        ``threads`` streams, which several Python threads run at once (OpenVINO releases
        the GIL in ``infer``). It is compiled on first use."""
        return self._infer(self._stream_request(), input_ids, attention_mask, **inputs)

    def _infer(self, request, input_ids: torch.Tensor, attention_mask: torch.Tensor,
               **inputs: torch.Tensor) -> torch.Tensor:
        feed = graph_inputs(self.input_names, self.path, input_ids=input_ids,
                            attention_mask=attention_mask, **inputs)
        result = request.infer(feed)
        # the request reuses its output buffer at the next call: copy out
        return torch.from_numpy(np.array(result[self._output], dtype=np.float32, copy=True))

    def __repr__(self) -> str:
        return f"OpenVINOTransformer({str(self.path)!r})"


def export_ir(model: SiamText, path: Path) -> Path:
    """Write ``model``'s transformer as an fp32 OpenVINO IR (``path`` ``.xml`` + ``.bin``),
    converted from its ONNX graph."""
    ov = require_openvino()
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="siamtext-onnx-") as tmp:
        onnx_path = export_onnx(model, Path(tmp) / "model.onnx")
        ov.save_model(ov.convert_model(str(onnx_path)), str(path), compress_to_fp16=False)
    return path


def quantize_ir(model: SiamText, source: Path, target: Path,
                calibration_texts: list[str] | None = None, batch_size: int = 16) -> Path:
    """Static int8 quantisation of an fp32 IR with NNCF, calibrated on ``calibration_texts``
    (default: the sample intents and questions shipped with siamtext, :mod:`siamtext.samples`)."""
    ov = require_openvino()
    nncf = require("openvino", "nncf")
    texts = list(calibration_texts) if calibration_texts is not None else _default_calibration()
    if not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError("calibration_texts must be a non-empty list of strings")
    ir = ov.Core().read_model(str(source))
    names = [i.get_any_name() for i in ir.inputs]
    batches = []
    for start in range(0, len(texts), batch_size):
        batch = model.tokenize(texts[start : start + batch_size])
        batches.append({n: batch[n].numpy().astype(np.int64) if n in batch
                        else np.zeros_like(batch["input_ids"].numpy(), dtype=np.int64)
                        for n in names})
    # NNCF draws its progress bars on stdout, which the CLI keeps for results
    with contextlib.redirect_stdout(sys.stderr):
        quantized = nncf.quantize(ir, nncf.Dataset(batches),
                                  model_type=nncf.ModelType.TRANSFORMER,
                                  subset_size=len(batches))
    ov.save_model(quantized, str(target), compress_to_fp16=False)
    return target


def _default_calibration() -> list[str]:
    """The first :data:`CALIBRATION_SIZE` of the sample intents and questions
    (:mod:`siamtext.samples`)."""
    return (load_demo_intents()[0] + load_demo_questions())[:CALIBRATION_SIZE]


#: What :func:`siamtext.backends.load_engine` builds from a file, and how it writes one.
ENGINE = OpenVINOTransformer
export_file = export_ir


def export(model: SiamText, folder: Path, quantize: str | None,
           calibration_texts: list[str] | None) -> Path:
    """Write ``openvino/openvino_model.xml`` (and the int8 IR when asked) into a saved
    model folder; returns the file to load."""
    fp32 = folder / OV_DIR / OV_FILE
    if not fp32.is_file() or model.backend != "openvino":
        export_ir(model, fp32)
    if quantize is None:
        return fp32
    return quantize_ir(model, fp32, folder / OV_DIR / QUANTIZED_FILE, calibration_texts)


__all__ = ["ENGINE", "OpenVINOTransformer", "QUANTIZED_FILE", "export", "export_file",
           "export_ir", "quantize_ir", "require_engine", "require_openvino"]
