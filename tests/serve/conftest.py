"""Apps on the tiny tower, started in-process (lifespan run by Starlette's TestClient)."""

from __future__ import annotations

import csv
import time
from importlib import resources
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")

from fastapi.testclient import TestClient  # noqa: E402

from siamtext.serve import ServeSettings, create_app  # noqa: E402


def demo_rows() -> tuple[list[str], list[str]]:
    path = resources.files("siamtext") / "resources" / "demo_intents.csv"
    with path.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def wait_ready(client: TestClient, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get("/ready").status_code == 200:
            return
        time.sleep(0.01)
    raise AssertionError(f"not ready after {timeout} s: {client.get('/ready').json()}")


@pytest.fixture
def make_client(tiny_model):
    """``make_client(index=..., intents=..., settings=..., model=...)``: a started client."""
    started: list[TestClient] = []

    def make(*, model=None, ready: bool = True, headers: dict | None = None,
             **kwargs) -> TestClient:
        app = create_app(tiny_model if model is None else model, **kwargs)
        client = TestClient(app, raise_server_exceptions=False, headers=headers or {})
        client.__enter__()
        started.append(client)
        if ready:
            wait_ready(client)
        return client

    yield make
    for client in started:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client) -> TestClient:
    """An app on the tiny tower with no index and no intents."""
    return make_client()


@pytest.fixture
def index_path(tmp_path: Path) -> Path:
    return tmp_path / "questions.idx"


@pytest.fixture(scope="session")
def demo_embeddings(tiny_model):
    texts, labels = demo_rows()
    return tiny_model.encode(texts), labels


@pytest.fixture
def intents(tiny_model, demo_embeddings):
    """A prototype classifier fitted on the demo utterances (a fresh one per test)."""
    from siamtext.classify import IntentClassifier

    emb, labels = demo_embeddings
    return IntentClassifier(tiny_model).fit(emb, labels)


def start(app, headers: dict | None = None) -> TestClient:
    """A started, ready client of ``app`` (stop it with ``client.__exit__(None, None, None)``)."""
    client = TestClient(app, raise_server_exceptions=False, headers=headers or {})
    client.__enter__()
    wait_ready(client)
    return client


@pytest.fixture
def settings_with(tmp_path: Path):
    def make(**kwargs) -> ServeSettings:
        return ServeSettings(**kwargs)

    return make
