"""/health, /ready (503 while loading), /info, /metrics, the page and the schema."""

from __future__ import annotations

import re
import threading

from tests.serve.conftest import wait_ready


def test_health_and_ready(client):
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json() == {"status": "ready"}


def test_ready_is_503_until_the_model_is_loaded(make_client, tiny_model):
    release = threading.Event()

    def load():
        assert release.wait(30)
        return tiny_model

    client = make_client(model=load, ready=False)
    assert client.get("/health").status_code == 200
    r = client.get("/ready")
    assert r.status_code == 503 and r.json()["status"] == "loading"
    assert r.headers["retry-after"] == "1"
    busy = client.post("/embed", json={"inputs": "a"})
    assert busy.status_code == 503 and "loading" in busy.json()["error"]["message"]
    release.set()
    wait_ready(client)
    assert client.post("/embed", json={"inputs": "a"}).status_code == 200


def test_ready_says_why_loading_failed(make_client):
    def load():
        raise OSError("no model at /nowhere")

    client = make_client(model=load, ready=False)
    for _ in range(200):
        r = client.get("/ready")
        if r.json()["status"] == "failed":
            break
    assert r.status_code == 503 and "no model at /nowhere" in r.json()["error"]
    assert "no model at /nowhere" in client.post("/embed", json={"inputs": "a"}).text


def test_info(client, tiny_model):
    import siamtext

    info = client.get("/info").json()
    assert info["version"] == siamtext.__version__
    assert info["model"]["dim"] == tiny_model.embedding_dim
    assert info["model"]["backend"] == "torch"
    assert info["settings"]["max_texts"] == 256 and info["settings"]["keys_required"] is False
    assert "index" not in info and "intents" not in info
    client.post("/embed", json={"inputs": ["a", "b"]})
    assert client.get("/info").json()["batching"] == {"batches": 1, "requests": 1}


def _sample(text: str, name: str, labels: str = "") -> float:
    pattern = re.escape(name) + (r"\{" + labels + r"\}" if labels else "") + r" (\S+)"
    match = re.search(r"^" + pattern + r"$", text, re.M)
    assert match, f"{name}{{{labels}}} not in metrics"
    return float(match.group(1))


def test_metrics(client):
    for _ in range(3):
        client.post("/embed", json={"inputs": ["a b", "c"]})
    client.post("/embed", json={"inputs": []})
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert _sample(text, "siamtext_requests_total",
                   'method="POST",route="/embed",status="200"') == 3
    assert _sample(text, "siamtext_requests_total",
                   'method="POST",route="/embed",status="422"') == 1
    for stage in ("queue", "tokenize", "inference"):
        assert _sample(text, "siamtext_stage_duration_seconds_count", f'stage="{stage}"') == 3
    assert _sample(text, "siamtext_batch_texts_sum") == 6
    assert _sample(text, "siamtext_batch_requests_count") >= 1
    assert _sample(text, "siamtext_queue_depth") == 0
    assert _sample(text, "siamtext_index_items") == 0
    assert _sample(text, "siamtext_ready") == 1
    assert 'route="/embed"' in text and "siamtext_request_duration_seconds_bucket" in text


def test_page_and_schema(client):
    page = client.get("/")
    assert page.status_code == 200 and "<title>siamtext serve</title>" in page.text
    schema = client.get("/openapi.json").json()
    for path in ("/v1/embeddings", "/embed", "/similarity", "/duplicates/check", "/duplicates",
                 "/duplicates/{item_id}", "/intents/predict", "/intents/{label}/examples",
                 "/intents/{label}", "/health", "/ready", "/info", "/metrics"):
        assert path in schema["paths"], path
