"""The service's threads: blocking work on workers with one torch thread, the model on the
inference thread with the thread count the app was made with (see siamtext.serve.service)."""

from __future__ import annotations

import asyncio
import threading

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")

import torch  # noqa: E402

from siamtext.serve import ServeSettings  # noqa: E402
from siamtext.serve.metrics import Metrics  # noqa: E402
from siamtext.serve.service import OFFLOAD_WORKERS, Service  # noqa: E402


def _service(model) -> Service:
    return Service(model, None, None, ServeSettings(), Metrics())


def test_offloaded_work_runs_on_a_worker_with_one_torch_thread(tiny_model):
    service = _service(tiny_model)

    def where() -> tuple[str, int]:
        return threading.current_thread().name, torch.get_num_threads()

    async def go():
        return await asyncio.gather(*[service.offload(where) for _ in range(OFFLOAD_WORKERS)])

    try:
        answers = asyncio.run(go())
    finally:
        service.close()
    assert {threads for _, threads in answers} == {1}
    assert all(name.startswith("siamtext-worker") for name, _ in answers)
    assert threading.current_thread() is threading.main_thread()


def test_batchers_get_the_thread_count_the_service_was_made_with(tiny_model):
    before = torch.get_num_threads()
    service = _service(tiny_model)
    try:
        asyncio.run(service.offload(service.load))  # loads on a one-thread worker
        assert service.ready
        batcher = service.batcher_for(service.model)
        assert service.torch_threads == before and batcher.threads == before
        assert torch.get_num_threads() == before  # this thread's count is untouched
    finally:
        service.close()


def test_an_exported_engine_loaded_on_a_worker_gets_the_apps_threads(tiny_model, tmp_path):
    """The model is loaded on a one-thread worker, so an ONNX Runtime engine is built with
    one thread; its batcher gives it the app's count (here 2) before the first batch."""
    pytest.importorskip("onnxruntime", reason="backend='onnx' needs siamtext[onnx]")
    pytest.importorskip("onnx", reason="export needs siamtext[onnx]")
    from siamtext import SiamText

    tiny_model.export("onnx", path=tmp_path)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        service = _service(lambda: SiamText(tmp_path, backend="onnx"))
    finally:
        torch.set_num_threads(before)
    try:
        asyncio.run(service.offload(service.load))
        engine = service.model._engine
        assert service.torch_threads == 2
        assert engine.threads == 2 and engine.concurrency == 2
    finally:
        service.close()


def test_offload_passes_arguments_and_errors_through(tiny_model):
    service = _service(tiny_model)

    def fail() -> None:
        raise KeyError("no item has id 7")

    try:
        assert asyncio.run(service.offload(sorted, [3, 1, 2], reverse=True)) == [3, 2, 1]
        with pytest.raises(KeyError, match="no item has id 7"):
            asyncio.run(service.offload(fail))
    finally:
        service.close()
