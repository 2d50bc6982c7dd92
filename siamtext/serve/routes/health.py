"""``/health`` (alive), ``/ready`` (loaded), ``/info`` (what is served), ``/metrics``, ``/``.

``/health`` and ``/ready`` never need a key (load balancers and orchestrators poll them);
``/`` is the static page, which holds no data and asks for a key itself when the server has
keys.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from siamtext.serve.metrics import CONTENT_TYPE
from siamtext.serve.routes.embeddings import service_of
from siamtext.serve.security import require

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict:
    """200 while the process serves requests, loaded or not."""
    return {"status": "ok"}


@router.get("/ready", responses={503: {"description": "Still loading, or failed to load"}})
async def ready(request: Request) -> JSONResponse:
    """200 once the model is loaded and the index and intents are open; 503 before."""
    service = service_of(request)
    if service.ready and not service.closed:
        return JSONResponse({"status": "ready"})
    status = ("failed" if service.load_error else "closing" if service.closed else "loading")
    body = {"status": status, "error": service.load_error}
    return JSONResponse(body, status_code=503,
                        headers={"Retry-After": str(service.settings.retry_after_s)})


@router.get("/info", dependencies=[Depends(require("read"))])
async def info(request: Request) -> dict:
    """The model, its dimension and backend, siamtext's version, the counts and limits."""
    return service_of(request).info()


@router.get("/metrics", dependencies=[Depends(require("read"))],
            response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus metrics in the text exposition format."""
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE)


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page() -> HTMLResponse:
    """A page to try the duplicate check and the intents in a browser."""
    html = (resources.files("siamtext.serve") / "static" / "index.html").read_text("utf-8")
    return HTMLResponse(html)
