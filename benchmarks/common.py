"""Shared pieces of the benchmark scripts: real data from ../shared/data, timing, results.

The data is read in place (never copied into the repo): ``$SIAMTEXT_DATA`` if set, else
``../shared/data`` beside the repository. A machine without it gets a clear message and the
benchmark exits with status 0 after saying it skipped.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
DATA_ENV = "SIAMTEXT_DATA"


def data_dir() -> Path:
    return Path(os.environ.get(DATA_ENV, REPO.parent / "shared" / "data"))


def require(name: str) -> Path:
    """The folder of one dataset; exits (status 0, with a message) when it is missing."""
    folder = data_dir() / name
    if not folder.is_dir():
        print(f"SKIPPED: dataset {name!r} not found at {folder}. The benchmarks read real data "
              f"from ../shared/data; set {DATA_ENV} to the folder holding {name}/.")
        sys.exit(0)
    return folder


def load_banking77(split: str) -> tuple[list[str], list[str]]:
    """Banking77 ``train`` or ``test``: (texts, intent labels)."""
    with open(require("banking77") / f"{split}.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["category"] for r in rows]


def load_stsb(split: str) -> tuple[list[str], list[str], list[float]]:
    """STS-B ``train``, ``dev`` or ``test``: (sentence1, sentence2, score 0-5)."""
    with open(require("stsb") / f"{split}.tsv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return ([r["sentence1"] for r in rows], [r["sentence2"] for r in rows],
            [float(r["score"]) for r in rows])


def load_quora(split: str) -> tuple[list[str], list[str], list[int]]:
    """Quora question pairs ``dev`` or ``test``: (question1, question2, is_duplicate)."""
    with open(require("quora") / f"{split}.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return ([r["question1"] for r in rows], [r["question2"] for r in rows],
            [int(r["is_duplicate"]) for r in rows])


def alternate(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Time each callable ``repeats`` times, alternating between them; seconds per run."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo``, else the machine: sessions on "2 cores"
    have run on different CPUs (an AVX-512 Xeon, an AVX2 EPYC), so each result says which."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, object]:
    from siamtext.backends.export import isa_suffix

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": cpu_model(),
        "isa": isa_suffix(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def write_results(name: str, payload: dict) -> Path:
    """Write ``benchmarks/results/<name>.json`` with the environment added."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "environment": environment(), **payload}
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return path


def table(headers: list[str], rows: list[list[object]]) -> str:
    """A GitHub-flavoured markdown table."""
    cells = [[str(c) for c in row] for row in rows]
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(out)
