"""API keys, request limits and the refusal to expose writes without a key.

Key file: one key a line, ``read KEY`` or ``write KEY`` (a write key may also read; a bare
``KEY`` is a write key); blank lines and ``#`` comments are skipped. Clients send
``Authorization: Bearer KEY``. Every given key is compared with every stored key by
:func:`hmac.compare_digest`, all of them whatever matched, so the time taken tells nothing of
how much of a key was right.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fastapi import Request

from siamtext.serve.errors import ApiError, error_body

Scope = Literal["read", "write"]


@dataclass(frozen=True)
class Keys:
    """The read and write keys of a server."""

    read: tuple[bytes, ...] = ()
    write: tuple[bytes, ...] = ()

    def scope_of(self, key: str) -> Scope | None:
        """``"write"``, ``"read"`` or ``None`` for a key that is neither (constant time)."""
        given = key.encode("utf-8", "surrogateescape")
        is_write = False
        for stored in self.write:
            is_write |= hmac.compare_digest(given, stored)
        is_read = False
        for stored in self.read:
            is_read |= hmac.compare_digest(given, stored)
        return "write" if is_write else "read" if is_read else None


def load_keys(path: str | Path) -> Keys:
    """Read a key file (see the module docstring).

    Raises:
        FileNotFoundError: If there is no such file.
        ValueError: Naming the line of a bad entry, or a file with no key.
    """
    path = Path(path)
    read: list[bytes] = []
    write: list[bytes] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) == 1:
            scope, key = "write", parts[0]
        elif len(parts) == 2 and parts[0] in ("read", "write"):
            scope, key = parts
        else:
            raise ValueError(f"{path}:{number}: expected 'read KEY', 'write KEY' or 'KEY'")
        if len(key) < 16:
            raise ValueError(f"{path}:{number}: a key must be at least 16 characters long")
        (write if scope == "write" else read).append(key.encode("utf-8"))
    if not read and not write:
        raise ValueError(f"{path} holds no key")
    return Keys(tuple(read), tuple(write))


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    kind, _, token = header.partition(" ")
    return token.strip() if kind.lower() == "bearer" and token.strip() else ""


def require(scope: Scope) -> Callable:
    """A FastAPI dependency: the request's key must allow ``scope`` (when keys are set)."""

    async def check(request: Request) -> None:
        keys: Keys | None = request.app.state.keys
        if keys is None:
            return
        token = bearer(request)
        challenge = {"WWW-Authenticate": "Bearer"}
        if token is None:
            raise ApiError(401, "this server needs a key: send 'Authorization: Bearer KEY'",
                           "Authorization", challenge)
        got = keys.scope_of(token)
        if got is None:
            raise ApiError(401, "the key is not valid", "Authorization", challenge)
        if scope == "write" and got != "write":
            raise ApiError(403, "this key may read but not write", "Authorization")

    return check


def is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine (``127.0.0.0/8``, ``::1``,
    ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, *, has_keys: bool, writes: bool, insecure: bool) -> None:
    """Refuse to serve write routes on a non-loopback address without a key.

    Raises:
        ValueError: Saying why and what to pass instead.
    """
    if writes and not has_keys and not insecure and not is_loopback(host):
        raise ValueError(f"--host {host} exposes write routes (an index or intents) to the "
                         "network without a key: pass --api-key-file, bind 127.0.0.1, or "
                         "--insecure to do it anyway")


class BodyLimitMiddleware:
    """ASGI middleware answering 413 to a body over ``max_bytes`` (by its Content-Length, or
    as it streams in)."""

    def __init__(self, app: Callable, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    size = int(value)
                except ValueError:
                    await _send_error(send, 400, "Content-Length is not a number")
                    return
                if size > self.max_bytes:
                    await _send_error(send, 413, self._message(size))
                    return
        if not any(name == b"content-length" for name, _ in scope.get("headers", ())):
            # a chunked body: read it here, within the limit, and hand it on whole
            chunks, seen = [], 0
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    break
                chunks.append(message.get("body", b""))
                seen += len(chunks[-1])
                if seen > self.max_bytes:
                    await _send_error(send, 413, self._message(seen))
                    return
                if not message.get("more_body", False):
                    break
            replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

            async def replay_receive() -> dict:
                return replay.pop() if replay else await receive()

            await self.app(scope, replay_receive, send)
            return
        await self.app(scope, receive, send)

    def _message(self, size: int) -> str:
        return f"the body is {size} bytes, over the limit of {self.max_bytes}"


async def _send_error(send: Callable, status: int, message: str) -> None:
    import json

    body = json.dumps(error_body(status, message)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def check_k(k: int, max_k: int) -> int:
    """``k`` if it is at most ``max_k``; else a 422 naming the field."""
    if k > max_k:
        raise ApiError(422, f"k: at most {max_k}, got {k}", "k")
    return k


def check_request_texts(texts: object, field: str, max_texts: int, max_chars: int,
                        allow_empty_list: bool = False) -> list[str]:
    """The texts of a request as a list, within the server's limits.

    Raises:
        ApiError: 422 for a non-string, a lone surrogate, an empty list or a text over
            ``max_chars`` characters; 413 for more than ``max_texts`` texts. The message
            names the field (``input[3]``).
    """
    from siamtext.validation import check_texts

    single = isinstance(texts, str)
    try:
        out = check_texts(texts, field)
    except (TypeError, ValueError) as err:
        bad = str(err).split(" ", 1)[0]
        raise ApiError(422, str(err), bad if bad.startswith(field) else field) from None
    if not out and not allow_empty_list:
        raise ApiError(422, f"{field} must hold at least one text, got an empty list", field)
    if len(out) > max_texts:
        raise ApiError(413, f"{field} holds {len(out)} texts, over the limit of {max_texts} "
                            "per request: send them in several requests", field)
    for i, text in enumerate(out):
        if len(text) > max_chars:
            name = field if single else f"{field}[{i}]"
            raise ApiError(422, f"{name} is {len(text)} characters long, over the limit of "
                                f"{max_chars}", name)
    return out
