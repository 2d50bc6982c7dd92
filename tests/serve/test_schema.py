"""Property-based requests from /openapi.json (schemathesis): no answer is a 5xx, every
4xx is a JSON error naming what was wrong, and the server keeps serving."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402

from siamtext.serve import ServeSettings, create_app  # noqa: E402
from tests.serve.process import ThreadedServer  # noqa: E402

EXAMPLES = 12  # per operation: bounded for the default run


@pytest.fixture(scope="module")
def served(tiny_model, tmp_path_factory, demo_embeddings):
    from siamtext.classify import IntentClassifier

    emb, labels = demo_embeddings
    folder = tmp_path_factory.mktemp("schema")
    app = create_app(tiny_model, index=folder / "idx",
                     intents=IntentClassifier(tiny_model).fit(emb, labels),
                     settings=ServeSettings(max_texts=16, max_chars=2000))
    with ThreadedServer(app) as server:
        yield server


def _operations(served):
    schema = schemathesis.openapi.from_url(served.url + "/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


def test_no_server_errors(served):
    """Every operation of the schema, EXAMPLES valid and EXAMPLES invalid requests each
    (schemathesis' pytest plugin is not used: it does not run on pytest 9)."""
    operations = _operations(served)
    assert len(operations) >= 14
    seen = []
    modes = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
    for operation, mode in ((op, mode) for op in operations for mode in modes):
        try:
            strategy = operation.as_strategy(generation_mode=mode)
        except Exception:  # noqa: BLE001 - an operation with nothing to make invalid
            continue

        @given(case=strategy)
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case):
            response = case.call(base_url=served.url, timeout=30)
            seen.append(response.status_code)
            assert response.status_code < 500, (case.method, case.formatted_path, case.body,
                                                response.text)
            if response.status_code >= 400:
                error = response.json()["error"]
                assert isinstance(error["message"], str) and error["message"]
                assert "Traceback" not in response.text

        try:
            check()
        except Unsatisfiable:
            assert mode is schemathesis.GenerationMode.NEGATIVE  # nothing to make invalid
    assert len(seen) >= len(operations) * 4  # requests really went out
    assert any(code < 300 for code in seen) and any(code == 422 for code in seen)


def test_still_serving_after_the_run(served):
    import httpx

    assert httpx.get(served.url + "/ready").status_code == 200
    assert httpx.post(served.url + "/embed", json={"inputs": "a"}).status_code == 200
