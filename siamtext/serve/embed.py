"""A request's texts through a batcher: tokenised, queued, dropped if the client leaves.

:func:`embed_texts` is what every route that embeds calls. :class:`ArrivalMiddleware` counts
the requests on their way to a batcher, so that a batch waits for company only while some is
coming.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from siamtext.serve.batcher import BatcherStoppedError, QueueFullError, normalize_rows
from siamtext.serve.errors import ApiError
from siamtext.serve.service import ARRIVING, Service

if TYPE_CHECKING:
    from siamtext.model import SiamText


async def embed_texts(service: Service, encoder: SiamText, texts: list[str], *,
                      normalize: bool = True, request: Any = None
                      ) -> tuple[np.ndarray, int]:
    """Embed ``texts`` through the encoder's batcher: ``(embeddings, tokens)``.

    With ``request`` (a Starlette request), a client that disconnects while queued is
    dropped from the queue (answered 499, which no one reads), and the request stops counting
    as arriving once it is queued.
    """
    batcher = service.batcher_for(encoder)
    start = time.perf_counter()
    if sum(len(t) for t in texts) > 4096:  # a long tokenisation stays off the event loop
        ids = await service.offload(batcher.tokenize, texts)
    else:
        ids = batcher.tokenize(texts)
    service.metrics.stage.labels("tokenize").observe(time.perf_counter() - start)
    tokens = sum(len(x) for x in ids)
    receive = request.receive if request is not None else None
    if request is not None:
        service.arrived(request.scope)
    if not ids:
        return np.zeros((0, encoder.embedding_dim), dtype=np.float32), 0
    retry = {"Retry-After": str(service.settings.retry_after_s)}
    try:
        job = batcher.submit(ids)
    except QueueFullError as err:
        service.metrics.rejected.inc()
        raise ApiError(429, f"the server is busy: {err}; retry later", None, retry) from None
    except BatcherStoppedError as err:
        raise ApiError(503, str(err), None, retry) from None
    watch = asyncio.ensure_future(_disconnected(receive)) if receive is not None else None
    try:
        if watch is None:
            emb = await job.future
        else:
            done, _ = await asyncio.wait({job.future, watch},
                                         return_when=asyncio.FIRST_COMPLETED)
            if job.future not in done:
                job.cancel()
                raise ApiError(499, "the client closed the request")
            emb = job.future.result()
    except asyncio.CancelledError:
        job.cancel()
        raise
    finally:
        if watch is not None:
            watch.cancel()
    return (normalize_rows(emb) if normalize else emb), tokens


class ArrivalMiddleware:
    """ASGI middleware counting the POST requests on their way to a batcher, so that a batch
    waits for company only while some is coming (:class:`~siamtext.serve.batcher.Batcher`'s
    ``arriving``)."""

    def __init__(self, app: Callable, service: Service) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        scope[ARRIVING] = True
        self.service.arriving += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.service.arrived(scope)


async def _disconnected(receive: Callable) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
