"""Online similarity index: siamtext's ``Index`` against the engines it could stand on.

Issue 21's benchmark. 1,000,000 items of 384 dims (``--n``): 200,000 real embeddings of
../shared/data texts (``corpus_scale.base_texts``, edited copies to fill up, as
``corpus_scale.corpus`` builds them) plus perturbed synthetic copies
(``corpus_scale.million``, cosine 0.85-0.99 to their source). Queries are 2,000 real texts
kept out of the corpus (1,000 Quora test questions, 1,000 Banking77 test utterances); the
10,000 added items are real embeddings of new edited corpus texts. Everything is embedded once
by the packaged all-MiniLM-L6-v2 (batch 64, normalised) and cached in ``--work``
(default /work/cache/index_bench, outside the repository).

Engines (``--engines``; benchmarks/index_engines.py has one adapter each): siamtext,
lancedb_ivfpq, lancedb_hnswsq, usearch_sqlite, milvus_lite, faiss_ivf, faiss_flat (the last
two: ``faiss.IndexIDMap2`` + the vectors in a ``.npy``, both rewritten after each batch: what
a user assembles today). Each step of each engine runs in a fresh process.

Sections (``--only``), run in this order, each on the collection the one before left:

* ``build``: bulk load of the n items and index build: seconds, disk MiB, peak RSS of the
  process (``VmHWM``, or the process tree's sampled peak if larger).
* ``search``: single-query latency at recall@10 >= 0.95 against exact brute force. Each
  engine's search depth (nprobe / ef / refine_factor) is raised step by step until its recall
  on the first 500 queries (the tuning sample) reaches 0.95; latency and recall are then
  measured on the other 1,500. Also the threshold check of one new text (k=10, cosine >= 0.9),
  with the model's time to embed one text beside it.
* ``add``: 10,000 pre-embedded items in batches of 100, each durable when ``add`` returns
  (items/s and ms per batch, embedding excluded); searches after them (before any optimize);
  ``optimize()``; for siamtext also 10,000 texts embedded by the model on the way in.
* ``reopen``: a fresh process opens the collection and answers one query (median of 3).
* ``kill``: a writer process adds batches of 100, printing each acknowledged batch's ids;
  it is killed with SIGKILL (its whole process group) at ``--kills`` random moments (0-2 s
  after its first acknowledged batch); after each kill a fresh process opens the collection
  and counts the acknowledged ids present.

Targets (issue 21, at 1M on 2 cores): single-query p99 <= 10 ms at recall@10 >= 0.95, add of
100 pre-embedded items <= 50 ms (median batch), reopen <= 5 s, peak RSS <= 2x the raw
vectors, 100 % of acknowledged items after kill -9 (and the collection opens every time).

    python benchmarks/index_online.py [--quick | --n N] [--only build,search,add,reopen,kill]
        [--engines siamtext,lancedb_ivfpq,...] [--work DIR] [--kills 10]

``--quick`` is n = 100,000 (20,000 real), and siamtext embeds 2,000 texts on the way in.
Writes benchmarks/results/index_online.json (``index_online_quick.json`` for ``--quick``,
``index_online_n<N>_quick.json`` for another --n, git-ignored like the quick one);
results merge by section and engine, so one engine or section can be run again alone.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_model, load_banking77, load_quora, table, write_results  # noqa: E402
from corpus_scale import base_texts, edit, million  # noqa: E402
from index_engines import ENGINES, THRESHOLD, K  # noqa: E402

HERE = Path(__file__).resolve().parent
SECTIONS = ("build", "search", "add", "reopen", "kill")
DIM = 384
N = 1_000_000
N_REAL = 200_000
N_QUERIES = 2_000
TUNE = 500
N_ADDS = 10_000
BATCH = 100
EMBED_BATCH = 64
CHUNK = 10_000
DEFAULT_WORK = Path("/work/cache/index_bench")
TARGETS = {"recall_at_10": 0.95, "p99_ms": 10.0, "add_100_ms": 50.0, "reopen_s": 5.0,
           "peak_rss_over_raw": 2.0, "kill_kept": 1.0}


# --------------------------------------------------------------------------- data
def held_out(n: int, seed: int = 0) -> list[str]:
    """``n`` real query texts kept out of the corpus: half Quora test questions, half
    Banking77 test utterances (whitespace normalised as ``base_texts`` does)."""
    rng = random.Random(seed)
    q1, q2, _ = load_quora("test")
    quora = sorted({" ".join(t.split()) for t in q1 + q2} - {""})
    bank = sorted({" ".join(t.split()) for t in load_banking77("test")[0]} - {""})
    return rng.sample(quora, n - n // 2) + rng.sample(bank, n // 2)


def real_texts(n: int, held: list[str], seed: int = 0) -> list[str]:
    """``n`` corpus texts as ``corpus_scale.corpus`` builds them (every base text once, then
    edited copies of random ones, shuffled), but without the held-out queries or edits of
    them, so that every query is a text the index has never seen."""
    rng = random.Random(seed)
    skip = set(held)
    base = [t for t in base_texts() if t not in skip]
    texts = base[:n] + [edit(rng.choice(base), rng) for _ in range(max(0, n - len(base)))]
    rng.shuffle(texts)
    return texts


def _embed_cached(texts: list[str], folder: Path, upto: int) -> np.ndarray:
    """Embeddings of ``texts[:upto]``, computed in chunks of ``CHUNK`` saved to ``folder``
    (a later run, or an interrupted one, reuses every chunk already there)."""
    folder.mkdir(parents=True, exist_ok=True)
    model = None
    parts = []
    for a in range(0, upto, CHUNK):
        b = min(a + CHUNK, len(texts))
        path = folder / f"{a:07d}_{b:07d}.npy"
        if not path.exists():
            if model is None:
                from siamtext import SiamText

                model = SiamText()
            start = time.perf_counter()
            vecs = model.encode(texts[a:b], batch_size=EMBED_BATCH, normalize=True,
                                show_progress=False).astype(np.float32)
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, vecs)
            tmp.replace(path)
            print(f"embedded {folder.name} {a:,}-{b:,} in {time.perf_counter() - start:.0f} s",
                  flush=True)
        parts.append(np.load(path))
    return np.concatenate(parts)[:upto]


def prepare(work: Path, n: int) -> dict:
    """The files every engine reads, in ``work`` and ``work/n<n>/`` (built once, then
    reused): the n vectors, the queries and the items to add (raw float32), the exact top-10
    of every query before and after the adds, and the texts siamtext embeds on the way in."""
    work.mkdir(parents=True, exist_ok=True)
    n_real = min(N_REAL, max(1, n // 5))
    held = held_out(N_QUERIES)
    texts = real_texts(N_REAL, held)
    rng = random.Random(3)
    adds = [edit(rng.choice(texts), rng) for _ in range(N_ADDS)]
    embed_texts = [edit(rng.choice(texts), rng) for _ in range(N_ADDS)]
    for name, lines in (("queries.txt", held), ("real.txt", texts), ("adds.txt", adds),
                        ("embed_adds.txt", embed_texts)):
        if not (work / name).exists():
            (work / name).write_text("".join(t + "\n" for t in lines), encoding="utf-8")
    folder = work / f"n{n}"
    folder.mkdir(exist_ok=True)
    files = {"vectors": folder / "vectors.f32", "queries": work / "queries.f32",
             "adds": work / "adds.f32", "truth": folder / "truth.npy",
             "truth_after": folder / "truth_after.npy", "embed_texts": work / "embed_adds.txt"}
    if not files["queries"].exists():
        _embed_cached(held, work / "queries", len(held)).tofile(files["queries"])
    if not files["adds"].exists():
        _embed_cached(adds, work / "adds", len(adds)).tofile(files["adds"])
    if not files["vectors"].exists():
        real = _embed_cached(texts, work / "real", n_real)
        tmp = files["vectors"].with_suffix(".tmp")
        million(real, n).tofile(tmp)
        tmp.replace(files["vectors"])
    if not files["truth_after"].exists():
        x = np.fromfile(files["vectors"], dtype=np.float32).reshape(n, DIM)
        q = np.fromfile(files["queries"], dtype=np.float32).reshape(-1, DIM)
        a = np.fromfile(files["adds"], dtype=np.float32).reshape(-1, DIM)
        top = exact_top(q, x, 0)
        np.save(files["truth"], top[0])
        np.save(files["truth_after"], exact_top(q, a, n, top)[0])
    return {k: str(v) for k, v in files.items()} | {"n_real": n_real}


def exact_top(q: np.ndarray, x: np.ndarray, first_id: int,
              prev: tuple[np.ndarray, np.ndarray] | None = None, k: int = K,
              block: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` ids (rows of ``x`` numbered from ``first_id``) and scores of each
    query by brute force, merged with ``prev``'s ``(ids, scores)`` if given."""
    ids = np.zeros((len(q), 0), dtype=np.int64) if prev is None else prev[0]
    scores = np.zeros((len(q), 0), dtype=np.float32) if prev is None else prev[1]
    for a in range(0, len(x), block):
        s = q @ x[a:a + block].T
        kk = min(k, s.shape[1])
        part = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
        ids = np.concatenate([ids, part + first_id + a], axis=1)
        scores = np.concatenate([scores, np.take_along_axis(s, part, 1)], axis=1)
        best = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        ids, scores = (np.take_along_axis(m, best, 1) for m in (ids, scores))
    return ids, scores


def disk_bytes(path: Path) -> int:
    """Bytes the files under ``path`` take on disk (allocated blocks)."""
    return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file())


# --------------------------------------------------------------------------- running
class Missing(RuntimeError):
    """A section needs a step that has not run (nothing is recorded for it)."""


class Runner:
    """Runs one engine's steps, each in a fresh process of benchmarks/index_engines.py."""

    def __init__(self, engine: str, work: Path, files: dict, n: int, args: argparse.Namespace
                 ) -> None:
        self.engine, self.n, self.args = engine, n, args
        self.path = work / f"n{n}" / "engines" / engine
        self.files = files
        self.state_path = self.path.parent / f"{engine}.state.json"

    def spec(self, **extra: object) -> dict:
        return {"path": str(self.path), "dim": DIM, "n": self.n, **self.files,
                "tune": TUNE, "recall_target": TARGETS["recall_at_10"], "batch": BATCH,
                "first_add_id": self.n, "threshold_queries": 500, "after_add_queries": 500,
                "add_budget_s": self.args.add_budget, "embed_adds": self.args.embed_adds,
                **extra}

    def state(self) -> dict:
        return json.loads(self.state_path.read_text()) if self.state_path.exists() else {}

    def save_state(self, **changes: object) -> None:
        self.state_path.write_text(json.dumps(self.state() | changes))

    def popen(self, action: str, spec: dict, **kw: object) -> tuple[subprocess.Popen, str]:
        fd, spec_path = tempfile.mkstemp(suffix=".json", prefix=f"{self.engine}_{action}_")
        with os.fdopen(fd, "w") as f:
            json.dump(spec, f)
        cmd = [sys.executable, str(HERE / "index_engines.py"), action, self.engine, spec_path]
        return subprocess.Popen(cmd, text=True, **kw), spec_path

    def step(self, action: str, **extra: object) -> dict:
        proc, spec_path = self.popen(action, self.spec(**extra), stdout=subprocess.PIPE)
        out, _ = proc.communicate()
        os.unlink(spec_path)
        if proc.returncode != 0:
            raise RuntimeError(f"{self.engine} {action} exited with {proc.returncode}")
        return json.loads(out.strip().splitlines()[-1])

    # ------------------------------------------------------------------ sections
    def build(self) -> dict:
        import shutil

        shutil.rmtree(self.path, ignore_errors=True)
        self.state_path.unlink(missing_ok=True)
        self.path.mkdir(parents=True)
        got = self.step("build")
        got["disk_bytes"] = disk_bytes(self.path)
        self.save_state(built=True, added=0)
        return got

    def search(self) -> dict:
        self._require("built")
        truth = "truth_after" if self.state().get("added") else "truth"
        got = self.step("search", truth=self.files[truth])
        got["truth"] = truth
        self.save_state(depth=got["depth"])
        return got

    def add(self) -> dict:
        self._require("built")
        if self.state().get("added"):
            raise Missing(f"{self.engine}: the adds are in already: run build again")
        got = self.step("add", depth=self.state().get("depth", {}))
        got["disk_bytes"] = disk_bytes(self.path)
        self.save_state(added=got["pre_embedded"]["items"])
        return got

    def reopen(self) -> dict:
        self._require("built")
        runs = [self.step("reopen", depth=self.state().get("depth", {}))
                for _ in range(self.args.reopens)]
        order = sorted(runs, key=lambda r: r["reopen_s"])
        return {**order[len(order) // 2], "runs": [r["reopen_s"] for r in runs],
                "first_run_s": runs[0]["reopen_s"]}

    def kill(self) -> dict:
        self._require("built")
        rng = random.Random(11)
        acked: list[int] = []
        rounds = []
        for r in range(self.args.kills):
            first = self.n + 1_000_000 * (r + 1)
            got = self._kill_round(first, rng.uniform(0.0, self.args.kill_window))
            acked += got.pop("acked_ids")
            fd, acked_path = tempfile.mkstemp(suffix=".npy")
            os.close(fd)
            np.save(acked_path, np.asarray(acked, dtype=np.int64))
            check = self.step("check", acked=acked_path)
            os.unlink(acked_path)
            rounds.append({**got, **{k: v for k, v in check.items()
                                     if k not in ("engine", "action")}})
            print(f"  kill {r}: {json.dumps(rounds[-1])}", flush=True)
            if not check["opened"] or not got["writer_started"]:
                break
        last = rounds[-1]
        kept = last["present"] / last["acked"] if last["acked"] else 0.0
        return {"rounds": rounds, "kills": len(rounds),
                "opened_every_time": all(x["opened"] for x in rounds),
                "writer_reopened_every_time": all(x["writer_started"] for x in rounds),
                "acked": last["acked"], "present": last["present"], "kept": kept,
                "kept_every_round": all(x["opened"] and x["present"] == x["acked"]
                                        for x in rounds)}

    def _kill_round(self, first: int, delay: float) -> dict:
        """Start a writer, SIGKILL its process group ``delay`` s after its first
        acknowledged batch; the ids it acknowledged."""
        spec = self.spec(first_id=first, max_batches=100_000)
        proc, spec_path = self.popen("writer", spec, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, start_new_session=True)
        lines: list[str] = []
        first_ack = threading.Event()

        def read() -> None:
            for line in proc.stdout:
                lines.append(line)
                if line.startswith("ACK"):
                    first_ack.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        deadline = time.perf_counter() + self.args.writer_timeout
        while not first_ack.wait(0.05) and proc.poll() is None \
                and time.perf_counter() < deadline:
            pass
        started = first_ack.is_set()
        if started:
            time.sleep(delay)
        alive = proc.poll() is None
        if alive:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        reader.join()
        err = proc.stderr.read()
        os.unlink(spec_path)
        ids = []
        for line in lines:
            if line.startswith("ACK"):
                a, b = map(int, line.split()[1:3])
                ids += range(a, b)
        return {"writer_started": started, "killed": alive, "delay_s": delay,
                "batches_acked": sum(line.startswith("ACK") for line in lines),
                "writer_error": None if started else err[-500:], "acked_ids": ids}

    def _require(self, key: str) -> None:
        if not self.state().get(key):
            raise Missing(f"{self.engine}: no collection built at {self.path}: run the "
                               "build section first (same --n and --work)")


def embed_one_ms(texts: list[str]) -> dict:
    """The packaged model's time to embed one text (the first half of a threshold check)."""
    from siamtext import SiamText

    model = SiamText()
    model.encode(texts[:5], show_progress=False)
    seconds = []
    for t in texts:
        start = time.perf_counter()
        model.encode([t], show_progress=False)
        seconds.append(time.perf_counter() - start)
    ms = np.asarray(seconds) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "texts": len(texts)}


# --------------------------------------------------------------------------- report
def _ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return ""
    return f"{value / base:.2f}x"


def _verdict(ok: bool | None) -> str:
    return "" if ok is None else ("PASS" if ok else "FAIL")


def report(results: dict, n: int) -> list[str]:
    """One table per measure, each engine with its ratio to siamtext and the target."""
    raw = n * DIM * 4
    out: list[str] = []
    get = lambda section: results.get(section, {})  # noqa: E731
    base = {s: get(s).get("siamtext") for s in SECTIONS}

    if get("build"):
        rows = []
        b0 = base["build"]
        for eng, r in get("build").items():
            ok = r["peak_rss"] <= TARGETS["peak_rss_over_raw"] * raw
            rows.append([eng, f"{r['load_s']:.1f}", f"{r['build_s']:.1f}", f"{r['total_s']:.1f}",
                         _ratio(r["total_s"], b0 and b0["total_s"]),
                         f"{r['disk_bytes'] / 2**20:.0f}", f"{r['peak_rss'] / 2**20:.0f}",
                         f"{r['peak_rss'] / raw:.2f}", _ratio(r["peak_rss"],
                                                              b0 and b0["peak_rss"]),
                         _verdict(ok)])
        out += [f"bulk load + index build of {n:,} x {DIM} (raw vectors "
                f"{raw / 2**30:.2f} GiB; target peak RSS <= {TARGETS['peak_rss_over_raw']:.0f}x "
                "raw)", table(["engine", "load s", "build s", "total s", "vs siamtext",
                               "disk MiB", "peak RSS MiB", "RSS / raw", "RSS vs siamtext",
                               "target"], rows), ""]
    if get("search"):
        rows, trows = [], []
        s0 = base["search"]
        embed = results.get("embed_one_text")
        for eng, r in get("search").items():
            ok = r["recall"] >= TARGETS["recall_at_10"] and r["p99_ms"] <= TARGETS["p99_ms"]
            rows.append([eng, json.dumps(r["depth"]), f"{r['recall']:.4f}",
                         f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}",
                         _ratio(r["p99_ms"], s0 and s0["p99_ms"]), _verdict(ok)])
            t = r["threshold"]
            trows.append([eng, f"{t['p50_ms']:.2f}", f"{t['p99_ms']:.2f}",
                          _ratio(t["p99_ms"], s0 and s0["threshold"]["p99_ms"]),
                          f"{t['queries_with_hits']}/{t['count']}",
                          f"{t['p50_ms'] + embed['p50_ms']:.1f}" if embed else ""])
        out += [f"single-query search, recall@10 against exact (tuned on {TUNE} queries, "
                f"measured on {N_QUERIES - TUNE}); target p99 <= {TARGETS['p99_ms']:.0f} ms at "
                f"recall >= {TARGETS['recall_at_10']}",
                table(["engine", "depth", "recall@10", "p50 ms", "p99 ms", "p99 vs siamtext",
                       "target"], rows), ""]
        out += [f"threshold check of one new text (k={K}, cosine >= {THRESHOLD}, vector given; "
                + (f"embedding one text takes {embed['p50_ms']:.1f} ms p50)" if embed else ")"),
                table(["engine", "p50 ms", "p99 ms", "p99 vs siamtext", "queries with a hit",
                       "with embedding p50 ms"], rows=trows), ""]
    if get("add"):
        rows, srows = [], []
        a0 = base["add"]
        for eng, r in get("add").items():
            p = r["pre_embedded"]
            ok = p["p50_ms"] <= TARGETS["add_100_ms"]
            rows.append([eng, "excluded", f"{p['items']:,}" + ("" if p["complete"] else "*"),
                         f"{p['items_per_s']:.0f}", f"{p['p50_ms']:.1f}", f"{p['p99_ms']:.1f}",
                         _ratio(p["p50_ms"], a0 and a0["pre_embedded"]["p50_ms"]),
                         f"{r['optimize_s']:.1f}", f"{r['disk_bytes'] / 2**20:.0f}",
                         _verdict(ok)])
            if "embedded" in r:
                e = r["embedded"]
                rows.append([eng, "included", f"{e['items']:,}", f"{e['items_per_s']:.0f}",
                             f"{e['p50_ms']:.1f}", f"{e['p99_ms']:.1f}", "", "", "", ""])
            if "search_after_add" in r:
                s = r["search_after_add"]
                srows.append([eng, f"{s['recall']:.4f}", f"{s['p50_ms']:.2f}",
                              f"{s['p99_ms']:.2f}"])
        out += [f"incremental add of {N_ADDS:,} items in batches of {BATCH}, each durable on "
                f"return; target median batch <= {TARGETS['add_100_ms']:.0f} ms "
                "(* stopped at --add-budget)",
                table(["engine", "embedding", "items", "items/s", "p50 ms / batch",
                       "p99 ms / batch", "p50 vs siamtext", "optimize s after",
                       "disk MiB after", "target"], rows), ""]
        if srows:
            out += ["search right after the adds (before optimize), same depth",
                    table(["engine", "recall@10", "p50 ms", "p99 ms"], srows), ""]
    if get("reopen"):
        rows = []
        r0 = base["reopen"]
        for eng, r in get("reopen").items():
            rows.append([eng, f"{r['import_s']:.2f}", f"{r['open_s']:.2f}",
                         f"{r['first_query_s'] * 1e3:.1f}", f"{r['reopen_s']:.2f}",
                         f"{r['first_run_s']:.2f}", _ratio(r["reopen_s"], r0 and r0["reopen_s"]),
                         f"{r['rss_after_open'] / 2**20:.0f}",
                         _verdict(r["reopen_s"] <= TARGETS["reopen_s"])])
        out += [f"reopen in a fresh process: open + first answer, median of the runs "
                f"(import not counted); target <= {TARGETS['reopen_s']:.0f} s",
                table(["engine", "import s", "open s", "first query ms", "reopen s",
                       "first run s", "vs siamtext", "RSS MiB", "target"], rows), ""]
    if get("kill"):
        rows = []
        for eng, r in get("kill").items():
            readers = all(x["opened"] for x in r["rounds"])
            writers = all(x["writer_started"] for x in r["rounds"])
            ok = readers and writers and r["kills"] >= 10 and r["kept_every_round"]
            rows.append([eng, r["kills"], "yes" if readers else "NO",
                         "yes" if writers else "NO", f"{r['acked']:,}", f"{r['present']:,}",
                         f"{r['kept']:.2%}", _verdict(ok)])
        out += ["kill -9 of a writer adding batches of 100, at random moments; after each kill "
                "a reader opens and counts the acknowledged ids, and the next writer reopens "
                "it (the rounds stop at the first failure); target 100 % kept over 10 kills, "
                "opening every time",
                table(["engine", "kills", "reader opens every time", "writer reopens every time",
                       "acked ids", "present", "kept", "target"], rows), ""]
    return out


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    from siamtext.backends.export import isa_suffix

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=N, help="items in the collection")
    parser.add_argument("--quick", action="store_true", help="n = 100,000")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"among {SECTIONS}")
    parser.add_argument("--engines", default=",".join(ENGINES), help=f"among {tuple(ENGINES)}")
    parser.add_argument("--work", default=str(DEFAULT_WORK),
                        help="cache of texts, embeddings and collections (outside the repo)")
    parser.add_argument("--kills", type=int, default=10, help="kill -9 rounds per engine")
    parser.add_argument("--kill-window", type=float, default=2.0,
                        help="kill at a random moment this many s after the first ack")
    parser.add_argument("--writer-timeout", type=float, default=900.0,
                        help="s to wait for a writer's first acknowledged batch")
    parser.add_argument("--reopens", type=int, default=3)
    parser.add_argument("--add-budget", type=float, default=600.0,
                        help="stop an engine's adds after this many s (slow re-saves)")
    parser.add_argument("--embed-adds", type=int, default=None,
                        help="texts siamtext embeds on the way in (add section; default "
                        f"{N_ADDS:,}, {N_ADDS // 5:,} with --quick)")
    args = parser.parse_args(argv)
    only = [s for s in args.only.split(",") if s]
    engines = [e for e in args.engines.split(",") if e]
    for name, given, allowed in (("--only", only, SECTIONS), ("--engines", engines, ENGINES)):
        unknown = sorted(set(given) - set(allowed))
        if unknown:
            parser.error(f"{name}: unknown {unknown}; choose among {list(allowed)}")
    n = 100_000 if args.quick else args.n
    if args.embed_adds is None:
        args.embed_adds = N_ADDS // 5 if args.quick else N_ADDS
    if n < 1_000:
        parser.error(f"--n must be at least 1000, got {n}")
    name = ("index_online_quick" if args.quick else "index_online" if n == N
            else f"index_online_n{n}_quick")
    path = HERE / "results" / f"{name}.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    results = previous.get("results", {})
    settings = previous.get("settings", {})
    files = prepare(Path(args.work), n)
    settings.update({"n": n, "real": files["n_real"], "dim": DIM, "queries": N_QUERIES,
                     "tune_queries": TUNE, "adds": N_ADDS, "batch": BATCH, "k": K,
                     "threshold": THRESHOLD, "kills": args.kills, "cpus": os.cpu_count()})
    for section in SECTIONS:
        if section not in only:
            continue
        if section == "search":
            with open(files["queries"].replace(".f32", ".txt"), encoding="utf-8") as f:
                texts = f.read().split("\n")[TUNE:TUNE + 100]
            results["embed_one_text"] = embed_one_ms(texts)
        for engine in engines:
            print(f"{section} {engine} ...", flush=True)
            start = time.perf_counter()
            runner = Runner(engine, Path(args.work), files, n, args)
            try:
                got = getattr(runner, section)()
            except Missing as err:
                print(f"  skipped: {err}", flush=True)
                continue
            except RuntimeError as err:
                print(f"  {section} {engine} failed: {err}", flush=True)
                got = {"error": str(err)}
            got["wall_s"] = time.perf_counter() - start
            # engines may be run in separate invocations (one engine at a time, as a long
            # run allows): each entry says where and when it was measured
            got["measured_on"] = {"cpu": cpu_model(), "isa": isa_suffix(),
                                  "date": time.strftime("%Y-%m-%d")}
            results.setdefault(section, {})[engine] = got
            print(f"  {section} {engine}: {json.dumps(got, default=str)[:600]}", flush=True)
            write_results(name, {"settings": settings, "targets": TARGETS, "results": results})
    ok = {s: {e: r for e, r in results.get(s, {}).items() if "error" not in r}
          for s in SECTIONS} | {"embed_one_text": results.get("embed_one_text")}
    print("\n".join(report(ok, n)))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
