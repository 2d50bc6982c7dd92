"""Export a SiamText transformer to ONNX, optionally with int8 dynamic quantisation.

The graph is the transformer alone (inputs ``input_ids``, ``attention_mask`` and, when the
tokenizer gives it, ``token_type_ids``, with dynamic batch and sequence axes; output
``last_hidden_state``), the layout sentence-transformers (through Optimum) writes and reads.
Export uses ``torch.onnx.export``'s TorchScript exporter (``dynamo=False``): with torch 2.13
and transformers 5 it gives the same embeddings as the dynamo exporter (max abs difference
to torch 9e-7 for both on MiniLM-L6), writes one file rather than a graph plus external data,
takes 1.7 s instead of 10 s and runs ~5-10% faster under ONNX Runtime.

int8 is ONNX Runtime's dynamic quantisation of the MatMul weights: signed int8, symmetric,
per output channel; activations are quantised on the fly, with one scale per batch tensor,
so an int8 embedding depends a little on its batch neighbours. The first down-projection
(weights wider in than out: BERT's FFN output, T5's ``wo``) stays fp32: its input is the
first GELU/ReLU output, whose outliers eat the int8 range more than any other MatMul's (on
MiniLM-L6, 512 Banking77 texts, the signal-to-quantisation-noise ratio of the six FFN
outputs' inputs was 20.9, 21.3, 22.9, 24.3, 32.4 and 35.7 dB; the attention and up-projection
inputs 24.3 to 35.6). Measured on MiniLM-L6 against torch fp32 (cosine over 1,000 Banking77
test texts, STS-B test Spearman x100; speed: the forward passes a server makes of merged
single Banking77 texts, two one-thread sessions, median of 4 rounds; Intel Xeon with AMX and
AVX-512 VNNI, 2 cores; ad-hoc scripts):

==========================================  ========  =========  =====  ===========
variant                                     mean cos  worst cos  STS-B  texts/s
==========================================  ========  =========  =====  ===========
fp32                                        1         1          82.03  (~470)
int8, every MatMul                          0.9938    0.9854     81.63  1205.6
int8, first down-projection fp32 (chosen)   0.9951    0.9893     81.80  1099.4
int8, every down-projection fp32 (before)   0.9965    0.9916     81.78  784.8
==========================================  ========  =========  =====  ===========

Keeping any one later down-projection in fp32 instead gave 0.9938 to 0.9943 and 81.64 to
81.70. Every down-projection in fp32 was the choice on an AVX2 EPYC, where it cost only 8 %
of the speed (302 against 326 sentences/s); on VNNI and AMX the int8 MatMuls are so much
cheaper that the fp32 ones took a third of the time. Static (calibrated, QDQ) int8 was
slower and worse here (MinMax calibration on Banking77 train texts: 0.9907 mean cosine at
609.8 to 662.7 texts/s with the down-projections fp32, 0.9417 at 838.6 to 948.9 without). Per-tensor
weights (0.955 / 0.79) and unsigned weights (Optimum's AVX2 preset) are not offered.
"""

from __future__ import annotations

import logging
import platform
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
from torch import nn

from siamtext.backends import ONNX_DIR, ONNX_FILE, require, require_onnxruntime
from siamtext.validation import check_choice, check_texts

if TYPE_CHECKING:
    from siamtext.model import SiamText

logger = logging.getLogger(__name__)

Quantize = Literal["int8"]
OPSET = 17
# Two lengths, so the traced batch has padding: transformers skips an all-ones mask with
# Python branches that the tracer bakes in, and a padded sample bakes in the general path.
_SAMPLE = ["A short sentence.", "A somewhat longer sentence, so that the batch needs padding."]


class _TokenEmbeddings(nn.Module):
    """The transformer with a tensor output, as the exporter needs it."""

    def __init__(self, transformer: nn.Module, input_names: list[str]) -> None:
        super().__init__()
        self.transformer = transformer
        self.input_names = input_names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.transformer(**dict(zip(self.input_names, inputs))).last_hidden_state


def require_onnx() -> None:
    """Check that the ``onnx`` and ``onnxruntime`` packages (``siamtext[onnx]``) are there.

    Raises:
        ImportError: Naming the extra to install.
    """
    require_onnxruntime()
    require("onnx", "onnx")


def isa_suffix() -> str:
    """The instruction-set tag sentence-transformers puts in quantised file names:
    ``"arm64"``, ``"avx512_vnni"``, ``"avx512"`` or ``"avx2"``."""
    if platform.machine().lower() in {"arm64", "aarch64"}:
        return "arm64"
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="ignore").split()
    except OSError:
        flags = []
    if "avx512_vnni" in flags:
        return "avx512_vnni"
    return "avx512" if "avx512f" in flags else "avx2"


def quantized_file_name(quantize: Quantize) -> str:
    """``model_qint8_<isa>.onnx``, after sentence-transformers' names."""
    return f"model_q{quantize}_{isa_suffix()}.onnx"


def export_onnx(model: SiamText, path: str | Path) -> Path:
    """Write the fp32 ONNX graph of ``model``'s transformer to ``path`` (a ``.onnx`` file).

    Returns:
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    batch = model.tokenize(_SAMPLE)
    names = list(batch)
    axes = {0: "batch_size", 1: "sequence_length"}
    wrapper = _TokenEmbeddings(model.transformer, names).eval()
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # TracerWarnings on Python branches over shapes (mask length == key length in an
            # encoder) and the exporter's own DeprecationWarning: nothing the user can act on
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper, tuple(batch[n] for n in names), str(path), dynamo=False,
                input_names=names, output_names=["last_hidden_state"], opset_version=OPSET,
                dynamic_axes={**{n: axes for n in names}, "last_hidden_state": axes},
            )
    finally:
        model.train(was_training)
    logger.info("Exported %s", path)
    return path


def quantize_onnx(source: str | Path, target: str | Path, quantize: Quantize = "int8") -> Path:
    """Dynamic int8 quantisation of the MatMul weights of ``source`` into ``target``
    (signed, symmetric, per channel, the first down-projection left in fp32: see the module
    docstring for why).

    Returns:
        ``target``.

    Raises:
        ValueError: If ``quantize`` is not ``"int8"``.
    """
    if quantize != "int8":
        raise ValueError(f"quantize must be None or 'int8', got {quantize!r}")
    require_onnx()
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(source), load_external_data=False).graph
    shapes = {t.name: list(t.dims) for t in graph.initializer}
    down = [n.name for n in graph.node if n.op_type == "MatMul" and n.name
            and any(len(shapes.get(i, ())) == 2 and shapes[i][0] > shapes[i][1]
                    for i in n.input)]  # the graph's nodes are in topological order
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser logs a pre-processing hint on the root logger
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8,
                         per_channel=True, op_types_to_quantize=["MatMul"],
                         nodes_to_exclude=down[:1])
    finally:
        root.setLevel(level)
    return Path(target)


def export_folder(model: SiamText, folder: str | Path, backend: str = "onnx",
                  quantize: Quantize | None = None,
                  calibration_texts: list[str] | None = None) -> Path:
    """Save ``model`` to ``folder`` with its exported graph under ``onnx/`` or ``openvino/``
    (:meth:`siamtext.SiamText.export`).

    ``onnx/model.onnx`` (or ``openvino/openvino_model.xml``) is always written; with
    ``quantize="int8"`` also the int8 file. Arguments and packages are checked before
    anything is written.

    Returns:
        The file to load: the quantised one when asked for, else the fp32 one.

    Raises:
        ValueError: For another ``backend`` or ``quantize``, or empty ``calibration_texts``.
        TypeError: For ``calibration_texts`` that are not strings.
        ImportError: If the backend's packages are missing (naming the extra).
    """
    check_choice(backend, ("onnx", "openvino"), "backend")
    check_choice(quantize, (None, "int8"), "quantize")
    if calibration_texts is not None:
        calibration_texts = check_texts(calibration_texts, "calibration_texts")
        if not calibration_texts:
            raise ValueError("calibration_texts must be a non-empty list of strings")
    if backend == "openvino":
        from siamtext.backends import openvino

        openvino.require_openvino()
        if quantize is not None:
            require("openvino", "nncf")
    else:
        require_onnx()
    folder = Path(folder)
    model.save_pretrained(folder, main_process_only=False)
    if backend == "openvino":
        return openvino.export(model, folder, quantize, calibration_texts)
    fp32 = folder / ONNX_DIR / ONNX_FILE
    if not fp32.is_file() or model.backend != "onnx":
        export_onnx(model, fp32)
    if quantize is None:
        return fp32
    return quantize_onnx(fp32, folder / ONNX_DIR / quantized_file_name(quantize), quantize)


__all__ = ["Quantize", "export_folder", "export_onnx", "isa_suffix", "quantize_onnx",
           "quantized_file_name", "require_onnx"]
