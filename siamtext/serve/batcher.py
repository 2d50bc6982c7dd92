"""Dynamic batching: concurrent requests merged into model batches on one inference thread.

A request's texts are tokenised by the caller and queued as one job. The inference thread
takes the first job, waits up to ``max_wait_ms`` for others to join (only while requests are
on their way: with an ``arriving`` count that says none is, it goes at once), then takes jobs in
arrival order while their tokens fit ``max_batch_tokens`` and they number at most
``max_batch_requests`` (the first job always goes, however long). The merged texts are sorted
by length and embedded in forward passes of at most ``max_batch_tokens`` padded tokens, a pass
ending before a text much shorter than its longest, so padding stays small; each job gets its
rows back in its own order. Jobs whose client went
away (:meth:`Job.cancel`) are dropped before they reach the model.

On an engine that runs several batches at once (ONNX Runtime on CPU: ``concurrency``, one
one-thread session per core, as ``SiamText.encode`` uses it), a merged batch of at least
:data:`PARALLEL_FROM` texts has its passes halved until each core has one and run together on
a small pool; one request alone still runs on every thread, which answers it sooner.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

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
    """Merge concurrent embedding requests into model batches on one worker thread.

    Args:
        model: The encoder.
        max_batch_tokens: Token budget of a batch (and padded tokens per forward pass).
        max_batch_requests: Most requests per batch.
        max_wait_ms: How long the first request of a batch waits for company.
        max_queue: Most waiting requests; :meth:`submit` raises :class:`QueueFullError`
            beyond.
        on_batch: Called on the worker thread after each forward pass, before its requests
            are answered, with the batch's :class:`BatchStats`.
        on_drop: Called on the worker thread with the number of jobs dropped.
        arriving: How many requests are on their way to :meth:`submit` (received, not yet
            queued); the wait for company ends as soon as it says 0. ``None``: wait the full
            ``max_wait_ms``.
        threads: torch intra-op threads of the inference thread; ``None``: what
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
        self._thread: threading.Thread | None = None
        self._pool: Any = None  # the pass threads, made on first use

    # ------------------------------------------------------------------ life
    def start(self) -> None:
        """Start the inference thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="siamtext-inference",
                                            daemon=True)
            self._thread.start()

    def stop(self, timeout: float | None = 30.0) -> None:
        """Take no new jobs, finish the queued ones, and end the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

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
                results = self._forward([job.ids for job in batch])
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

    def _forward(self, jobs: list[list[list[int]]]) -> list[np.ndarray]:
        """Pooled embeddings of every job's texts, in forward passes sorted by length."""
        flat = [seq for ids in jobs for seq in ids]
        order = sorted(range(len(flat)), key=lambda i: -len(flat[i]))
        out = np.empty((len(flat), self.model.embedding_dim), dtype=np.float32)
        passes = []
        start = 0
        while start < len(order):
            longest = max(len(flat[order[start]]), 1)
            size = max(1, min(len(order) - start, self.max_batch_tokens // longest))
            size = _same_length_run(flat, order, start, size)
            passes.append(order[start : start + size])
            start += size
        workers = self._workers(len(flat))
        if workers > 1:
            self._parallel(flat, _split_passes(passes, workers, flat), out)
        else:
            with torch.inference_mode():
                for index in passes:
                    out[index] = self._embed(self.model.embed, flat, index)
        results, row = [], 0
        for ids in jobs:
            results.append(out[row : row + len(ids)])
            row += len(ids)
        return results

    def _workers(self, texts: int) -> int:
        """Passes to run at once: the engine's ``concurrency`` (ONNX Runtime on CPU: one
        one-thread session per core) for a batch of at least :data:`PARALLEL_FROM` texts;
        otherwise 1, every thread on one pass, which answers a lone request sooner."""
        engine = getattr(self.model, "_engine", None)
        workers = getattr(engine, "concurrency", 1) if engine is not None else 1
        return workers if workers > 1 and texts >= PARALLEL_FROM else 1

    def _parallel(self, flat: list[list[int]], passes: list[list[int]],
                  out: np.ndarray) -> None:
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self._workers(PARALLEL_FROM),
                                            thread_name_prefix="siamtext-pass")

        def run(index: list[int]) -> None:
            with torch.inference_mode():  # thread-local
                out[index] = self._embed(self.model._embed_one_thread, flat, index)

        for _ in self._pool.map(run, passes):  # re-raises a pass's error
            pass

    def _embed(self, embed: Callable, flat: list[list[int]], index: list[int]) -> np.ndarray:
        inputs = self.model.pad([flat[i] for i in index])
        return embed(**inputs).float().cpu().numpy()


#: Batches of at least this many texts run their passes at once on an engine that can.
PARALLEL_FROM = 8
#: A forward pass ends before a text shorter than this share of its longest one...
SPLIT_BELOW = 0.6
#: ...once it holds this many texts (fewer: not worth another pass).
SPLIT_AFTER = 4


def _same_length_run(flat: Sequence[Sequence[int]], order: list[int], start: int,
                     size: int) -> int:
    """How many of the length-sorted texts from ``start`` (at most ``size``) go in one forward
    pass: merged requests have mixed lengths, and padding 32 Banking77 texts to their longest
    cost 90 ms where passes split at 0.6 of the longest cost 65 (all-MiniLM-L6-v2, 2 cores)."""
    cut = SPLIT_BELOW * len(flat[order[start]])
    for n in range(SPLIT_AFTER, size):
        if len(flat[order[start + n]]) < cut:
            return n
    return size


def _split_passes(passes: list[list[int]], workers: int,
                  flat: Sequence[Sequence[int]]) -> list[list[int]]:
    """``passes`` with the largest halved until there are at least ``workers`` of them (none
    below one text), largest padded work first, so that ``workers`` threads finish together."""
    passes = list(passes)
    while len(passes) < workers:
        big = max(range(len(passes)), key=lambda i: len(passes[i]))
        if len(passes[big]) < 2:
            break
        half = (len(passes[big]) + 1) // 2
        passes[big : big + 1] = [passes[big][:half], passes[big][half:]]
    return sorted(passes, key=lambda p: -len(p) * len(flat[p[0]]))


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
