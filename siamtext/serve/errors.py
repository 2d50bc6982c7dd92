"""JSON error bodies: every failure answers ``{"error": {"message", "type", "field"}}``.

The shape follows OpenAI's (``message``, ``type``) so its clients show the message; ``field``
names the request field at fault (``"input[3]"``), or is ``null``. No handler ever sends a
stack trace: an unexpected exception is logged here and answered with a 500 that says only
that.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 405: "method_not_allowed", 409: "conflict_error",
          413: "request_too_large", 422: "invalid_request_error", 429: "rate_limit_error",
          503: "service_unavailable", 500: "server_error"}


class ApiError(Exception):
    """An answer other than 2xx, raised by a route or a dependency.

    Args:
        status: The HTTP status.
        message: What went wrong and what is expected, for the client.
        field: The request field at fault (``"texts[2]"``), if one is.
        headers: Extra response headers (``Retry-After``, ``WWW-Authenticate``).
    """

    def __init__(self, status: int, message: str, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = headers or {}


def error_body(status: int, message: str, field: str | None = None) -> dict[str, Any]:
    """The JSON body of an error answer."""
    return {"error": {"message": message, "type": _TYPES.get(status, "error"), "field": field}}


def error_response(status: int, message: str, field: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, field), status_code=status, headers=headers)


def field_name(loc: tuple | list) -> str | None:
    """``("body", "input", 3)`` -> ``"input[3]"``; ``("path", "id")`` -> ``"id"``."""
    parts = [p for p in loc if p not in ("body", "path", "query", "header")]
    # pydantic names the member of a union it tried ("str", "list[str]"): not a field
    parts = [p for p in parts if not (isinstance(p, str) and ("[" in p or p in _TYPE_TAGS))]
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or None


_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "function-after", "function-plain",
              "function-wrap", "is-instance", "tagged-union", "nullable"}


def _validation_message(err: dict) -> tuple[int, str, str | None]:
    loc = tuple(err.get("loc", ()))
    field = field_name(loc)
    kind = err.get("type", "")
    if kind == "json_invalid":
        return 400, "the body is not valid JSON: " + str(err.get("ctx", {}).get("error", "")), None
    if kind == "missing" and field is None:
        return 422, "the request needs a JSON body", None
    if kind == "model_attributes_type" and field is None:
        return 422, "the body must be a JSON object", None
    message = str(err.get("msg", "invalid value"))
    got = err.get("input")
    if kind not in ("missing", "extra_forbidden") and got is not None:
        shown = repr(got)
        message += f" (got {shown[:60] + '...' if len(shown) > 60 else shown})"
    return 422, f"{field}: {message}" if field else message, field


def install(app: FastAPI) -> None:
    """Answer every error of ``app`` with a JSON body."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.field, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        # the most useful error first: a JSON syntax error, else the first one
        errors.sort(key=lambda e: e.get("type") != "json_invalid")
        status, message, field = _validation_message(errors[0]) if errors else (
            422, "invalid request", None)
        return error_response(status, message, field)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "error"
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.url.path}"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        return error_response(exc.status_code, message, None, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("%s %s failed", request.method, request.url.path)
        return error_response(500, "internal error: the server logged the details")
