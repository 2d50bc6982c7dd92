"""``siamtext serve``: embeddings, duplicate checks and live intents over HTTP.

:func:`create_app` builds the FastAPI app (``pip install 'siamtext[serve]'``); the command
``siamtext serve MODEL`` runs it under uvicorn. Requests are merged into model batches by
:class:`~siamtext.serve.batcher.Batcher` on its inference lanes (one thread, or one per core
for an exported ONNX model).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from siamtext.serve.settings import ServeSettings

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["ServeSettings", "create_app"]


def create_app(*args: Any, **kwargs: Any) -> FastAPI:
    """See :func:`siamtext.serve.app.create_app` (imported here only when called, so a
    missing ``fastapi`` names the extra)."""
    from siamtext.extras import require

    require("fastapi", "serve", "siamtext.serve")
    require("prometheus_client", "serve", "siamtext.serve")
    from siamtext.serve.app import create_app as factory

    return factory(*args, **kwargs)
