"""Dynamic batching: merged batches by token budget and request count, dropped jobs,
a full queue, inference on its own thread, and embeddings equal to model.encode."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import numpy as np
import pytest

from siamtext.serve import ServeSettings, create_app
from siamtext.serve.batcher import Batcher, QueueFullError


class _Recorder:
    def __init__(self) -> None:
        self.batches = []
        self.dropped = 0

    def on_batch(self, stats) -> None:
        self.batches.append(stats)

    def on_drop(self, n: int) -> None:
        self.dropped += n


def _run_jobs(model, ids_per_job, **kwargs):
    """Queue every job before the worker starts, then let it run; returns results, stats."""
    rec = _Recorder()
    batcher = Batcher(model, on_batch=rec.on_batch, on_drop=rec.on_drop, **kwargs)

    async def go():
        jobs = [batcher.submit(ids) for ids in ids_per_job]
        batcher.start()
        try:
            return [await asyncio.wait_for(j.future, 30) for j in jobs]
        finally:
            batcher.stop()

    return asyncio.run(go()), rec


def test_batches_follow_the_request_limit(tiny_model):
    ids = [[[101, 7, 102]]] * 7
    _, rec = _run_jobs(tiny_model, ids, max_batch_requests=3, max_wait_ms=0)
    assert [b.requests for b in rec.batches] == [3, 3, 1]


def _answer_one(model, on_batch):
    """Submit one job to a batcher with ``on_batch``; its result and how many batches
    ``on_batch`` had recorded when the result arrived."""
    seen = []

    def record(stats) -> None:
        time.sleep(0.2)  # an answer sent before the batch is counted would arrive meanwhile
        on_batch(stats)
        seen.append(stats)

    batcher = Batcher(model, on_batch=record, max_wait_ms=0)

    async def go():
        job = batcher.submit([[101, 7, 102]])
        batcher.start()
        try:
            result = await asyncio.wait_for(job.future, 30)
            return result, len(seen)
        finally:
            batcher.stop()

    return asyncio.run(go())


def test_a_batch_is_counted_before_its_requests_are_answered(tiny_model):
    _, counted = _answer_one(tiny_model, lambda stats: None)
    assert counted == 1


def test_a_failing_on_batch_still_answers_the_requests(tiny_model, caplog):
    def fail(stats) -> None:
        raise RuntimeError("metrics are down")

    result, counted = _answer_one(tiny_model, fail)
    assert counted == 0 and result.shape == (1, tiny_model.embedding_dim)
    assert "on_batch failed on a batch of 1 requests" in caplog.text


def test_batches_follow_the_token_budget(tiny_model):
    # 4 jobs of 5 tokens under a 10-token budget: two per batch; a 12-token job goes alone
    ids = [[[101, 5, 6, 7, 102]]] * 4 + [[[101] + [9] * 10 + [102]]]
    _, rec = _run_jobs(tiny_model, ids, max_batch_tokens=10, max_wait_ms=0)
    assert [b.requests for b in rec.batches] == [2, 2, 1]
    assert [b.tokens for b in rec.batches] == [10, 10, 12]


def test_results_equal_encode_and_keep_each_jobs_order(tiny_model):
    texts = [["I lost my card", "hi"], ["where is my parcel"], ["", "a much longer text about "
                                                                  "a card that was stolen"]]
    ids = [tiny_model.token_ids(t) for t in texts]
    results, rec = _run_jobs(tiny_model, ids, max_wait_ms=0)
    assert len(rec.batches) == 1 and rec.batches[0].texts == 5
    for t, got in zip(texts, results):
        want = tiny_model.encode(t, normalize=False)
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_cancelled_jobs_are_dropped_before_the_model(tiny_model):
    rec = _Recorder()
    seen = []
    batcher = Batcher(tiny_model, on_batch=rec.on_batch, on_drop=rec.on_drop, max_wait_ms=0)
    forward = batcher._forward
    batcher._forward = lambda jobs, alone=True: (seen.extend(len(j) for j in jobs),
                                                 forward(jobs, alone))[1]

    async def go():
        a = batcher.submit([[101, 102]])
        b = batcher.submit([[101, 5, 102], [101, 102]])
        c = batcher.submit([[101, 6, 102]])
        b.cancel()
        batcher.start()
        await asyncio.wait_for(asyncio.gather(a.future, c.future), 30)
        batcher.stop()
        return b.future.done()

    assert asyncio.run(go()) is False
    assert rec.dropped == 1 and seen == [1, 1]


def test_full_queue_refuses(tiny_model):
    batcher = Batcher(tiny_model, max_queue=2)

    async def go():
        batcher.submit([[101, 102]])
        batcher.submit([[101, 102]])
        with pytest.raises(QueueFullError):
            batcher.submit([[101, 102]])

    asyncio.run(go())


def test_wait_merges_requests_that_arrive_close_together(tiny_model):
    rec = _Recorder()
    batcher = Batcher(tiny_model, on_batch=rec.on_batch, max_wait_ms=200)
    batcher.start()

    async def go():
        first = batcher.submit([[101, 5, 102]])
        await asyncio.sleep(0.02)  # arrives within the first one's wait
        second = batcher.submit([[101, 6, 102]])
        await asyncio.wait_for(asyncio.gather(first.future, second.future), 30)

    asyncio.run(go())
    batcher.stop()
    assert [b.requests for b in rec.batches] == [2]


# --------------------------------------------------------------------------- through HTTP
async def _with_app(app, fn):
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            for _ in range(500):
                if (await c.get("/ready")).status_code == 200:
                    break
                await asyncio.sleep(0.01)
            return await fn(c)


def test_concurrent_requests_are_merged_and_equal_encode(tiny_model, corpus):
    app = create_app(tiny_model, settings=ServeSettings(max_wait_ms=20, max_batch_requests=16))
    requests = [corpus[i : i + 1 + i % 4] for i in range(0, 48)]

    async def fire(c):
        return await asyncio.gather(*[c.post("/embed", json={"inputs": t}) for t in requests])

    answers = asyncio.run(_with_app(app, fire))
    assert all(a.status_code == 200 for a in answers)
    for texts, answer in zip(requests, answers):
        np.testing.assert_allclose(np.asarray(answer.json()), tiny_model.encode(texts),
                                   atol=1e-5)
    batches = app.state.metrics.batch_requests.collect()[0].samples
    count = next(s.value for s in batches if s.name.endswith("_count"))
    assert count < len(requests)  # merged: fewer batches than requests


def _blocking_forward(monkeypatch):
    """Make the inference thread wait on an event; records the thread it ran on."""
    gate = threading.Event()
    threads = []
    original = Batcher._forward

    def forward(self, jobs, alone=True):
        threads.append(threading.current_thread().name)
        assert gate.wait(30)
        return original(self, jobs, alone)

    monkeypatch.setattr(Batcher, "_forward", forward)
    return gate, threads


def test_inference_runs_off_the_event_loop(tiny_model, monkeypatch):
    gate, threads = _blocking_forward(monkeypatch)
    app = create_app(tiny_model)

    async def go(c):
        pending = asyncio.ensure_future(c.post("/embed", json={"inputs": "a"}))
        while not threads:
            await asyncio.sleep(0.005)
        health = await asyncio.wait_for(c.get("/health"), 5)  # the loop is free
        gate.set()
        return health, await pending

    health, answer = asyncio.run(_with_app(app, go))
    assert health.status_code == 200 and answer.status_code == 200
    assert threads == ["siamtext-inference-0"]


def test_full_queue_is_429_with_retry_after(tiny_model, monkeypatch):
    gate, threads = _blocking_forward(monkeypatch)
    app = create_app(tiny_model, settings=ServeSettings(max_queue=1, max_wait_ms=0))

    async def go(c):
        busy = asyncio.ensure_future(c.post("/embed", json={"inputs": "a"}))  # in the model
        while not threads:
            await asyncio.sleep(0.005)
        queued = asyncio.ensure_future(c.post("/embed", json={"inputs": "b"}))  # in the queue
        while app.state.service.queue_depth() < 1:
            await asyncio.sleep(0.005)
        refused = await c.post("/embed", json={"inputs": "c"})
        gate.set()
        return refused, await busy, await queued

    refused, busy, queued = asyncio.run(_with_app(app, go))
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "1"
    assert "busy" in refused.json()["error"]["message"]
    assert busy.status_code == queued.status_code == 200


def test_a_client_that_goes_away_is_dropped_from_the_queue(tiny_model, monkeypatch):
    gate, threads = _blocking_forward(monkeypatch)
    app = create_app(tiny_model, settings=ServeSettings(max_wait_ms=0))
    service = app.state.service

    async def gone_client():
        """A raw ASGI request whose client disconnects once its body is sent."""
        body = json.dumps({"inputs": ["never embedded"]}).encode()
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        queued = asyncio.Event()

        async def receive():
            if messages:
                return messages.pop()
            await queued.wait()
            return {"type": "http.disconnect"}

        sent = []

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "POST", "path": "/embed", "raw_path": b"/embed", "query_string": b"",
                 "headers": [(b"content-type", b"application/json"),
                             (b"content-length", str(len(body)).encode())],
                 "client": ("127.0.0.1", 1), "server": ("test", 80), "scheme": "http",
                 "root_path": ""}
        task = asyncio.ensure_future(app(scope, receive, send))
        while service.queue_depth() < 1:
            await asyncio.sleep(0.005)
        queued.set()  # the client leaves while its job waits
        await asyncio.wait_for(task, 10)
        return sent

    async def go(c):
        busy = asyncio.ensure_future(c.post("/embed", json={"inputs": "a"}))
        while not threads:
            await asyncio.sleep(0.005)
        sent = await gone_client()
        gate.set()
        await busy
        after = await c.post("/embed", json={"inputs": "b"})
        return sent, after

    sent, after = asyncio.run(_with_app(app, go))
    assert sent[0]["status"] == 499
    assert after.status_code == 200
    assert app.state.metrics.dropped._value.get() == 1
    assert len(threads) == 2  # the busy request and the one after; not the dropped one


def test_no_wait_when_nothing_is_on_its_way(tiny_model):
    rec = _Recorder()
    batcher = Batcher(tiny_model, on_batch=rec.on_batch, max_wait_ms=1000, arriving=lambda: 0)
    batcher.start()

    async def go():
        job = batcher.submit([[101, 5, 102]])
        start = asyncio.get_running_loop().time()
        await asyncio.wait_for(job.future, 30)
        return asyncio.get_running_loop().time() - start

    took = asyncio.run(go())
    batcher.stop()
    assert took < 0.5  # not the 1 s wait
    assert [b.queue_seconds[0] < 0.5 for b in rec.batches] == [True]


def test_arrivals_are_counted_until_queued(tiny_model):
    app = create_app(tiny_model)
    seen = []

    async def go(c):
        await asyncio.gather(*[c.post("/embed", json={"inputs": f"t {i}"}) for i in range(8)])
        seen.append(app.state.service.arriving)
        await c.post("/embed", json={"inputs": []})  # refused before the batcher
        await c.post("/duplicates/check", json={"texts": "a"})  # no index: 404
        seen.append(app.state.service.arriving)

    asyncio.run(_with_app(app, go))
    assert seen == [0, 0]


def test_mixed_lengths_split_into_passes_still_equal_encode(tiny_model, monkeypatch):
    texts = [["a very long text about a card that was stolen on the train last night"],
             ["hi"], ["where is my parcel now"], ["ok"], ["a"], ["why was I charged twice"],
             ["b"], ["c d"]]
    ids = [tiny_model.token_ids(t) for t in texts]
    passes = []
    embed = tiny_model.embed

    def counting_embed(**inputs):
        passes.append(inputs["input_ids"].shape)
        return embed(**inputs)

    monkeypatch.setattr(tiny_model, "embed", counting_embed)
    results, rec = _run_jobs(tiny_model, ids, max_wait_ms=0)
    assert len(rec.batches) == 1 and len(passes) >= 2
    assert sum(shape[0] for shape in passes) == len(texts)
    for t, got in zip(texts, results):
        np.testing.assert_allclose(got, tiny_model.encode(t, normalize=False), atol=1e-5)


def test_inference_thread_runs_on_the_batchers_torch_threads(tiny_model, monkeypatch):
    import torch

    seen = []

    def forward(self, jobs, alone=True):
        seen.append(torch.get_num_threads())
        return [np.zeros((len(ids), self.model.embedding_dim), np.float32) for ids in jobs]

    monkeypatch.setattr(Batcher, "_forward", forward)
    assert Batcher(tiny_model).threads == torch.get_num_threads()
    _run_jobs(tiny_model, [[[101, 102]]], threads=1)
    _run_jobs(tiny_model, [[[101, 102]]], threads=3)
    assert seen == [1, 3]


@pytest.mark.parametrize("threads", [0, -2, 1.5, True])
def test_bad_thread_counts_are_refused(tiny_model, threads):
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        Batcher(tiny_model, threads=threads)


def test_normalize_rows_matches_torch_and_keeps_zero_rows():
    import torch

    from siamtext.serve.batcher import normalize_rows

    x = np.array([[3.0, 4.0], [0.0, 0.0], [1e-7, 0.0]], dtype=np.float32)
    got = normalize_rows(x)
    np.testing.assert_allclose(got, [[0.6, 0.8], [0.0, 0.0], [1.0, 0.0]], rtol=1e-6)
    want = torch.nn.functional.normalize(torch.from_numpy(x), p=2, dim=-1).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert got.dtype == np.float32


def test_a_large_batch_runs_its_passes_at_once_on_one_thread_sessions(tiny_onnx_model,
                                                                      monkeypatch):
    model = tiny_onnx_model
    monkeypatch.setattr(model._engine, "concurrency", 2)
    calls = {"one_thread": [], "all_threads": 0}
    embed_arrays = model._embed_arrays  # an engine's lanes pad, run and pool in NumPy

    def tracked(arrays, one_thread=False):
        if one_thread:
            calls["one_thread"].append((threading.current_thread().name,
                                        arrays["input_ids"].shape[0]))
            time.sleep(0.05)  # both passes in flight at once, if they run at once
        else:
            calls["all_threads"] += 1
        return embed_arrays(arrays, one_thread)

    monkeypatch.setattr(model, "_embed_arrays", tracked)
    texts = [[f"card number {i} was declined at the shop"] for i in range(10)]
    ids = [model.token_ids(t) for t in texts]
    results, rec = _run_jobs(model, ids, max_wait_ms=0)
    assert len(rec.batches) == 1 and calls["all_threads"] == 0
    assert sorted(n for _, n in calls["one_thread"]) == [5, 5]  # one pass, halved
    assert len({name for name, _ in calls["one_thread"]}) == 2
    for t, got in zip(texts, results):
        np.testing.assert_allclose(got, model.encode(t, normalize=False), atol=1e-5)
    # a small batch keeps every thread on one pass: a lone request is answered sooner
    calls["one_thread"].clear()
    calls["all_threads"] = 0
    _run_jobs(model, ids[:3], max_wait_ms=0)
    assert calls["all_threads"] == 1 and calls["one_thread"] == []


def test_a_failing_pass_fails_its_batch_and_the_batcher_goes_on(tiny_onnx_model,
                                                                monkeypatch):
    model = tiny_onnx_model
    monkeypatch.setattr(model._engine, "concurrency", 2)
    embed_arrays = model._embed_arrays
    fail = {"on": True}

    def flaky(arrays, one_thread=False):
        if fail["on"]:
            raise RuntimeError("pass exploded")
        return embed_arrays(arrays, one_thread)

    monkeypatch.setattr(model, "_embed_arrays", flaky)
    batcher = Batcher(model, max_wait_ms=300)  # each round's 8 requests make one batch
    ids = [model.token_ids([f"text number {i}"]) for i in range(8)]

    async def go():
        batcher.start()
        try:
            jobs = [batcher.submit(x) for x in ids]
            outcomes = await asyncio.gather(*(j.future for j in jobs), return_exceptions=True)
            fail["on"] = False
            again = [batcher.submit(x) for x in ids]
            return outcomes, await asyncio.gather(*(j.future for j in again))
        finally:
            batcher.stop()

    outcomes, again = asyncio.run(go())
    assert len(outcomes) == 8
    assert all(isinstance(o, RuntimeError) and "pass exploded" in str(o) for o in outcomes)
    assert [a.shape for a in again] == [(1, model.embedding_dim)] * 8


def test_a_parallel_engine_gets_a_lane_per_core(tiny_model, tiny_onnx_model, monkeypatch):
    assert Batcher(tiny_model).lanes == 1  # torch: one lane on every thread
    monkeypatch.setattr(tiny_onnx_model._engine, "concurrency", 2)
    batcher = Batcher(tiny_onnx_model)
    assert batcher.lanes == 2
    batcher.start()
    try:
        names = sorted(t.name for t in threading.enumerate() if t.name.startswith(
            "siamtext-inference-"))
        assert names == ["siamtext-inference-0", "siamtext-inference-1"]
    finally:
        batcher.stop()
    assert not any(t.name.startswith("siamtext-inference-") for t in threading.enumerate())


def test_a_batch_taken_while_another_runs_goes_on_a_one_thread_session(tiny_onnx_model,
                                                                       monkeypatch):
    model = tiny_onnx_model
    monkeypatch.setattr(model._engine, "concurrency", 2)
    calls = []
    embed_arrays = model._embed_arrays
    release = threading.Event()

    def tracked(arrays, one_thread=False):
        calls.append(("one" if one_thread else "all", threading.current_thread().name))
        if not one_thread:  # the first batch, alone: every thread, held open
            release.wait(10)
        return embed_arrays(arrays, one_thread)

    monkeypatch.setattr(model, "_embed_arrays", tracked)
    batcher = Batcher(model, max_wait_ms=0)
    first, second = ["my card was declined"], ["where is my parcel", "I was charged twice"]

    async def go():
        batcher.start()
        a = batcher.submit(model.token_ids(first))
        while not calls:  # the first lane is inside its batch
            await asyncio.sleep(0.01)
        b = batcher.submit(model.token_ids(second))
        got_b = await asyncio.wait_for(b.future, 10)  # answered while the first still runs
        assert not a.future.done()
        release.set()
        return await asyncio.wait_for(a.future, 10), got_b

    try:
        got_a, got_b = asyncio.run(go())
    finally:
        release.set()
        batcher.stop()
    assert [kind for kind, _ in calls] == ["all", "one"]
    assert calls[0][1] != calls[1][1]  # two lanes
    monkeypatch.undo()
    np.testing.assert_allclose(got_a, model.encode(first, normalize=False), atol=1e-5)
    np.testing.assert_allclose(got_b, model.encode(second, normalize=False), atol=1e-5)
