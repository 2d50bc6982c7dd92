"""The ASGI app factory: :func:`create_app`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from siamtext.serve import errors, routes
from siamtext.serve.batcher import Batcher
from siamtext.serve.embed import ArrivalMiddleware
from siamtext.serve.metrics import Metrics, MetricsMiddleware
from siamtext.serve.security import BodyLimitMiddleware, load_keys
from siamtext.serve.service import IndexSource, IntentsSource, ModelSource, Service
from siamtext.serve.settings import ServeSettings

logger = logging.getLogger(__name__)


def create_app(model: ModelSource, index: IndexSource = None, intents: IntentsSource = None,
               settings: ServeSettings | None = None, *,
               batcher: type[Batcher] = Batcher) -> FastAPI:
    """A FastAPI app serving embeddings, duplicate checks and intents.

    The model, index and intents load on a background thread when the app starts (its
    lifespan), so ``GET /health`` answers at once and ``GET /ready`` says 503 until they are
    there. Mount it in your own ASGI app, or run it with ``uvicorn`` / ``siamtext serve``.

    Args:
        model: A :class:`~siamtext.SiamText`, or a function returning one.
        index: An open :class:`~siamtext.index.Index`, or its folder (created when missing),
            or a function of the model that opens one, for the ``/duplicates`` routes;
            ``None`` for none.
        intents: An :class:`~siamtext.classify.IntentClassifier`; or a folder written by its
            ``save`` (loaded, and written again after each change); or a collection of
            examples (:mod:`siamtext.classify.intent_index`: a k-NN classifier on ``model``
            whose changes are durable increments; created on the first write when missing);
            for the ``/intents`` routes; ``None`` for none.
        settings: Batching, limits, keys and CORS (:class:`ServeSettings`).
        batcher: The batcher class (:class:`~siamtext.serve.batcher.Batcher`, one inference
            thread; Ray Serve's integration passes one on ``@serve.batch``).

    Returns:
        The app; ``app.state.service`` holds what it serves.

    Raises:
        TypeError: For a ``settings`` that is not a :class:`ServeSettings`.
        ValueError: For a bad key file (named).
    """
    settings = ServeSettings() if settings is None else settings
    if not isinstance(settings, ServeSettings):
        raise TypeError(f"settings must be a ServeSettings, got {type(settings).__name__}")
    keys = load_keys(settings.api_keys) if settings.api_keys is not None else None
    metrics = Metrics()
    service = Service(model, index, intents, settings, metrics, batcher)
    metrics.bind(service.queue_depth, service.index_items, service.intent_classes)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loading = asyncio.ensure_future(service.offload(service.load))
        loading.add_done_callback(_mark_ready)
        app.state.loading = loading
        try:
            yield
        finally:
            try:
                await loading  # a shutdown during loading waits for it, then closes
            except Exception:  # noqa: BLE001 - logged by Service.load
                pass
            await asyncio.to_thread(service.close)
            metrics.ready.set(0)

    def _mark_ready(future: asyncio.Future) -> None:
        if not future.cancelled() and future.exception() is None:
            metrics.ready.set(1)

    import siamtext

    app = FastAPI(title="siamtext serve", version=siamtext.__version__, lifespan=lifespan,
                  description="Embeddings, duplicate checks and live intents.",
                  openapi_url=None, docs_url=None, redoc_url=None)
    app.state.service = service
    app.state.metrics = metrics
    app.state.keys = keys
    errors.install(app)
    for module in routes.MODULES:
        app.include_router(module.router)
    _schema_routes(app)
    app.add_middleware(ArrivalMiddleware, service=service)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def _schema_routes(app: FastAPI) -> None:
    """``/openapi.json`` and ``/docs`` behind the read key, like every route but the probes
    (FastAPI's own are turned off: they take no dependency)."""
    from fastapi import Depends
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import HTMLResponse, JSONResponse

    from siamtext.serve.security import require

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(require("read"))])
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=[Depends(require("read"))])
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="siamtext serve")
