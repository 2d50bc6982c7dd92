"""Prometheus metrics of one app: requests, latency split by stage, batches, queue, index.

Each app has its own registry (two apps in one process do not mix their counts); ``GET
/metrics`` writes it in the Prometheus text format. The stages of an embedding: ``queue``
(waiting for the model), ``tokenize`` and ``inference`` (the forward passes of its batch).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from siamtext.serve.batcher import BatchStats

_LATENCY = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """The counters and histograms of one app, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("siamtext_requests", "HTTP requests by route, method and status",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("siamtext_request_duration_seconds",
                                 "Time from request to response, by route", ["route"],
                                 buckets=_LATENCY, registry=r)
        self.stage = Histogram("siamtext_stage_duration_seconds",
                               "Time of each stage of embedding: queue, tokenize, inference",
                               ["stage"], buckets=_LATENCY, registry=r)
        self.batch_texts = Histogram("siamtext_batch_texts", "Texts per merged model batch",
                                     buckets=_SIZES, registry=r)
        self.batch_requests = Histogram("siamtext_batch_requests",
                                        "Requests merged into one model batch",
                                        buckets=_SIZES, registry=r)
        self.batch_tokens = Counter("siamtext_tokens", "Tokens embedded", registry=r)
        self.dropped = Counter("siamtext_dropped_requests",
                               "Queued requests dropped because their client went away",
                               registry=r)
        self.rejected = Counter("siamtext_rejected_requests",
                                "Requests refused because the queue was full", registry=r)
        self.queue_depth = Gauge("siamtext_queue_depth", "Requests waiting for the model",
                                 registry=r)
        self.index_items = Gauge("siamtext_index_items", "Items in the duplicate index",
                                 registry=r)
        self.intent_classes = Gauge("siamtext_intent_classes", "Classes of the intent classifier",
                                    registry=r)
        self.ready = Gauge("siamtext_ready", "1 once the model is loaded and the index open",
                           registry=r)

    def bind(self, depth: Callable[[], int], items: Callable[[], int],
             classes: Callable[[], int]) -> None:
        """Read the queue depth, index size and class count when scraped."""
        self.queue_depth.set_function(depth)
        self.index_items.set_function(items)
        self.intent_classes.set_function(classes)

    def on_batch(self, stats: BatchStats) -> None:
        """Record one batch (called on an inference lane's thread)."""
        self.batch_texts.observe(stats.texts)
        self.batch_requests.observe(stats.requests)
        self.batch_tokens.inc(stats.tokens)
        for seconds in stats.queue_seconds:
            self.stage.labels("queue").observe(seconds)
        for _ in range(stats.requests):
            self.stage.labels("inference").observe(stats.inference_seconds)

    def on_drop(self, n: int) -> None:
        self.dropped.inc(n)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def batching(self) -> dict[str, float]:
        """Model batches so far and the requests they held (for ``/info``)."""
        samples = {s.name: s.value for s in self.batch_requests.collect()[0].samples}
        return {"batches": int(samples.get("siamtext_batch_requests_count", 0)),
                "requests": int(samples.get("siamtext_batch_requests_sum", 0))}

    def render(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)


class MetricsMiddleware:
    """ASGI middleware counting every HTTP request by its route template and status."""

    def __init__(self, app: Callable, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", None) or "unmatched"
            self.metrics.observe_request(name, scope.get("method", ""), status["code"],
                                         time.perf_counter() - start)
