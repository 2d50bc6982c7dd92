"""A real ``siamtext serve`` process on a loopback port: keys, batching under concurrency,
the openai client, SIGTERM drain and durability of acknowledged writes across kill -9."""

from __future__ import annotations

import signal
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from siamtext.classify import IntentClassifier
from siamtext.index import Index
from tests.serve.process import cli_server, script_server

pytest.importorskip("uvicorn")

READ = "read-key-0123456789abcdef"
WRITE = "write-key-0123456789abcdef"


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_bert_dir):
    tmp = tmp_path_factory.mktemp("served")
    keys = tmp / "keys.txt"
    keys.write_text(f"read {READ}\nwrite {WRITE}\n")
    srv = cli_server(tmp, tiny_bert_dir, "--index", str(tmp / "idx"), "--intents",
                     str(tmp / "intents"), "--api-key-file", str(keys), "--max-wait-ms", "10")
    srv.wait_ready()
    yield srv
    assert srv.stop() in (0, -signal.SIGTERM), srv.log()


def _h(key):
    return {"Authorization": f"Bearer {key}"}


def test_keys_over_the_wire(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        assert c.get("/health").status_code == 200
        assert c.post("/embed", json={"inputs": "a"}).status_code == 401
        assert c.post("/embed", json={"inputs": "a"}, headers=_h("wrong" * 5)).status_code == 401
        assert c.post("/embed", json={"inputs": "a"}, headers=_h(READ)).status_code == 200
        body = {"items": [{"text": "a stored question"}]}
        assert c.post("/duplicates", json=body, headers=_h(READ)).status_code == 403
        assert c.post("/duplicates", json=body, headers=_h(WRITE)).status_code == 201


def _batches(server) -> float:
    metrics = httpx.get(server.url + "/metrics", headers=_h(READ)).text
    line = next(x for x in metrics.splitlines() if x.startswith("siamtext_batch_requests_count"))
    return float(line.split()[-1])


def test_batching_under_concurrency(server, tiny_model, corpus):
    requests = [corpus[i : i + 1 + i % 3] for i in range(32)]

    def post(texts):
        with httpx.Client(base_url=server.url, timeout=60, headers=_h(READ)) as c:
            return c.post("/embed", json={"inputs": texts})

    # Whether two requests meet in one batch depends on the scheduler: on a loaded machine
    # a burst can arrive one by one. A server that never merges fails every burst.
    for _ in range(5):
        before = _batches(server)
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(post, requests))
        assert [a.status_code for a in answers] == [200] * len(requests)
        for texts, a in zip(requests, answers):
            np.testing.assert_allclose(np.asarray(a.json()), tiny_model.encode(texts), atol=1e-5)
        if _batches(server) - before < len(requests):
            break  # some requests shared a model batch
    else:
        pytest.fail("32 concurrent requests never shared a model batch in 5 bursts")


def test_openai_client(server, tiny_model):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=READ, max_retries=0)
    texts = ["I lost my card", "where is my parcel"]
    default = client.embeddings.create(model="tiny", input=texts)  # base64 on the wire
    floats = client.embeddings.create(model="tiny", input=texts, encoding_format="float")
    want = tiny_model.encode(texts)
    for answer in (default, floats):
        np.testing.assert_allclose(np.asarray([d.embedding for d in answer.data]), want,
                                   atol=1e-5)
        assert answer.usage.prompt_tokens == sum(len(x) for x in tiny_model.token_ids(texts))
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url + "/v1", api_key="nope" * 5,
                      max_retries=0).embeddings.create(model="tiny", input="a")


def test_acknowledged_writes_survive_kill_9(tmp_path, tiny_bert_dir, tiny_model):
    srv = cli_server(tmp_path, tiny_bert_dir, "--index", str(tmp_path / "idx"),
                     "--intents", str(tmp_path / "intents"))
    srv.wait_ready()
    try:
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            items = [{"text": f"question number {i}"} for i in range(5)]
            assert c.post("/duplicates", json={"items": items}).status_code == 201
            assert c.post("/intents/greet/examples",
                          json={"texts": ["hello", "hi"]}).status_code == 201
            last = c.post("/duplicates", json={"items": [{"text": "the last one", "id": 99}]})
            assert last.status_code == 201
        srv.signal(signal.SIGKILL)  # straight after the answers: no shutdown, no flush
        assert srv.proc.wait(30) == -signal.SIGKILL
    finally:
        srv.stop()
    index = Index.open(tmp_path / "idx", tiny_model)
    try:
        assert len(index) == 6 and index.get(99).text == "the last one"
        hit = index.search("question number 3", k=1)[0]
        assert hit.text == "question number 3"
    finally:
        index.close()
    clf = IntentClassifier.open(tmp_path / "intents", tiny_model, mode="knn")
    try:
        assert clf.classes_.tolist() == ["greet"] and clf.examples_.shape[0] == 2
    finally:
        clf.close()


DRAIN_SCRIPT = """
import sys, time
from siamtext import SiamText
from siamtext.serve import ServeSettings, create_app
from siamtext.serve.server import serve

model = SiamText(sys.argv[2], device="cpu")
embed = model.embed

def slow_embed(*args, **kwargs):
    time.sleep(1.5)  # every forward pass is slow: requests are in flight for a while
    return embed(*args, **kwargs)

model.embed = slow_embed
app = create_app(model, index=sys.argv[3], settings=ServeSettings(max_wait_ms=0))
sys.exit(serve(app, port=int(sys.argv[1]), log_level="warning"))
"""


def test_sigterm_drains_in_flight_requests(tmp_path, tiny_bert_dir, tiny_model):
    srv = script_server(tmp_path, textwrap.dedent(DRAIN_SCRIPT), str(tiny_bert_dir),
                        str(tmp_path / "idx"))
    srv.wait_ready()
    results = {}

    def call(name, path, body):
        try:
            results[name] = httpx.post(srv.url + path, json=body, timeout=60)
        except httpx.TransportError as err:
            results[name] = err

    threads = [threading.Thread(target=call, args=("write", "/duplicates",
                                                   {"items": [{"text": "in flight"}]})),
               threading.Thread(target=call, args=("embed", "/embed", {"inputs": "a"}))]
    for t in threads:
        t.start()
    time.sleep(0.5)  # both are inside the server now, waiting for the slow model
    srv.signal(signal.SIGTERM)
    time.sleep(0.3)
    try:  # a new connection after SIGTERM is refused
        late = httpx.post(srv.url + "/embed", json={"inputs": "late"}, timeout=5)
    except httpx.TransportError as err:
        late = err
    for t in threads:
        t.join(60)
    code = srv.proc.wait(60)
    # uvicorn re-raises SIGTERM once it has shut down gracefully: the exit says "terminated"
    assert code in (0, -signal.SIGTERM), srv.log()
    assert "Traceback" not in srv.log(), srv.log()
    assert results["write"].status_code == 201, srv.log()
    assert results["embed"].status_code == 200
    assert isinstance(late, httpx.TransportError), late
    index = Index.open(tmp_path / "idx", tiny_model)  # closed: the lock is free
    try:
        assert [item.text for item in index] == ["in flight"]
    finally:
        index.close()


def test_a_model_that_fails_to_load_stops_the_server(tmp_path):
    srv = cli_server(tmp_path, tmp_path / "no-such-model")
    try:
        code = srv.proc.wait(120)
    finally:
        srv.stop()
    assert code == 1, srv.log()
    assert "loading failed" in srv.log()
