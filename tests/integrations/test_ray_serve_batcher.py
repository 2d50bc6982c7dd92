"""RayBatcher without a Ray instance: ``serve.batch`` stood in for by a decorator that hands
each job over as a batch of one (the slow two-replica test is tests/serve/test_ray_serve.py)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from siamtext.integrations import ray_serve


class _Serve:
    @staticmethod
    def batch(max_batch_size: int, batch_wait_timeout_s: float):
        def wrap(fn):
            async def one(job):
                return (await fn([job]))[0]

            return one

        return wrap


def test_a_large_batch_on_a_parallel_engine_is_answered(tiny_onnx_model, monkeypatch):
    # its passes go to the pass pool from the inference thread; when both were one pool
    # of one thread, the thread waited on work queued behind itself, for ever
    monkeypatch.setattr(ray_serve, "_import_serve", lambda: _Serve)
    monkeypatch.setattr(tiny_onnx_model._engine, "concurrency", 2)
    batcher = ray_serve.RayBatcher(tiny_onnx_model)
    texts = [f"card number {i} was declined at the shop" for i in range(10)]

    async def go():
        job = batcher.submit(tiny_onnx_model.token_ids(texts))
        return await asyncio.wait_for(job.future, 10)

    try:
        got = asyncio.run(go())
    except TimeoutError:
        # the deadlock: cancel the passes queued behind the waiting thread, so that the test
        # fails instead of hanging at exit on a thread that never ends
        for pool in vars(batcher).values():
            if isinstance(pool, ThreadPoolExecutor):
                pool.shutdown(wait=False, cancel_futures=True)
        raise
    batcher.stop()
    monkeypatch.undo()
    np.testing.assert_allclose(got, tiny_onnx_model.encode(texts, normalize=False), atol=1e-5)
