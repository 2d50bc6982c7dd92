"""Start ``siamtext train`` processes in a blink: import once, then fork one child per run.

A fresh ``python -m siamtext train`` spends seconds importing torch, transformers and
datasets before it trains for a fraction of one on the tiny model; the kill tests start
several. This helper imports all that once, computes nothing (no thread pool exists yet, so
forking is safe), and forks a child per request that runs ``siamtext.cli.main(argv)``: a
real, separate process with its own pid, which a test can SIGKILL or let a failpoint kill.

Protocol (JSON lines): ``{"op": "run", "argv": [...], "env": {...}, "log": path}`` answers
``{"pid": N}``; ``{"op": "wait", "pid": N}`` answers ``{"code": C}`` (negative: killed by
that signal). POSIX only.
"""

from __future__ import annotations

import json
import os
import sys
import traceback

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import datasets  # noqa: E402, F401

import siamtext.cli  # noqa: E402
import siamtext.cli.train  # noqa: E402, F401
import siamtext.model  # noqa: E402, F401
import siamtext.training  # noqa: E402, F401


def child(job: dict) -> None:
    os.environ.update(job["env"])
    fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    try:
        code = siamtext.cli.main(job["argv"])
    except BaseException:  # noqa: BLE001 - report anything, then exit
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
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
