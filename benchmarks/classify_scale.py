"""Decisions by threshold at scale: intents, 10,000 classes, corpus duplicates, Quora pairs.

Sections (run all, or some with ``--only``):

* ``banking77``: intent accuracy of IntentClassifier (prototype and k-NN) with the packaged
  all-MiniLM-L6-v2, from the full train set and from 1, 5 and 8 examples per class
  (few-shot rows average 3 draws of the examples).
* ``scale``: 10,000 classes x 10 examples of synthetic unit vectors in 384 dims: fit time,
  predict queries/s in batches of 256 (target >= 5,000 q/s for prototypes) and the time to
  add a class.
* ``dedup``: DuplicateDetector.find_duplicates on 100,000 embeddings against
  ``sentence_transformers.util.paraphrase_mining_embeddings`` with the same top_k,
  alternating: time of each, ratio (target <= 0.8) and overlap of the pairs found.
* ``quora``: duplicate questions (../shared/data/quora, dev/test only). dev is split into
  train (80%) and validation (20%); the threshold is fitted on validation and accuracy / F1
  are reported on test, zero-shot and after one epoch of OnlineContrastiveLoss on train.

    python benchmarks/classify_scale.py [--quick] [--only scale,dedup] [--repeats 2]

Prints a table per section with PASS/FAIL against the targets and writes
benchmarks/results/classify_scale.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    alternate,
    load_banking77,
    load_quora,
    median,
    table,
    write_results,
)

SECTIONS = ("banking77", "scale", "dedup", "quora")
TARGET_QPS = 5000.0
TARGET_RATIO = 0.8
TARGET_OVERLAP = 0.99


def minilm(device: str = "cpu"):
    from siamtext import SiamText

    return SiamText(device=device)  # the packaged all-MiniLM-L6-v2, offline


def unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, p=2, dim=-1)


# ---------------------------------------------------------------------- banking77
def bench_banking77(quick: bool) -> dict:
    from siamtext.classify import IntentClassifier

    train_x, train_y = load_banking77("train")
    test_x, test_y = load_banking77("test")
    rng = np.random.default_rng(0)
    if quick:
        keep = rng.permutation(len(test_x))[:500]
        test_x, test_y = [test_x[i] for i in keep], [test_y[i] for i in keep]
        by_class: dict[str, list[int]] = {}
        for i, lab in enumerate(train_y):
            by_class.setdefault(lab, []).append(i)
        keep = sorted(i for idx in by_class.values() for i in idx[:20])
        train_x, train_y = [train_x[i] for i in keep], [train_y[i] for i in keep]
    model = minilm()
    start = time.perf_counter()
    train_e = model.encode(train_x, batch_size=64)
    test_e = model.encode(test_x, batch_size=64)
    encode_s = time.perf_counter() - start
    train_y_arr, test_y_arr = np.asarray(train_y), np.asarray(test_y)
    classes = sorted(set(train_y))

    def accuracy(mode: str, idx: np.ndarray, k: int) -> float:
        clf = IntentClassifier(mode=mode, n_neighbors=k).fit(train_e[idx], train_y_arr[idx])
        return float((clf.predict(test_e) == test_y_arr).mean())

    rows, results = [], []
    settings = [("full", None)] + [(f"{s} per class", s) for s in (1, 5, 8)]
    for name, shots in settings:
        draws = [np.arange(len(train_y))] if shots is None else [
            np.concatenate([np.random.default_rng(seed).permutation(
                np.flatnonzero(train_y_arr == c))[:shots] for c in classes])
            for seed in range(3)]
        k = 10 if shots is None else min(5, shots)
        proto = float(np.mean([accuracy("prototype", d, k) for d in draws]))
        knn = float(np.mean([accuracy("knn", d, k) for d in draws]))
        rows.append([name, len(draws[0]), f"{proto:.4f}", f"{knn:.4f} (k={k})"])
        results.append({"setting": name, "examples": int(len(draws[0])), "draws": len(draws),
                        "prototype_accuracy": proto, "knn_accuracy": knn, "knn_k": k})
    print(f"\nBanking77 intents ({len(classes)} classes, {len(test_x)} test texts, "
          f"all-MiniLM-L6-v2, encoding {encode_s:.1f} s)")
    print(table(["train examples", "n", "prototype accuracy", "k-NN accuracy"], rows))
    return {"test_size": len(test_x), "classes": len(classes), "encode_s": encode_s,
            "rows": results}


# ---------------------------------------------------------------------- scale
def synthetic_classes(n_classes: int, per_class: int, dim: int, seed: int = 0,
                      spread: float = 0.8) -> tuple[torch.Tensor, np.ndarray, torch.Tensor]:
    """Unit-vector examples around random class centres (cosine to the centre ~0.78)."""
    g = torch.Generator().manual_seed(seed)
    centres = unit(torch.randn(n_classes, dim, generator=g))
    labels = np.repeat(np.arange(n_classes), per_class)
    noise = torch.randn(len(labels), dim, generator=g) * spread / dim ** 0.5
    return unit(centres[torch.from_numpy(labels)] + noise), labels, centres


def bench_scale(quick: bool) -> dict:
    from siamtext.classify import IntentClassifier

    n_classes, per_class, dim, batch = 10_000, 10, 384, 256
    n_queries = 256 * (8 if quick else 40)
    examples, labels, centres = synthetic_classes(n_classes, per_class, dim)
    g = torch.Generator().manual_seed(1)
    q_labels = torch.randint(0, n_classes, (n_queries,), generator=g)
    queries = unit(centres[q_labels] + torch.randn(n_queries, dim, generator=g) * 0.8 / dim ** 0.5)
    rows, results, ok_all = [], [], True
    for mode in ("prototype", "knn"):
        start = time.perf_counter()
        clf = IntentClassifier(mode=mode, n_neighbors=10).fit(examples, labels)
        fit_s = time.perf_counter() - start
        clf.predict(queries[:batch])  # warm-up
        preds = []
        start = time.perf_counter()
        for a in range(0, n_queries, batch):
            preds.append(clf.predict(queries[a : a + batch]))
        qps = n_queries / (time.perf_counter() - start)
        acc = float((np.concatenate(preds) == q_labels.numpy()).mean())
        start = time.perf_counter()
        clf.add_examples(unit(torch.randn(2, dim, generator=g)), n_classes)
        add_ms = (time.perf_counter() - start) * 1e3
        ok = qps >= TARGET_QPS if mode == "prototype" else None
        ok_all = ok_all and ok is not False
        rows.append([mode, f"{fit_s:.3f}", f"{qps:,.0f}", f"{acc:.4f}", f"{add_ms:.1f}",
                     "-" if ok is None else ("PASS" if ok else "FAIL")])
        results.append({"mode": mode, "fit_s": fit_s, "queries_per_s": qps, "accuracy": acc,
                        "add_class_ms": add_ms, "pass": ok})
    print(f"\nScale: {n_classes:,} classes x {per_class} examples, {dim}-d unit vectors, "
          f"{n_queries:,} queries in batches of {batch}, torch threads {torch.get_num_threads()}")
    print(table(["mode", "fit s", "queries/s", "accuracy", "add a class ms",
                 f"target >= {TARGET_QPS:,.0f} q/s"], rows))
    return {"classes": n_classes, "per_class": per_class, "dim": dim, "batch": batch,
            "queries": n_queries, "rows": results, "pass": ok_all}


# ---------------------------------------------------------------------- dedup
def corpus_embeddings(n: int, dim: int = 384, seed: int = 0) -> torch.Tensor:
    """Clustered unit vectors: n/4 topics, each text a noisy copy of its topic, so that
    near-duplicates exist next to a mass of unrelated texts."""
    g = torch.Generator().manual_seed(seed)
    topics = torch.randn(max(n // 4, 1), dim, generator=g)
    pick = torch.randint(0, topics.shape[0], (n,), generator=g)
    return unit(topics[pick] + 0.9 * torch.randn(n, dim, generator=g))


def bench_dedup(quick: bool, repeats: int) -> dict:
    from sentence_transformers.util import paraphrase_mining_embeddings

    from siamtext.classify import DuplicateDetector

    n, top_k = (20_000 if quick else 100_000), 10
    emb = corpus_embeddings(n)
    det = DuplicateDetector()
    out: dict[str, object] = {}

    def ours():
        out["ours"] = det.find_duplicates(emb, threshold=-1.0, top_k=top_k, show_progress=False)

    def peer():
        out["peer"] = paraphrase_mining_embeddings(emb, top_k=top_k, max_pairs=n * top_k)

    times = alternate({"siamtext": ours, "sentence-transformers": peer}, repeats)
    t_ours, t_peer = median(times["siamtext"]), median(times["sentence-transformers"])
    ratio = t_ours / t_peer
    a = set(map(tuple, out["ours"].pairs.tolist()))
    b = {(min(i, j), max(i, j)) for _, i, j in out["peer"]}
    overlap = len(a & b) / max(len(b), 1)
    ok = ratio <= TARGET_RATIO and overlap >= TARGET_OVERLAP
    rows = [["top-k pairs (threshold -1)", f"{t_ours:.2f}", f"{t_peer:.2f}", f"{ratio:.3f}",
             f"{len(a):,} / {len(b):,}", f"{overlap:.4f}", "PASS" if ok else "FAIL"]]
    result = {"n": n, "dim": emb.shape[1], "top_k": top_k, "repeats": repeats,
              "siamtext_s": t_ours, "peer_s": t_peer, "ratio": ratio, "overlap": overlap,
              "pairs_siamtext": len(a), "pairs_peer": len(b), "times_s": times, "pass": ok}
    # the usual dedup call: pairs above a similarity threshold (the peer has no threshold,
    # so its time is the run above plus a filter)
    thr = 0.5
    start = time.perf_counter()
    found = det.find_duplicates(emb, threshold=thr, top_k=top_k, show_progress=False)
    t_thr = time.perf_counter() - start
    b_thr = {(min(i, j), max(i, j)) for s, i, j in out["peer"] if s >= thr}
    ov_thr = len(set(map(tuple, found.pairs.tolist())) & b_thr) / max(len(b_thr), 1)
    rows.append([f"pairs >= {thr} in top-k", f"{t_thr:.2f}", f"{t_peer:.2f} + filter",
                 f"{t_thr / t_peer:.3f}", f"{len(found):,} / {len(b_thr):,}", f"{ov_thr:.4f}",
                 "-"])
    result["with_threshold"] = {"threshold": thr, "siamtext_s": t_thr, "ratio": t_thr / t_peer,
                                "pairs": len(found), "overlap": ov_thr,
                                "groups": len(found.groups)}
    try:
        import faiss  # noqa: F401
    except ImportError:
        faiss_ok = False
    else:
        faiss_ok = True
    if faiss_ok:
        start = time.perf_counter()
        approx = det.find_duplicates(emb, threshold=-1.0, top_k=top_k, method="faiss",
                                     show_progress=False)
        t_faiss = time.perf_counter() - start
        recall = len(set(map(tuple, approx.pairs.tolist())) & a) / max(len(a), 1)
        rows.append(["faiss HNSW32 (approximate)", f"{t_faiss:.2f}", "-",
                     f"{t_faiss / t_peer:.3f}", f"{len(approx):,}", f"{recall:.4f} recall",
                     "-"])
        result["faiss_hnsw"] = {"siamtext_s": t_faiss, "pairs": len(approx),
                                "recall_vs_exact": recall}
    print(f"\nfind_duplicates vs paraphrase_mining_embeddings: {n:,} x {emb.shape[1]} "
          f"embeddings, top_k={top_k}, median of {repeats}, torch threads "
          f"{torch.get_num_threads()}")
    print(table(["search", "siamtext s", "sentence-transformers s", "ratio",
                 "pairs (siamtext / peer)", "overlap", f"target <= {TARGET_RATIO}x"], rows))
    return result


# ---------------------------------------------------------------------- quora
def pair_metrics(pred: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    from sklearn.metrics import accuracy_score, f1_score

    return float(accuracy_score(y, pred)), float(f1_score(y, pred))


def bench_quora(quick: bool) -> dict:
    from siamtext.classify import DuplicateDetector

    q1, q2, y = load_quora("dev")
    t1, t2, ty = load_quora("test")
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    n_train = int(0.8 * len(y))
    tr, va = order[:n_train], order[n_train:]
    if quick:
        tr, va = tr[:1000], va[:500]
        keep = rng.permutation(len(ty))[:1000]
        t1, t2, ty = [t1[i] for i in keep], [t2[i] for i in keep], [ty[i] for i in keep]
    val_pairs = [(q1[i], q2[i]) for i in va]
    val_y = [y[i] for i in va]
    ty_arr = np.asarray(ty)
    rows, results = [], []

    def evaluate(name: str, model) -> None:
        det = DuplicateDetector(model, batch_size=64).fit(val_pairs, val_y, objective="f1")
        pred = det.is_duplicate(t1, t2).astype(int)
        acc, f1 = pair_metrics(pred, ty_arr)
        rows.append([name, f"{det.threshold_:.4f}", f"{acc:.4f}", f"{f1:.4f}"])
        results.append({"setting": name, "threshold": det.threshold_, "test_accuracy": acc,
                        "test_f1": f1, "validation_f1": det.classifier_.best_score_})

    evaluate("zero-shot", minilm())
    fine_tuned = None
    try:
        from datasets import Dataset

        from siamtext.losses import OnlineContrastiveLoss
        from siamtext.training import fit
    except ImportError as err:
        print(f"fine-tuning skipped: {err}")
        results.append({"setting": "fine-tuned", "skipped": str(err)})
    else:
        train = Dataset.from_dict({"sentence1": [q1[i] for i in tr],
                                   "sentence2": [q2[i] for i in tr],
                                   "label": [y[i] for i in tr]})
        start = time.perf_counter()
        fine_tuned = fit(minilm(), train, loss=OnlineContrastiveLoss, epochs=1, batch_size=32,
                         learning_rate=2e-5, show_progress=False)
        train_s = time.perf_counter() - start
        evaluate(f"OnlineContrastiveLoss, 1 epoch on {len(tr):,} pairs", fine_tuned)
        results[-1]["train_s"] = train_s
    print(f"\nQuora duplicate questions: threshold fitted (F1) on {len(va):,} validation pairs "
          f"from dev, reported on {len(ty):,} test pairs (tokenised text, not detokenised)")
    print(table(["model", "threshold", "test accuracy", "test F1"], rows))
    return {"train_pairs": len(tr), "validation_pairs": len(va), "test_pairs": len(ty),
            "rows": results}


# ---------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="small sizes for a smoke run (minutes); numbers not for the README")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections: {','.join(SECTIONS)}")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of the dedup pair")
    args = parser.parse_args()
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        parser.error(f"--only: unknown sections {unknown}; choose from {list(SECTIONS)}")

    payload: dict[str, object] = {"quick": args.quick, "sections": {}}
    for name in only:
        if name == "banking77":
            payload["sections"]["banking77"] = bench_banking77(args.quick)
        elif name == "scale":
            payload["sections"]["scale"] = bench_scale(args.quick)
        elif name == "dedup":
            payload["sections"]["dedup"] = bench_dedup(args.quick, args.repeats)
        elif name == "quora":
            payload["sections"]["quora"] = bench_quora(args.quick)
    checks = {k: v["pass"] for k, v in payload["sections"].items() if "pass" in v}
    payload["pass"] = all(checks.values())
    print("\n" + ", ".join(f"{k}: {'PASS' if v else 'FAIL'}" for k, v in checks.items()))
    name = "classify_scale_quick" if args.quick else "classify_scale"
    print(f"wrote {write_results(name, payload)}")


if __name__ == "__main__":
    main()
