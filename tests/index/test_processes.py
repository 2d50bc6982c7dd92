"""Real processes: ``kill -9`` of a writer at random moments and at the failpoints of a write
and a snapshot, then reopen; two readers and a writer at once; a second writer refused.

Every child is forked from ``workers.py``, which imported siamtext once (POSIX only).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from siamtext.index import Index
from tests.index.workers import OPTIONS

pytestmark = pytest.mark.skipif(os.name != "posix", reason="fork and SIGKILL")
ROOT = Path(__file__).resolve().parents[2]


class Forks:
    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.server = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("workers.py"))], env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert json.loads(self.server.stdout.readline()) == {"ready": True}

    def _ask(self, request: dict) -> dict:
        self.server.stdin.write(json.dumps(request) + "\n")
        self.server.stdin.flush()
        return json.loads(self.server.stdout.readline())

    def run(self, worker: str, log: Path, env: dict | None = None, **args) -> int:
        return self._ask({"op": "run", "worker": worker, "args": args, "log": str(log),
                          "env": env or {}})["pid"]

    def wait(self, pid: int) -> int:
        return self._ask({"op": "wait", "pid": pid})["code"]

    def close(self) -> None:
        self.server.kill()
        self.server.wait(timeout=30)


@pytest.fixture(scope="module")
def forks():
    f = Forks()
    yield f
    f.close()


def acknowledged(log: Path) -> tuple[set[int], set[int], set[int]]:
    """Ids whose add was acknowledged, ids whose removal was, ids whose removal was tried."""
    added, removed, tried = set(), set(), set()
    for line in log.read_text().splitlines():
        word, *rest = line.split()
        if word == "add":
            added |= set(range(int(rest[0]), int(rest[1]) + 1))
        elif word == "removed":
            removed.add(int(rest[0]))
        elif word == "try-remove":
            tried.add(int(rest[0]))
        elif word == "error":
            raise AssertionError(line)
    return added, removed, tried


def check_after_crash(path: Path, added: set[int], removed: set[int], tried: set[int]) -> int:
    with Index.open(path, **OPTIONS) as idx:  # it opens, and as a writer
        stored = {item.id for item in idx}
        assert removed.isdisjoint(stored)
        assert (added - tried) <= stored, f"lost acknowledged ids {sorted(added - stored)[:10]}"
        assert len(idx) == len(stored)  # the search structure agrees with the rows
        if stored:
            probe = max(stored)
            emb = idx.get(probe, with_embeddings=True).embedding
            assert idx.search(emb, k=1)[0].id == probe
        return len(stored)


def wait_for_line(log: Path, word: str, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if log.exists() and word in log.read_text().split():
            return
        time.sleep(0.01)
    raise AssertionError(f"{log.name} never said {word!r}: {log.read_text()}")


def test_kill_9_at_random_moments_loses_no_acknowledged_item(forks, tmp_path):
    path = tmp_path / "c"
    Index.create(path, dim=8).close()
    rng = random.Random(0)
    added, removed, tried = set(), set(), set()
    sizes = []
    for round_ in range(12):
        log = tmp_path / f"writer-{round_}.log"
        pid = forks.run("writer", log, path=str(path), seed=round_)
        wait_for_line(log, "open")  # so that the kill lands among the writes
        time.sleep(rng.uniform(0.0, 0.5))
        os.kill(pid, signal.SIGKILL)
        assert forks.wait(pid) == -signal.SIGKILL
        a, r, t = acknowledged(log)
        added, removed, tried = added | a, removed | r, tried | t
        sizes.append(check_after_crash(path, added, removed, tried))
    assert len(added) > 100 and len(removed) > 0  # the rounds did write, and remove


@pytest.mark.parametrize("point", ["before-commit", "snapshot-written", "snapshot-renamed"])
def test_kill_9_inside_a_write_or_a_snapshot(forks, tmp_path, point):
    path = tmp_path / "c"
    Index.create(path, dim=8).close()
    log = tmp_path / "w.log"
    # 8 batches of 10 without failpoints, then a writer that dies at the point
    assert forks.wait(forks.run("writer", log, path=str(path), seed=1, batches=8)) == 0
    pid = forks.run("writer", log, path=str(path), seed=2, batches=30,
                    env={"SIAMTEXT_FAILPOINTS": f"index={point}"})
    assert forks.wait(pid) == -signal.SIGKILL
    added, removed, tried = acknowledged(log)
    n = check_after_crash(path, added, removed, tried)
    assert n >= 80 - len(tried)
    leftovers = [p.name for p in path.iterdir() if ".tmp-" in p.name]
    assert leftovers == []  # the reopen as a writer cleared the half-written snapshot


def test_two_readers_and_a_writer_at_once(forks, tmp_path):
    path = tmp_path / "c"
    Index.create(path, dim=8).close()
    logs = [tmp_path / f"{name}.log" for name in ("w", "r1", "r2", "lock")]
    w = forks.run("writer", logs[0], path=str(path), seed=3, batch=20, batches=40, pause=0.02,
                  removes=False)
    readers = [forks.run("reader", log, path=str(path), seconds=2.5, batch=20)
               for log in logs[1:3]]
    time.sleep(0.3)
    locker = forks.run("locker", logs[3], path=str(path))
    assert forks.wait(locker) == 0
    assert "already open for writing" in logs[3].read_text()
    for pid, log in zip(readers, logs[1:3]):
        assert forks.wait(pid) == 0, log.read_text()
        word, checks, largest = log.read_text().splitlines()[-1].split()
        assert word == "ok" and int(checks) >= 2 and int(largest) > 0
    assert forks.wait(w) == 0, logs[0].read_text()
    assert logs[0].read_text().splitlines()[-1] == "closed"
    with Index.open(path, readonly=True, **OPTIONS) as idx:
        assert len(idx) == 40 * 20
        assert np.all(np.diff([i.id for i in idx]) > 0)
