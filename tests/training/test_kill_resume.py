"""``kill -9`` survival: real ``siamtext train`` processes are killed at chosen moments (by
``SIAMTEXT_FAILPOINTS``, :mod:`siamtext.failpoints`, or from outside at a random time) and
the same command is run again with ``--resume latest``, as a scheduler would; the run must
end with the weights of an uninterrupted run, bit for bit (CPU), and never resume from a
half-written checkpoint.

A fresh ``python -m siamtext train`` spends seconds on imports; the default test therefore
forks its processes from a helper that imported everything once (``zygote.py``: still
separate processes, killed by SIGKILL) and kills one chain of restarts at four points. The
wider sweep (each failpoint alone, then random kills sent from outside) runs the real
``python -m siamtext train`` command and is marked ``slow``.
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from siamtext.failpoints import ENV

from .toys import toy_rows

REPO = Path(__file__).resolve().parents[2]
KILLED = -int(getattr(signal, "SIGKILL", 9))

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs POSIX processes")


def child_env(failpoints: str = "") -> dict[str, str]:
    return {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
            ENV: failpoints}


class FreshRuns:
    """Each run a new ``python -m siamtext train`` process, as a user types it."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs

    def start(self, argv: list[str], failpoints: str = "") -> subprocess.Popen:
        path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        env = dict(os.environ, PYTHONPATH=path, **child_env(failpoints))
        return subprocess.Popen([sys.executable, "-m", "siamtext", *argv], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def wait(self, proc: subprocess.Popen) -> tuple[int, str]:
        out, _ = proc.communicate(timeout=600)
        return proc.returncode, out

    def kill(self, proc: subprocess.Popen) -> None:
        proc.send_signal(signal.SIGKILL)

    def run(self, argv: list[str], failpoints: str = "") -> tuple[int, str]:
        return self.wait(self.start(argv, failpoints))


class ForkedRuns(FreshRuns):
    """Each run a process forked from ``zygote.py``, which did the imports once."""

    def __init__(self, logs: Path) -> None:
        super().__init__(logs)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            filter(None, [str(REPO), os.environ.get("PYTHONPATH")])), **child_env())
        self.zygote = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("zygote.py"))], env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert json.loads(self.zygote.stdout.readline()) == {"ready": True}
        self.count = 0

    def _ask(self, request: dict) -> dict:
        self.zygote.stdin.write(json.dumps(request) + "\n")
        self.zygote.stdin.flush()
        return json.loads(self.zygote.stdout.readline())

    def start(self, argv: list[str], failpoints: str = "") -> tuple[int, Path]:
        self.count += 1
        log = self.logs / f"run{self.count}.log"
        pid = self._ask({"op": "run", "argv": argv, "env": child_env(failpoints),
                         "log": str(log)})["pid"]
        return pid, log

    def wait(self, handle: tuple[int, Path]) -> tuple[int, str]:
        pid, log = handle
        code = self._ask({"op": "wait", "pid": pid})["code"]
        return code, log.read_text(encoding="utf-8")

    def kill(self, handle: tuple[int, Path]) -> None:
        os.kill(handle[0], signal.SIGKILL)

    def close(self) -> None:
        self.zygote.kill()  # it holds nothing worth a clean shutdown
        self.zygote.wait(timeout=60)


@pytest.fixture(scope="module")
def train_argv(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """``train ... --resume latest`` on 36 rows of three intents (6 steps, checkpoints at
    2, 4 and 6), for a given output folder."""
    folder = tmp_path_factory.mktemp("kill_data")
    texts, labels = toy_rows()
    rows = [(t, y) for y in ("weather", "book_table")
            for t in [t for t, z in zip(texts, labels, strict=True) if z == y][:12]]
    rows += [(t, "greeting") for t in ("hello there", "hi", "good morning", "hey you",
                                       "greetings", "good evening", "howdy", "hi friend",
                                       "morning all", "hello again", "hey there", "good day")]
    data = folder / "rows.csv"
    with data.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([("text", "label"), *rows])

    def argv(output: Path) -> list[str]:
        return ["train", str(data), "--model", str(tiny_bert_dir), "--device", "cpu",
                "--output-dir", str(output), "--loss", "BatchHardTripletLoss",
                "--batch-size", "6", "--samples-per-class", "2", "--epochs", "1",
                "--lr", "1e-3", "--checkpoint-steps", "2", "--seed", "3", "--no-progress",
                "--resume", "latest"]

    return argv


@pytest.fixture(scope="module")
def forked(tmp_path_factory: pytest.TempPathFactory):
    runs = ForkedRuns(tmp_path_factory.mktemp("forked_logs"))
    yield runs
    runs.close()


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> FreshRuns:
    return FreshRuns(tmp_path_factory.mktemp("fresh_logs"))


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def checkpoints(output: Path) -> list[str]:
    folder = output / "checkpoints"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


@pytest.fixture(scope="module")
def reference(train_argv, fresh: FreshRuns, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run of the real command."""
    output = tmp_path_factory.mktemp("reference") / "model"
    code, log = fresh.run(train_argv(output))
    assert code == 0, log
    assert "starting from the beginning" in log  # --resume latest on a first run: a note
    return output


def test_killed_runs_resume_to_the_uninterrupted_weights(train_argv, forked, tmp_path) -> None:
    output = tmp_path / "model"
    argv = train_argv(output)
    reference = forked.start(train_argv(tmp_path / "reference"))  # alongside (two cores)

    # 1. killed half-way through its first checkpoint: only a hidden staging folder is left
    code, log = forked.run(argv, "checkpoint=2")
    assert code == KILLED, log
    assert checkpoints(output) == [".checkpoint-2.partial"]

    # 2. restarted: no complete checkpoint, so a fresh start with a note (not an error);
    #    killed in the middle of step 5, after checkpoints 2 and 4
    code, log = forked.run(argv, "step=5")
    assert code == KILLED, log
    assert "No complete checkpoint" in log and "starting from the beginning" in log
    assert checkpoints(output) == ["checkpoint-2", "checkpoint-4"]

    # 3. resumes from checkpoint-4, finishes training, killed while saving the final model
    code, log = forked.run(argv, "save=model")
    assert code == KILLED, log
    assert checkpoints(output) == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]
    assert not (output / "model.safetensors").exists()

    # 4. resumes from checkpoint-6 (nothing left to train) and saves
    code, log = forked.run(argv)
    assert code == 0, log
    ref_code, ref_log = forked.wait(reference)
    assert ref_code == 0, ref_log
    assert same_weights(output, tmp_path / "reference")
    assert not [p for p in output.parent.iterdir() if p.name.startswith(".model.")]  # cleaned


@pytest.mark.slow
@pytest.mark.parametrize("failpoint", [
    "step=1", "step=3", "checkpoint=4", "commit=checkpoint-4", "save=checkpoint-2",
    "step=6", "commit=model", "save=model",
])
def test_each_failpoint_resumes_to_the_same_weights(train_argv, fresh, reference, tmp_path,
                                                    failpoint) -> None:
    output = tmp_path / "model"
    code, log = fresh.run(train_argv(output), failpoint)
    assert code == KILLED, log
    for name in checkpoints(output):  # whatever is under a real name is complete
        if not name.startswith("."):
            assert (output / "checkpoints" / name / "trainer_state.json").is_file(), name
    code, log = fresh.run(train_argv(output))
    assert code == 0, log
    assert same_weights(output, reference)


@pytest.mark.slow
def test_random_kills_from_outside(train_argv, fresh, reference, tmp_path) -> None:
    """SIGKILL sent from outside at random moments, up to three times per run."""
    rng = random.Random(0)
    began = time.perf_counter()
    code, _ = fresh.run(train_argv(tmp_path / "timing"))
    duration = time.perf_counter() - began
    assert code == 0
    for trial in range(4):
        output = tmp_path / f"run{trial}"
        for _ in range(3):
            proc = fresh.start(train_argv(output))
            time.sleep(rng.uniform(0.3, 1.0) * duration)
            fresh.kill(proc)
            fresh.wait(proc)
        code, log = fresh.run(train_argv(output))
        assert code == 0, log
        assert same_weights(output, reference), f"trial {trial}"
