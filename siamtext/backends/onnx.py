"""Run an exported transformer with ONNX Runtime.

:class:`OnnxTransformer` stands in for the torch transformer inside
:meth:`siamtext.SiamText.embed`: it takes the padded batch from :meth:`SiamText.pad` and
returns the token embeddings, which siamtext then pools (and normalises) as on torch. Pooling
outside the graph costs nothing measurable (MiniLM-L6, 2 cores, batch 32: 159 vs 154 and
169 vs 171 sentences/s with pooling in the graph and outside it) and keeps the file in the
shape sentence-transformers expects, so the same file serves both libraries and a folder
exported by sentence-transformers (Optimum) runs here too.
"""

from __future__ import annotations

from pathlib import Path

import torch

from siamtext.backends import ONNX_DIR, ONNX_FILE, find_file, graph_inputs, require_onnxruntime

OUTPUT_NAMES = ("last_hidden_state", "token_embeddings")


def find_onnx_file(folder: Path, file_name: str | None = None) -> Path:
    """The ONNX file to load from a model folder (:func:`siamtext.backends.find_file`)."""
    return find_file(folder, "onnx", file_name)


def default_threads() -> int:
    """Intra-op threads: torch's count, which defaults to the physical cores (hyper-threads
    slow dense kernels down) and follows ``torch.set_num_threads``."""
    return max(1, torch.get_num_threads())


class OnnxTransformer:
    """An ONNX Runtime session that maps a padded batch to token embeddings.

    Args:
        path: The ``.onnx`` file (inputs ``input_ids``, ``attention_mask`` and optionally
            ``token_type_ids``; output ``last_hidden_state`` or ``token_embeddings``).
        threads: Intra-op threads; ``None``: :func:`default_threads`.
        providers: ONNX Runtime execution providers; ``None``: CPU.

    Raises:
        ImportError: If onnxruntime is not installed.
        ValueError: If the graph has no token-embedding output.
    """

    def __init__(self, path: str | Path, *, threads: int | None = None,
                 providers: list[str] | None = None) -> None:
        ort = require_onnxruntime()
        self.path = Path(path)
        self._tmp: object | None = None  # keeps a temporary export folder alive
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Intra-op threads keep ORT's default of spinning between runs: on a quiet machine
        # that was faster (MiniLM-L6 int8, 2,000 texts, batch 32, 2 cores, 5 alternating
        # rounds: median 453 sentences/s spinning, 380 not); on a machine shared with other
        # busy processes spinning costs them CPU.
        self.session = ort.InferenceSession(
            str(self.path), options, providers=providers or ["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        names = [n for n in OUTPUT_NAMES if n in outputs]
        if not names:
            raise ValueError(f"{self.path}: the graph has no {' or '.join(OUTPUT_NAMES)} "
                             f"output (outputs: {outputs})")
        self.output_name = names[0]

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 **inputs: torch.Tensor) -> torch.Tensor:
        """Token embeddings ``(batch, seq, dim)`` (float32, CPU) of a padded batch."""
        feed = graph_inputs(self.input_names, self.path, input_ids=input_ids,
                            attention_mask=attention_mask, **inputs)
        (hidden,) = self.session.run([self.output_name], feed)
        return torch.from_numpy(hidden)

    def __repr__(self) -> str:
        return f"OnnxTransformer({str(self.path)!r})"


def load(model: object, folder: Path, file_name: str | None) -> OnnxTransformer:
    """The session for ``SiamText(folder, backend="onnx", file_name=...)``.

    A folder with no ONNX file at all, asked for the default file, is exported on the fly
    to a temporary folder (as sentence-transformers does), with a warning to save it;
    otherwise the file must exist.
    """
    try:
        path = find_onnx_file(folder, file_name)
    except FileNotFoundError:
        if file_name is not None or any(folder.rglob("*.onnx")):
            raise
        path = None
    if path is not None:
        return OnnxTransformer(path)
    import logging
    import tempfile

    from siamtext.backends.export import export_onnx

    logging.getLogger(__name__).warning(
        "%s has no %s/%s: exporting it now; save_pretrained() keeps it for next time.",
        folder, ONNX_DIR, ONNX_FILE)
    tmp = tempfile.TemporaryDirectory(prefix="siamtext-onnx-")
    session = OnnxTransformer(export_onnx(model, Path(tmp.name) / ONNX_FILE))  # type: ignore[arg-type]
    session._tmp = tmp  # removed with the session
    return session


def check(engine: OnnxTransformer, model: object) -> None:
    """Run one tiny batch, so that a kernel this CPU lacks fails at load, not mid-corpus."""
    batch = model.tokenize(["check"])  # type: ignore[attr-defined]
    engine(**batch)


def save(engine: OnnxTransformer, folder: Path) -> Path:
    """Copy the session's file (and any external-data file beside it) to ``folder/onnx/``."""
    import shutil

    target_dir = folder / ONNX_DIR
    target_dir.mkdir(parents=True, exist_ok=True)
    source = engine.path
    for extra in (source, *source.parent.glob(source.name + ".data"),
                  *source.parent.glob(source.name + "_data")):
        target = target_dir / extra.name
        if extra.resolve() != target.resolve():
            shutil.copyfile(extra, target)
    return target_dir / source.name


__all__ = ["OnnxTransformer", "check", "default_threads", "find_onnx_file", "load", "save"]
