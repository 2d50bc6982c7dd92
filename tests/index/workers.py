"""Real processes for the collection's crash and concurrency tests, forked in a blink.

Importing siamtext takes seconds (torch, transformers); the kill tests start a dozen
processes. This fork server imports once, starts no thread, and forks one child per request:
a separate process with its own pid that a test can SIGKILL. Each child runs one of the
workers below and reports on its log file with unbuffered writes (they survive the kill).

Protocol (JSON lines on stdin/stdout): ``{"op": "run", "worker": NAME, "args": {...},
"log": PATH, "env": {...}}`` answers ``{"pid": N}``; ``{"op": "wait", "pid": N}`` answers
``{"code": C}`` (negative: the signal that ended it).
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback

import numpy as np

from siamtext.index import Index, IndexLockedError

OPTIONS = {"ivf_from": 150, "snapshot_every": 40}  # IVF, rebuilds and snapshots happen often


def vectors(seed: int, n: int, dim: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def say(log: int, line: str) -> None:
    os.write(log, (line + "\n").encode())


def writer(log: int, path: str, seed: int, batch: int = 10, dim: int = 8,
           batches: int = 10**9, pause: float = 0.0, removes: bool = True) -> None:
    """Add batches for ever; ``add a..b`` once acknowledged. Every 4th batch also removes
    the first id of the one before: ``try-remove i`` before, ``removed i`` once done."""
    idx = Index.open(path, **OPTIONS)
    say(log, "open")
    last = None
    for b in range(batches):
        ids = idx.add(embeddings=vectors(seed * 100_000 + b, batch, dim),
                      texts=[f"b{b}"] * batch, metadata=[{"batch": b}] * batch)
        say(log, f"add {ids[0]} {ids[-1]}")
        if removes and b % 4 == 3 and last is not None:
            say(log, f"try-remove {last}")
            idx.remove([last])
            say(log, f"removed {last}")
        last = ids[0]
        if pause:
            time.sleep(pause)
    idx.close()
    say(log, "closed")


def reader(log: int, path: str, seconds: float, batch: int) -> None:
    """Refresh and search for ``seconds``: every count, every iteration and every exact
    search (k above the size) must hold whole batches only. (The reader searches exactly,
    with its own ``ivf_from``, so that a search with a large k returns every item; a
    background rebuild could move the view between two calls, so each is checked alone.)"""
    idx = Index.open(path, readonly=True, **{**OPTIONS, "ivf_from": 10**9})
    checks, largest, q = 0, 0, vectors(1, 1, 8)[0]
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        idx.refresh()
        n = len(idx)
        found = len(idx.search(q, k=10_000))
        listed = sum(1 for _ in idx.items())
        if n % batch or found % batch or listed % batch:
            say(log, f"torn view: {n} items, {found} found, {listed} listed")
            os._exit(3)
        largest = max(largest, n)
        checks += 1
    say(log, f"ok {checks} {largest}")
    idx.close()


def locker(log: int, path: str) -> None:
    """Try to open for writing; report what happened."""
    try:
        Index.open(path, **OPTIONS).close()
        say(log, "opened")
    except IndexLockedError as err:
        say(log, f"locked: {err}")


WORKERS = {"writer": writer, "reader": reader, "locker": locker}


def child(job: dict) -> None:
    os.environ.update(job.get("env", {}))
    log = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 2)
    code = 0
    try:
        WORKERS[job["worker"]](log, **job["args"])
    except BaseException:  # noqa: BLE001 - report anything, then exit
        say(log, "error " + traceback.format_exc().replace("\n", " | "))
        code = 1
    os._exit(code)


def main() -> None:
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        if job["op"] == "run":
            pid = os.fork()
            if pid == 0:
                child(job)
            answer = {"pid": pid}
        else:
            _, status = os.waitpid(job["pid"], 0)
            answer = {"code": os.waitstatus_to_exitcode(status)}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
