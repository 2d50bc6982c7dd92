"""Dynamic batching: concurrent requests merged into model batches on inference lanes.

A request's texts are tokenised by the caller and queued as one job. An inference lane (a
thread) takes the first job, waits up to ``max_wait_ms`` for others to join (only while requests
are on their way: with an ``arriving`` count that says none is, it goes at once), then takes
jobs in arrival order while their tokens fit ``max_batch_tokens`` and they number at most
``max_batch_requests`` (the first job always goes, however long). The merged texts are cut into
forward passes by :mod:`siamtext.serve.passes` (sorted by length, at most ``max_batch_tokens``
padded tokens each, a pass ending before a text much shorter than its longest, so padding
stays small); each job gets its rows back in its own order. Jobs whose client went away
(:meth:`Job.cancel`) are dropped before they reach the model.

On an engine that runs several batches at once (ONNX Runtime on CPU: ``concurrency``, one
one-thread session per core, as ``SiamText.encode`` uses it) there is a lane per core, each
taking its own batches: while one runs its batch, the other takes the requests that arrived
meanwhile, so the cores do not wait together for the event loop to answer one batch and bring
the next. A lane that starts while another is busy runs its passes on the one-thread session;
a lane that starts alone uses every core: a merged batch of at least :data:`PARALLEL_FROM` texts
has its passes halved until each core has one and run together, and a smaller one (a lone
request) runs on every thread, which answers it sooner. Measured (``benchmarks/serve_load.py``,
64 clients of one Banking77 text, ONNX int8, 2 cores, 20 s points): 505 to 535 texts/s with one
lane, 567 to 573 with two, the server's CPU busy 31 of 40 core-seconds against 35.

A text's embedding is the model's pooled output of its own tokens, whatever its batch
neighbours (the attention mask hides the padding), so it equals ``model.encode`` of the same
text up to float rounding.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from siamtext.serve.passes import plan_passes, split_passes

if TYPE_CHECKING:
    from siamtext.model import SiamText

logger = logging.getLogger(__name__)


class QueueFullError(RuntimeError):
    """The queue holds ``max_queue`` requests already."""


class BatcherStoppedError(RuntimeError):
    """The batcher is shutting down and takes no new requests."""


@dataclass
class Job:
    """One request's texts, as token ids, waiting for the model."""

    ids: list[list[int]]
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    enqueued: float = field(default_factory=time.perf_counter)
    cancelled: bool = False
    tokens: int = 0

    def __post_init__(self) -> None:
        self.tokens = sum(len(x) for x in self.ids)

    def cancel(self) -> None:
        """Drop this job if it has not reached the model yet."""
        self.cancelled = True

    @property
    def dropped(self) -> bool:
        return self.cancelled or self.future.cancelled()


@dataclass
class BatchStats:
    """What one batch was: for the metrics."""

    requests: int
    texts: int
    tokens: int
    queue_seconds: list[float]
    inference_seconds: float


class Batcher:
    """Merge concurrent embedding requests into model batches on inference lanes (threads;
    see the module notes).

    Args:
        model: The encoder.
        max_batch_tokens: Token budget of a batch (and padded tokens per forward pass).
        max_batch_requests: Most requests per batch.
        max_wait_ms: How long the first request of a batch waits for company.
        max_queue: Most waiting requests; :meth:`submit` raises :class:`QueueFullError`
            beyond.
        on_batch: Called on the lane's thread after each batch's forward passes, before its
            requests are answered, with the batch's :class:`BatchStats`.
        on_drop: Called on a lane's thread with the number of jobs dropped.
        arriving: How many requests are on their way to :meth:`submit` (received, not yet
            queued); the wait for company ends as soon as it says 0. ``None``: wait the full
            ``max_wait_ms``.
        threads: torch intra-op threads of the lanes; ``None``: what
            ``torch.get_num_threads()`` says when the batcher is made.
    """

    def __init__(self, model: SiamText, *, max_batch_tokens: int = 16384,
                 max_batch_requests: int = 64, max_wait_ms: float = 2.0, max_queue: int = 1024,
                 on_batch: Callable[[BatchStats], None] | None = None,
                 on_drop: Callable[[int], None] | None = None,
                 arriving: Callable[[], int] | None = None, threads: int | None = None) -> None:
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                    or threads <= 0):
            raise ValueError(f"threads must be a positive integer, got {threads!r}")
        self.model = model
        self.threads = threads or torch.get_num_threads()
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_requests = max_batch_requests
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.on_batch = on_batch
        self.on_drop = on_drop
        self.arriving = arriving
        self._queue: deque[Job] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._busy = 0  # lanes running a batch now (under _cond)
        self._pool: Any = None  # the pass threads, made on first use

    # ------------------------------------------------------------------ life
    def start(self) -> None:
        """Start the inference lanes (once)."""
        if not self._threads:
            self._threads = [threading.Thread(target=self._run, name=f"siamtext-inference-{i}",
                                              daemon=True) for i in range(self.lanes)]
            for thread in self._threads:
                thread.start()

    def stop(self, timeout: float | None = 30.0) -> None:
        """Take no new jobs, finish the queued ones, and end the lanes."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    @property
    def lanes(self) -> int:
        """Inference threads, each taking its own batches: the engine's ``concurrency`` (ONNX
        Runtime on CPU and OpenVINO: one per core), else 1."""
        engine = getattr(self.model, "_engine", None)
        return max(1, int(getattr(engine, "concurrency", 1))) if engine is not None else 1

    @property
    def depth(self) -> int:
        """Requests waiting for the model."""
        return len(self._queue)

    # ------------------------------------------------------------------ requests
    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of ``texts`` (truncated to the model's limit), as :meth:`submit` takes."""
        return self.model.token_ids(list(texts)) if texts else []

    def submit(self, ids: list[list[int]]) -> Job:
        """Queue token ids; ``await job.future`` gives their ``(n, dim)`` pooled embeddings
        (not normalised); ``job.cancel()`` drops it if it has not reached the model. Call
        from the event loop.

        Raises:
            QueueFullError: If ``max_queue`` requests wait already.
            BatcherStoppedError: If the batcher is stopping.
        """
        loop = asyncio.get_running_loop()
        job = Job(ids, loop.create_future(), loop)
        with self._cond:
            if self._stopping:
                raise BatcherStoppedError("the server is shutting down")
            if len(self._queue) >= self.max_queue:
                raise QueueFullError(f"{len(self._queue)} requests are waiting already")
            self._queue.append(job)
            self._cond.notify()
        return job

    # ------------------------------------------------------------------ worker
    def _take(self) -> list[Job] | None:
        """Wait for a batch of jobs; ``None`` when stopping with nothing queued."""
        with self._cond:
            while True:
                self._drop_cancelled()
                if self._queue:
                    break
                if self._stopping:
                    return None
                self._cond.wait()
            deadline = self._queue[0].enqueued + self.max_wait
            while not self._stopping:
                self._drop_cancelled()
                if not self._queue:
                    return []
                if (len(self._queue) >= self.max_batch_requests
                        or sum(j.tokens for j in self._queue) >= self.max_batch_tokens):
                    break
                left = deadline - time.perf_counter()
                if left <= 0 or (self.arriving is not None and self.arriving() <= 0):
                    break
                self._cond.wait(min(left, 0.0005) if self.arriving is not None else left)
            batch: list[Job] = []
            tokens = 0
            while self._queue and len(batch) < self.max_batch_requests:
                job = self._queue[0]
                if batch and tokens + job.tokens > self.max_batch_tokens:
                    break
                self._queue.popleft()
                if job.dropped:
                    self._dropped(1)
                    continue
                batch.append(job)
                tokens += job.tokens
            return batch

    def _drop_cancelled(self) -> None:
        if any(j.dropped for j in self._queue):
            kept = [j for j in self._queue if not j.dropped]
            self._dropped(len(self._queue) - len(kept))
            self._queue = deque(kept)

    def _dropped(self, n: int) -> None:
        if n and self.on_drop is not None:
            self.on_drop(n)

    def _run(self) -> None:
        torch.set_grad_enabled(False)
        torch.set_num_threads(self.threads)  # this thread's OpenMP team runs the model
        while True:
            batch = self._take()
            if batch is None:
                return
            if not batch:
                continue
            start = time.perf_counter()
            try:
                with self._running() as alone:
                    results = self._forward([job.ids for job in batch], alone)
            except Exception as err:  # noqa: BLE001 - handed to every waiting request
                logger.exception("inference failed on a batch of %d requests", len(batch))
                for job in batch:
                    job.loop.call_soon_threadsafe(_fail, job.future, err)
                continue
            elapsed = time.perf_counter() - start
            # counted before any request is answered, so a client that reads /info or
            # /metrics after its response sees its own batch
            if self.on_batch is not None:
                try:
                    self.on_batch(BatchStats(
                        requests=len(batch), texts=sum(len(j.ids) for j in batch),
                        tokens=sum(j.tokens for j in batch),
                        queue_seconds=[start - j.enqueued for j in batch],
                        inference_seconds=elapsed))
                except Exception:  # noqa: BLE001 - a metrics failure must not keep answers
                    logger.exception("on_batch failed on a batch of %d requests", len(batch))
            for job, emb in zip(batch, results):
                job.loop.call_soon_threadsafe(_resolve, job.future, emb)

    @contextmanager
    def _running(self) -> Iterator[bool]:
        """Count the calling lane as busy while its batch runs; yields whether no other lane
        was busy when it started."""
        with self._cond:
            alone = self._busy == 0
            self._busy += 1
        try:
            yield alone
        finally:
            with self._cond:
                self._busy -= 1

    def _forward(self, jobs: list[list[list[int]]], alone: bool = True) -> list[np.ndarray]:
        """Pooled embeddings of every job's texts, in forward passes sorted by length.

        ``alone``: no other lane is running a batch, so this one may use every core; else
        its passes run one after another on the engine's one-thread session.
        """
        flat = [seq for ids in jobs for seq in ids]
        out = np.empty((len(flat), self.model.embedding_dim), dtype=np.float32)
        passes = plan_passes(flat, self.max_batch_tokens)
        workers = self._workers(len(flat))
        if alone and workers > 1:
            self._parallel(flat, split_passes(passes, workers, flat), out)
        else:
            with torch.inference_mode():
                for index in passes:
                    out[index] = self._embed(flat, index, one_thread=not alone)
        results, row = [], 0
        for ids in jobs:
            results.append(out[row : row + len(ids)])
            row += len(ids)
        return results

    def _workers(self, texts: int) -> int:
        """Passes to run at once: the engine's ``concurrency`` (ONNX Runtime on CPU: one
        one-thread session per core) for a batch of at least :data:`PARALLEL_FROM` texts;
        otherwise 1, every thread on one pass, which answers a lone request sooner."""
        return self.lanes if self.lanes > 1 and texts >= PARALLEL_FROM else 1

    def _parallel(self, flat: list[list[int]], passes: list[list[int]],
                  out: np.ndarray) -> None:
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self._workers(PARALLEL_FROM),
                                            thread_name_prefix="siamtext-pass")

        def run(index: list[int]) -> None:
            with torch.inference_mode():  # thread-local
                out[index] = self._embed(flat, index, one_thread=True)

        for _ in self._pool.map(run, passes):  # re-raises a pass's error
            pass

    def _embed(self, flat: list[list[int]], index: list[int], one_thread: bool) -> np.ndarray:
        """Pooled embeddings of ``flat[index]``: on every thread, or on the engine's one-thread
        session with ``one_thread`` (only engines with ``concurrency`` have one)."""
        ids = [flat[i] for i in index]
        if self.model.backend != "torch":
            # NumPy from padding to pooling: each torch call lets the GIL go and then waits to
            # take it back from the event loop while the lane's core idles (64 clients of one
            # text, ONNX int8, 2 cores, alternating 20 s points: the machine 13 to 15 % idle
            # instead of 18 to 20; texts/s 384.0 to 392.1 against 355.1 to 410.2, and in an
            # earlier prototype 428.8 to 437.6 against 361.8 to 392.1)
            return self.model._embed_arrays(self.model.pad_arrays(ids), one_thread)
        embed = self.model._embed_one_thread if one_thread else self.model.embed
        return embed(**self.model.pad(ids)).float().cpu().numpy()


#: Batches of at least this many texts run their passes at once on an engine that can.
PARALLEL_FROM = 8


def _resolve(future: asyncio.Future, value: np.ndarray) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: asyncio.Future, err: BaseException) -> None:
    if not future.done():
        future.set_exception(err)


def normalize_rows(emb: np.ndarray) -> np.ndarray:
    """L2-normalised rows (as ``torch.nn.functional.normalize``: norms clamped at 1e-12), in
    NumPy, so that the event loop's thread never runs torch (see :mod:`siamtext.serve.service`
    on threads)."""
    norms = np.linalg.norm(emb, axis=-1, keepdims=True)
    return emb / np.maximum(norms, 1e-12)
