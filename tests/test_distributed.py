"""siamtext.distributed outside a launcher: the helpers' no-group answers, and leaving a group.

A one-process gloo group (a file store in the test's folder) stands in for ``torchrun``; the
many-process behaviour is tested under real launchers in tests/training/test_data_parallel.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch.distributed as dist

import siamtext.cli.demo
from siamtext import distributed
from siamtext.cli import main


@pytest.fixture
def group(tmp_path: Path) -> Iterator[None]:
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1)
    yield
    if dist.is_initialized():  # the test failed before leaving it
        dist.destroy_process_group()


def test_without_a_group_every_helper_answers_for_one_process() -> None:
    assert not dist.is_initialized()
    assert (distributed.world_size(), distributed.rank()) == (1, 0)
    assert distributed.is_main_process() and not distributed.is_distributed()
    assert distributed.broadcast_from_main({"a": 1}) == {"a": 1}
    distributed.barrier()
    distributed.shutdown()  # no group: nothing to leave, no error
    assert not dist.is_initialized()


def test_shutdown_destroys_the_group(group: None) -> None:
    assert dist.is_initialized()
    distributed.shutdown()
    assert not dist.is_initialized()
    distributed.shutdown()  # a second call is a no-op


def _joins_a_group(tmp_path: Path, then_fail: bool):
    def run(args) -> int:
        dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                                world_size=1)
        if then_fail:
            raise ValueError("bad input")
        return 0
    return run


@pytest.mark.parametrize("then_fail", [False, True], ids=["ok", "error"])
def test_the_command_leaves_the_group_it_ran_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                then_fail: bool) -> None:
    monkeypatch.setattr(siamtext.cli.demo, "run", _joins_a_group(tmp_path, then_fail))
    try:
        assert main(["demo"]) == (2 if then_fail else 0)
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
