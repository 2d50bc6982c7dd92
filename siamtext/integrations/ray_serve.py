"""The siamtext server on Ray Serve: N replicas of the same app (``pip install 'ray[serve]'``).

:func:`deployment` wraps :func:`siamtext.serve.create_app` with ``@serve.ingress`` (each
replica builds its own app, so loads its own model) and puts ``@serve.batch`` in front of the
model: the requests a replica holds at once are merged into one model batch by Ray Serve,
``max_batch_requests`` at most, waiting ``max_wait_ms`` at most, and embedded on one
inference thread with the same forward passes as the single-process server.

Replicas share nothing in memory, so the duplicate index must live where all of them reach
it: the Milvus engine (``index=lambda model: Index.open("http://milvus:19530", model,
engine="milvus", collection="questions")``), or a local collection on a shared file system
opened read-only by every replica (``index_readonly=True``; they catch up with the one
writing process before each search; the write routes then answer 403). Intents are held in
each replica's memory: serve them from a folder read at start, and change them through a
single-process server (a change made on one replica is not seen by the others).

Example (a cluster: ``ray start --head`` on one machine, ``ray start --address=HEAD:6379``
on the others, then on the head)::

    from ray import serve
    from siamtext.integrations.ray_serve import deployment

    app = deployment("/shared/models/minilm", num_replicas=4).bind()
    serve.run(app, route_prefix="/")   # HTTP on the head node, port 8000
"""

from __future__ import annotations

import asyncio
import importlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from siamtext.extras import require
from siamtext.serve.batcher import Batcher, BatchStats, Job

if TYPE_CHECKING:
    from siamtext.serve.settings import ServeSettings


def _import_serve() -> Any:
    require("ray.serve", "ray-serve", "siamtext.integrations.ray_serve",
            "pip install 'ray[serve]'")
    return importlib.import_module("ray.serve")


class RayBatcher(Batcher):
    """A :class:`~siamtext.serve.batcher.Batcher` whose batches Ray Serve's ``@serve.batch``
    forms (the token budget still bounds each forward pass). Works only inside a replica."""

    def __init__(self, model: Any, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        serve = _import_serve()
        # not the base class's _pool: a large batch on an engine that runs passes at once
        # fans them out to that pool from this thread, which must not be one of its workers
        self._inference = ThreadPoolExecutor(1, thread_name_prefix="siamtext-inference",
                                             initializer=self._inference_thread)
        self._pending = 0
        self._batched = serve.batch(max_batch_size=self.max_batch_requests,
                                    batch_wait_timeout_s=self.max_wait)(self._embed_jobs)

    def _inference_thread(self) -> None:
        import torch

        torch.set_grad_enabled(False)
        torch.set_num_threads(self.threads)

    def start(self) -> None:  # no thread of its own: Ray Serve drives the batches
        pass

    def stop(self, timeout: float | None = 30.0) -> None:
        self._stopping = True
        self._inference.shutdown(wait=True)
        super().stop(timeout)

    @property
    def depth(self) -> int:
        return self._pending

    def submit(self, ids: list[list[int]]) -> Job:
        from siamtext.serve.batcher import BatcherStoppedError, QueueFullError

        if self._stopping:
            raise BatcherStoppedError("the server is shutting down")
        if self._pending >= self.max_queue:
            raise QueueFullError(f"{self._pending} requests are waiting already")
        loop = asyncio.get_running_loop()
        job = Job(ids, loop.create_future(), loop)
        self._pending += 1
        task = loop.create_task(self._batched(job))
        task.add_done_callback(lambda t: self._done(job, t))
        return job

    def _done(self, job: Job, task: asyncio.Task) -> None:
        self._pending -= 1
        if job.future.done():
            return
        if task.cancelled():
            job.future.cancel()
        elif task.exception() is not None:
            job.future.set_exception(task.exception())
        elif task.result() is not None:
            job.future.set_result(task.result())

    async def _embed_jobs(self, jobs: list[Job]) -> list[np.ndarray | None]:
        """One ``@serve.batch`` call: the jobs whose clients are still there, embedded."""
        live = [j for j in jobs if not j.dropped]
        self._dropped(len(jobs) - len(live))
        if not live:
            return [None] * len(jobs)
        loop = asyncio.get_running_loop()
        start = loop.time()
        results = await loop.run_in_executor(self._inference, self._forward,
                                             [j.ids for j in live])
        elapsed = loop.time() - start
        if self.on_batch is not None:
            import time

            now = time.perf_counter()
            self.on_batch(BatchStats(
                requests=len(live), texts=sum(len(j.ids) for j in live),
                tokens=sum(j.tokens for j in live),
                queue_seconds=[max(now - elapsed - j.enqueued, 0.0) for j in live],
                inference_seconds=elapsed))
        by_job = dict(zip(map(id, live), results))
        return [by_job.get(id(j)) for j in jobs]


def deployment(model: str | Path, *, index: Any = None, intents: str | Path | None = None,
               settings: ServeSettings | None = None, index_readonly: bool = False,
               num_replicas: int = 1, ray_actor_options: dict | None = None,
               max_ongoing_requests: int | None = None, name: str = "siamtext",
               model_kwargs: dict | None = None) -> Any:
    """A Ray Serve deployment of the siamtext server; ``.bind()`` it and ``serve.run`` it.

    Args:
        model: The model folder or Hub id each replica loads (a path every machine reaches).
        index: A collection folder, or a function of the model that opens an
            :class:`~siamtext.index.Index` (see the module docstring), or ``None``.
        intents: A saved :class:`~siamtext.classify.IntentClassifier` folder, or ``None``.
        settings: The server's :class:`~siamtext.serve.ServeSettings`.
        index_readonly: Open a folder ``index`` read-only in every replica.
        num_replicas: Replicas (each loads the model once).
        ray_actor_options: Resources of a replica (``{"num_cpus": 2}``...).
        max_ongoing_requests: Requests a replica holds at once; default: enough for
            ``settings.max_batch_requests`` to fill a batch.
        name: The deployment's name.
        model_kwargs: Keyword arguments of :class:`~siamtext.SiamText` (``backend="onnx"``,
            ``file_name=...``, ``device=...``).

    Returns:
        The deployment (a ``ray.serve.Deployment``).
    """
    from siamtext.serve.settings import ServeSettings
    from siamtext.validation import check_positive_int

    check_positive_int(num_replicas, "num_replicas")
    settings = ServeSettings() if settings is None else settings
    if not isinstance(settings, ServeSettings):
        raise TypeError(f"settings must be a ServeSettings, got {type(settings).__name__}")
    serve = _import_serve()
    kwargs = dict(model_kwargs or {})
    model = str(model)
    if isinstance(index, (str, Path)) and index_readonly:
        folder = str(index)

        def index(m: Any) -> Any:  # noqa: F811 - the folder, opened read-only
            from siamtext.index import Index

            return Index.open(folder, m, readonly=True)

    def build() -> Any:
        from siamtext.model import SiamText
        from siamtext.serve import create_app

        return create_app(lambda: SiamText(model, **kwargs), index=index, intents=intents,
                          settings=settings, batcher=RayBatcher)

    ongoing = max_ongoing_requests or max(2 * settings.max_batch_requests, 8)
    return serve.deployment(serve.ingress(build)(), name=name, num_replicas=num_replicas,
                            ray_actor_options=ray_actor_options or {"num_cpus": 1},
                            max_ongoing_requests=ongoing)
