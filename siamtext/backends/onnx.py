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

from siamtext.backends import (
    default_threads,
    find_file,
    graph_inputs,
    output_name,
    require_onnxruntime,
)
from siamtext.backends.export import export_onnx as export_file


def find_onnx_file(folder: Path, file_name: str | None = None) -> Path:
    """The ONNX file to load from a model folder (:func:`siamtext.backends.find_file`)."""
    return find_file(folder, "onnx", file_name)


def require_engine() -> None:
    """Check that ONNX Runtime is there (naming ``siamtext[onnx]`` when it is not)."""
    require_onnxruntime()


class OnnxTransformer:
    """An ONNX Runtime session that maps a padded batch to token embeddings.

    Args:
        path: The ``.onnx`` file (inputs ``input_ids``, ``attention_mask`` and optionally
            ``token_type_ids``; output ``last_hidden_state`` or ``token_embeddings``).
        threads: Intra-op threads; ``None``: :func:`~siamtext.backends.default_threads`.
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
        self.output_name = output_name(self.path, [o.name for o in self.session.get_outputs()])

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 **inputs: torch.Tensor) -> torch.Tensor:
        """Token embeddings ``(batch, seq, dim)`` (float32, CPU) of a padded batch."""
        feed = graph_inputs(self.input_names, self.path, input_ids=input_ids,
                            attention_mask=attention_mask, **inputs)
        (hidden,) = self.session.run([self.output_name], feed)
        return torch.from_numpy(hidden)

    def __repr__(self) -> str:
        return f"OnnxTransformer({str(self.path)!r})"


#: What :func:`siamtext.backends.load_engine` builds from a file.
ENGINE = OnnxTransformer

__all__ = ["ENGINE", "OnnxTransformer", "export_file", "find_onnx_file", "require_engine"]
