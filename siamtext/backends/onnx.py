"""Run an exported transformer with ONNX Runtime.

:class:`OnnxTransformer` stands in for the torch transformer inside
:meth:`siamtext.SiamText.embed`: it takes the padded batch from :meth:`SiamText.pad` and
returns the token embeddings, which siamtext then pools (and normalises) as on torch. Pooling
outside the graph costs nothing measurable (MiniLM-L6, 2 cores, batch 32: 159 vs 154 and
169 vs 171 sentences/s with pooling in the graph and outside it) and keeps the file in the
shape sentence-transformers expects, so the same file serves both libraries and a folder
exported by sentence-transformers (Optimum) runs here too.

``SiamText.encode`` spends the threads on batches rather than inside them: with
``concurrency`` = the intra-op thread count, that many batches run at once, each on a
one-thread session (:meth:`OnnxTransformer.one_thread`), instead of one batch at a time on
a session with every thread. The batches are the same, so the embeddings are too; only the
threads stop waiting for each other at every one of the graph's small operations (measured:
MiniLM-L6 int8, 2,000 Banking77 texts, batch 32, 2 cores, 5 alternating rounds of the
session runs alone: median 543 sentences/s one batch at a time on 2 threads, 625 with two
batches at once on one thread each). A single batch still runs on every thread.
"""

from __future__ import annotations

import threading
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
from siamtext.validation import check_positive_int


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
        self._ort = require_onnxruntime()
        self.path = Path(path)
        self._tmp: object | None = None  # keeps a temporary export folder alive
        self._providers = providers or ["CPUExecutionProvider"]
        threads = threads or default_threads()
        #: Intra-op threads of the main session.
        self.threads = threads
        self.session = self._session(threads)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_name = output_name(self.path, [o.name for o in self.session.get_outputs()])
        #: Batches ``SiamText.encode`` runs at once, one thread each (see the module notes).
        self.concurrency = threads if self._providers == ["CPUExecutionProvider"] else 1
        self._single: object | None = None
        self._single_lock = threading.Lock()

    def set_threads(self, threads: int) -> None:
        """Run on ``threads`` intra-op threads from now on (and that many batches at once in
        ``SiamText.encode``): the main session is rebuilt; the one-thread session stays. For
        an engine loaded on a thread whose torch count was lower than the threads it should
        use, as ``siamtext serve`` loads its model. Not safe while another thread runs it.

        Raises:
            ValueError: If ``threads`` is not a positive integer.
        """
        check_positive_int(threads, "threads")
        if threads != self.threads:
            self.session = self._session(threads)
            self.threads = threads
            self.concurrency = threads if self._providers == ["CPUExecutionProvider"] else 1

    def _session(self, threads: int):
        ort = self._ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Intra-op threads keep ORT's default of spinning between runs: on a quiet machine
        # that was faster (MiniLM-L6 int8, 2,000 texts, batch 32, 2 cores, 5 alternating
        # rounds: median 453 sentences/s spinning, 380 not); on a machine shared with other
        # busy processes spinning costs them CPU.
        return ort.InferenceSession(str(self.path), options, providers=self._providers)

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 **inputs: torch.Tensor) -> torch.Tensor:
        """Token embeddings ``(batch, seq, dim)`` (float32, CPU) of a padded batch."""
        feed = graph_inputs(self.input_names, self.path, input_ids=input_ids,
                            attention_mask=attention_mask, **inputs)
        (hidden,) = self.session.run([self.output_name], feed)
        return torch.from_numpy(hidden)

    def one_thread(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   **inputs: torch.Tensor) -> torch.Tensor:
        """As calling the engine, on a second session with one intra-op thread, which
        several Python threads run at once (ONNX Runtime releases the GIL in ``run``). It is
        built on first use and holds its own copy of the weights."""
        if self._single is None:
            with self._single_lock:
                if self._single is None:
                    self._single = self._session(1)
        feed = graph_inputs(self.input_names, self.path, input_ids=input_ids,
                            attention_mask=attention_mask, **inputs)
        (hidden,) = self._single.run([self.output_name], feed)
        return torch.from_numpy(hidden)

    def __repr__(self) -> str:
        return f"OnnxTransformer({str(self.path)!r})"


#: What :func:`siamtext.backends.load_engine` builds from a file.
ENGINE = OnnxTransformer

__all__ = ["ENGINE", "OnnxTransformer", "export_file", "find_onnx_file", "require_engine"]
