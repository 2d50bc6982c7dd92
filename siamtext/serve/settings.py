"""The server's settings: one dataclass, built the same by ``siamtext serve`` and by Python."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ServeSettings:
    """How :func:`siamtext.serve.create_app` batches, limits and protects requests.

    Attributes:
        max_batch_tokens: Token budget of one merged batch: requests are taken from the queue
            while their tokens fit (one request alone may exceed it), and each forward pass
            holds at most this many padded tokens.
        max_batch_requests: Most requests merged into one batch.
        max_wait_ms: How long a batch waits for more requests while some are on their way
            (received, not yet queued); it never waits when none is (0: take only what is
            queued when the model is free).
        max_queue: Most requests waiting for the model; one more gets 429 with Retry-After.
        max_body_bytes: Largest request body (413 above it).
        max_texts: Most texts in one request (413 above it).
        max_chars: Longest text in characters (422 above it).
        max_k: Largest ``k`` a search or top-k request may ask for.
        duplicate_threshold: Cosine at or above which a stored item is a duplicate, when a
            request does not give its own.
        api_keys: A key file (see :func:`siamtext.serve.security.load_keys`); ``None``: no key.
        cors_origins: Origins allowed by CORS; empty (the default) sends no CORS headers.
        model_name: The name ``/v1/embeddings`` and ``/info`` give; default: the model's path.
        retry_after_s: The ``Retry-After`` of a 429 or a 503, in seconds.
    """

    # chosen by benchmarks/serve_load.py --part sweep (all-MiniLM-L6-v2, 2 cores, 20 s points):
    # waits of 0 and 2 ms were within 2.5 % at 8 and 64 clients, 5 ms 8 % slower at 64, 10 ms
    # collapsed; 32-128 requests per batch and 4,096-65,536 tokens within 5 %, 16 was 14 % slower
    max_batch_tokens: int = 16384
    max_batch_requests: int = 64
    max_wait_ms: float = 2.0
    max_queue: int = 1024
    max_body_bytes: int = 2 * 1024 * 1024
    max_texts: int = 256
    max_chars: int = 20_000
    max_k: int = 100
    duplicate_threshold: float = 0.9
    api_keys: str | Path | None = None
    cors_origins: list[str] = field(default_factory=list)
    model_name: str | None = None
    retry_after_s: int = 1

    def __post_init__(self) -> None:
        for name in ("max_batch_tokens", "max_batch_requests", "max_queue", "max_body_bytes",
                     "max_texts", "max_chars", "max_k", "retry_after_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        wait = self.max_wait_ms
        if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not 0 <= wait <= 1000:
            raise ValueError(f"max_wait_ms must be a number in [0, 1000], got {wait!r}")
        t = self.duplicate_threshold
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not -1 <= t <= 1:
            raise ValueError(f"duplicate_threshold must be a cosine in [-1, 1], got {t!r}")
        if isinstance(self.cors_origins, str) or not all(
                isinstance(o, str) for o in self.cors_origins):
            raise TypeError(f"cors_origins must be a list of strings, got {self.cors_origins!r}")

    def public(self) -> dict[str, Any]:
        """The settings ``/info`` shows (the key file's path is left out)."""
        out = asdict(self)
        out.pop("api_keys")
        out["keys_required"] = self.api_keys is not None
        return out
