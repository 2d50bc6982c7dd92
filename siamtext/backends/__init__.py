"""Inference engines behind :meth:`siamtext.SiamText.encode`.

``"torch"`` is the model itself. ``"onnx"`` runs an exported copy of the transformer with
ONNX Runtime (:mod:`siamtext.backends.onnx`), ``"openvino"`` with OpenVINO
(:mod:`siamtext.backends.openvino`); :mod:`siamtext.backends.export` writes both. An engine
maps a padded batch to token embeddings; pooling and normalisation stay in siamtext, so every
``encode`` option works the same on each backend. Importing this package imports no engine.

Exported files follow the sentence-transformers layout (``onnx/model.onnx``,
``onnx/model_qint8_avx2.onnx``, ``openvino/openvino_model.xml``, ...; inputs ``input_ids``,
``attention_mask`` and, for BERT-style models, ``token_type_ids``; output
``last_hidden_state``), so a folder loads with either library and either backend.

An exported file that the engine cannot run here (an opset it does not know, an operator
this CPU lacks, a corrupt graph) does not stop the model: it falls back to torch with one
warning. A missing package or file is an error that names the extra or the files there.
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np
import torch

from siamtext import extras

if TYPE_CHECKING:
    from siamtext.model import SiamText

logger = logging.getLogger(__name__)

Backend = Literal["torch", "onnx", "openvino"]
BACKENDS: tuple[str, ...] = ("torch", "onnx", "openvino")
#: Sub-folder and default file of each exported backend, as sentence-transformers names them.
FOLDERS = {"onnx": "onnx", "openvino": "openvino"}
DEFAULT_FILES = {"onnx": "model.onnx", "openvino": "openvino_model.xml"}
ONNX_DIR, ONNX_FILE = FOLDERS["onnx"], DEFAULT_FILES["onnx"]
# files that show a folder already holds an export of the backend (none: export on the fly)
_EXPORTED = {"onnx": "**/*.onnx", "openvino": "openvino/*.xml"}
#: The token-embedding output of an exported graph, by the names it may have.
OUTPUT_NAMES = ("last_hidden_state", "token_embeddings")


class Engine(Protocol):
    """A loaded exported transformer: a padded batch (tensors or NumPy int arrays) in, token
    embeddings out.

    An engine may also offer ``concurrency`` (an int above 1) and a ``one_thread`` method
    with the ``__call__`` signature that several Python threads may call at once; then
    ``SiamText.encode`` runs that many batches concurrently through it. An engine with
    ``set_threads(n)`` can be told its thread count after loading (``siamtext serve`` loads
    on a one-thread worker and then gives the engine the app's threads).
    """

    path: Path

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 **inputs: torch.Tensor) -> torch.Tensor:
        """Token embeddings ``(batch, seq, dim)``, float32 on the CPU."""
        ...


def default_threads() -> int:
    """An engine's intra-op threads: torch's count, which defaults to the physical cores
    (hyper-threads slow dense kernels down) and follows ``torch.set_num_threads``."""
    return max(1, torch.get_num_threads())


def output_name(path: Path, outputs: list[str]) -> str:
    """The graph output that holds the token embeddings.

    Raises:
        ValueError: If the graph has none of :data:`OUTPUT_NAMES`.
    """
    names = [n for n in OUTPUT_NAMES if n in outputs]
    if not names:
        raise ValueError(f"{path}: the graph has no {' or '.join(OUTPUT_NAMES)} output "
                         f"(outputs: {sorted(outputs)})")
    return names[0]


def require(backend: str, module: str):
    """Import ``module`` for ``backend``; a missing one names ``siamtext[<backend>]``
    (:func:`siamtext.extras.require`)."""
    return extras.require(module, backend, f"backend={backend!r}")


def require_onnxruntime():
    """Import and return ``onnxruntime`` (see :func:`require`)."""
    return require("onnx", "onnxruntime")


def find_file(folder: Path, backend: str, file_name: str | None = None) -> Path:
    """The exported file of ``backend`` to load from a model folder.

    Args:
        folder: A model folder.
        backend: ``"onnx"`` or ``"openvino"``.
        file_name: A file under the backend's sub-folder (``"model_qint8_avx2.onnx"``) or a
            path relative to ``folder`` (``"onnx/model_qint8_avx2.onnx"``). ``None``: the
            default file (``onnx/model.onnx``, ``openvino/openvino_model.xml``).

    Returns:
        The file's path.

    Raises:
        FileNotFoundError: If there is no such file; the message lists the files of that
            kind the folder holds.
        ValueError: If ``file_name`` leads outside ``folder``.
    """
    sub, name = FOLDERS[backend], file_name or DEFAULT_FILES[backend]
    candidates = [folder / name] if Path(name).parent != Path(".") else []
    candidates += [folder / sub / name, folder / name]
    root = os.path.normpath(folder)
    for path in candidates:
        # lexically: a Hub cache's snapshot files are symlinks to blobs elsewhere
        if os.path.commonpath([root, os.path.normpath(path)]) != root:
            raise ValueError(f"file_name={file_name!r} leads outside {folder}")
        if path.is_file():
            return path
    suffix = Path(DEFAULT_FILES[backend]).suffix
    found = sorted(p.relative_to(folder).as_posix() for p in folder.rglob(f"*{suffix}"))
    looked = ", ".join(p.relative_to(folder).as_posix() for p in candidates[:2])
    raise FileNotFoundError(
        f"{folder} has no {backend} file {name!r} (looked for {looked}); "
        + (f"{suffix} files there: {found}; pass one as file_name=" if found
           else f"it holds no {suffix} file; export one with "
                f"model.export({backend!r}, path=...)"))


def companions(backend: str, name: str) -> list[str]:
    """The files an exported file ``name`` needs beside it: an OpenVINO ``.xml``'s ``.bin``
    weights, an ONNX graph's external-data file (when it has one)."""
    if backend == "openvino":
        return [str(Path(name).with_suffix(".bin"))]
    return [name + ".data", name + "_data"]


def backend_files(backend: str, file_name: str | None) -> tuple[str, ...]:
    """The files of a Hub repo that ``backend`` with ``file_name`` needs, relative to the
    repo's root: ``()`` for torch; an OpenVINO ``.xml`` comes with its ``.bin``."""
    if backend not in FOLDERS:
        return ()
    name = file_name or DEFAULT_FILES[backend]
    path = name if Path(name).parent != Path(".") else f"{FOLDERS[backend]}/{name}"
    return (path, *companions(backend, path)) if backend == "openvino" else (path,)


def graph_inputs(names: list[str], path: Path,
                 **given: torch.Tensor | np.ndarray) -> dict[str, np.ndarray]:
    """The int64 arrays an exported graph with inputs ``names`` takes, from a padded batch
    (tensors or NumPy arrays); a graph that wants ``token_type_ids`` the tokenizer did not
    give gets zeros.

    Raises:
        ValueError: If the graph needs an input the batch lacks.
    """
    feed: dict[str, np.ndarray] = {}
    for name in names:
        value = given.get(name)
        if value is None and name == "token_type_ids":
            value = np.zeros(tuple(given["input_ids"].shape), dtype=np.int64)
        if value is None:
            raise ValueError(f"{path}: the graph needs input {name!r}, which the tokenizer "
                             f"does not give (it gives {sorted(given)})")
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        feed[name] = value.astype(np.int64, copy=False)
    return feed


def load_engine(model: SiamText, folder: Path, backend: str,
                file_name: str | None) -> Engine | None:
    """The engine for ``SiamText(folder, backend=..., file_name=...)``, or ``None`` (torch)
    with one warning when the exported file cannot run here.

    A folder with no file of the backend at all, asked for the default file, is exported on
    the fly to a temporary folder (as sentence-transformers does), with a warning to save
    it; otherwise the file must exist. One tiny batch is run at load, so that a kernel this
    CPU lacks fails here, not in the middle of a corpus.

    Raises:
        ImportError: If the backend's package is missing (naming the extra).
        FileNotFoundError: If the requested file is not in the folder.
    """
    module = importlib.import_module(f"siamtext.backends.{backend}")
    module.require_engine()
    try:
        path: Path | None = find_file(folder, backend, file_name)
    except FileNotFoundError:
        if file_name is not None or any(folder.glob(_EXPORTED[backend])):
            raise
        path = None
    try:
        engine = module.ENGINE(path) if path is not None else _export_now(model, folder,
                                                                           backend, module)
        engine(**model.tokenize(["check"]))
    except (ImportError, FileNotFoundError, ValueError):
        raise
    except Exception as err:  # the engine's own errors: opset, operator, graph, CPU
        first = (str(err).strip().splitlines() or [""])[0][:300]
        logger.warning("backend=%r cannot run the %s file of %s here (%s: %s); encoding "
                       "with torch instead", backend, file_name or DEFAULT_FILES[backend],
                       folder, type(err).__name__, first)
        return None
    return engine


def _export_now(model: SiamText, folder: Path, backend: str, module) -> Engine:
    logger.warning("%s has no %s/%s: exporting it now; save_pretrained() keeps it for next "
                   "time.", folder, FOLDERS[backend], DEFAULT_FILES[backend])
    tmp = tempfile.TemporaryDirectory(prefix=f"siamtext-{backend}-")
    engine = module.ENGINE(module.export_file(model, Path(tmp.name) / DEFAULT_FILES[backend]))
    engine._tmp = tmp  # removed with the engine
    return engine


def save_engine(engine: Engine, backend: str, folder: Path) -> Path:
    """Copy ``engine``'s exported file, and the files it needs beside it, into ``folder``'s
    backend sub-folder; returns the copy of the file."""
    target_dir = folder / FOLDERS[backend]
    target_dir.mkdir(parents=True, exist_ok=True)
    source = engine.path
    for name in (source.name, *companions(backend, source.name)):
        part, target = source.with_name(name), target_dir / name
        if part.is_file() and part.resolve() != target.resolve():
            shutil.copyfile(part, target)
    return target_dir / source.name


__all__ = ["BACKENDS", "DEFAULT_FILES", "FOLDERS", "ONNX_DIR", "ONNX_FILE", "OUTPUT_NAMES",
           "Backend", "Engine", "backend_files", "companions", "default_threads", "find_file",
           "graph_inputs", "load_engine", "output_name", "require", "require_onnxruntime",
           "save_engine"]
