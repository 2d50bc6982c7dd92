"""siamtext.integrations.ray_serve on a local Ray instance: 2 replicas of the app, batches
by @serve.batch, a read-only index shared with a writing process."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

pytest.importorskip("ray.serve")

from siamtext.index import Index  # noqa: E402
from tests.ray_start import start_local_ray  # noqa: E402
from tests.serve.process import free_port  # noqa: E402

pytestmark = pytest.mark.slow  # a Ray instance and two replicas: about a minute


@pytest.fixture(scope="module")
def ray_serve_url():
    import ray
    from ray import serve

    start_local_ray(runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1",
                                              "TOKENIZERS_PARALLELISM": "false",
                                              "OMP_NUM_THREADS": "1"}})
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()
    ray.shutdown()


def test_two_replicas_share_a_read_only_index(ray_serve_url, tiny_bert_dir, tiny_model,
                                              tmp_path, corpus):
    import time

    from ray import serve

    from siamtext.integrations.ray_serve import deployment
    from siamtext.serve import ServeSettings

    writer = Index.create(tmp_path / "idx", tiny_model)
    writer.add(["How do I reset my password?"], ids=[1])
    app = deployment(tiny_bert_dir, index=tmp_path / "idx", index_readonly=True,
                     num_replicas=2, ray_actor_options={"num_cpus": 0.5},
                     model_kwargs={"device": "cpu"},
                     settings=ServeSettings(max_wait_ms=20)).bind()
    serve.run(app, name="siamtext", route_prefix="/")
    url = ray_serve_url
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/ready", timeout=5).status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.2)

    # both replicas answer
    pids = set()
    for _ in range(40):
        info = httpx.get(url + "/info", timeout=30).json()
        if info.get("ready"):
            pids.add(info["pid"])
        if len(pids) == 2:
            break
    assert len(pids) == 2

    # concurrent requests through @serve.batch equal model.encode
    requests = [corpus[i : i + 1 + i % 3] for i in range(24)]
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda t: httpx.post(url + "/embed", json={"inputs": t},
                                                     timeout=60), requests))
    assert [a.status_code for a in answers] == [200] * len(requests)
    for texts, a in zip(requests, answers):
        np.testing.assert_allclose(np.asarray(a.json()), tiny_model.encode(texts), atol=1e-5)
    batching = {}
    for _ in range(60):  # each replica's own counts
        info = httpx.get(url + "/info", timeout=30).json()
        batching[info["pid"]] = info["batching"]
        if len(batching) == 2 and sum(b["requests"] for b in batching.values()) == 24:
            break
    # (a replica that Ray replaced under load starts its counts again: hence <=)
    assert 0 < sum(b["requests"] for b in batching.values()) <= len(requests), batching
    assert any(b["batches"] < b["requests"] for b in batching.values()), batching  # merged

    # the replicas see what the writing process adds; they cannot write themselves
    writer.add(["Where is my parcel?"], ids=[2])
    for _ in range(6):  # whichever replica answers
        check = httpx.post(url + "/duplicates/check", json={"texts": "Where is my parcel?",
                                                            "threshold": 0.999}, timeout=30)
        assert [h["id"] for h in check.json()["results"][0]["duplicates"]] == [2]
    refused = httpx.post(url + "/duplicates", json={"items": [{"text": "x"}]}, timeout=30)
    assert refused.status_code == 403 and "read-only" in refused.json()["error"]["message"]
    serve.delete("siamtext")
    writer.close()
