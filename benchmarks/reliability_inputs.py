"""Reliability rows for hostile text, hostile folders and concurrent use (issue 12, items 4-6).

Each row function returns ``{"row", "tried", "ok", "details"}``: how many cases were tried,
how many had the right outcome, and what went wrong in the others. The cases are the ones
of ``tests/reliability/hostile.py`` (the tests assert each of them; here they are counted).

    python benchmarks/reliability_inputs.py            # the packaged all-MiniLM-L6-v2
    python benchmarks/reliability_inputs.py --quick    # 10,000 empty strings instead of 100,000
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from reliability.hostile import (  # noqa: E402
    MARKER_NAME,
    ODD_TEXTS,
    SURROGATE,
    check_embeddings,
    check_refused,
    hostile_classifier_folders,
    hostile_model_folders,
    megabyte_texts,
    outcome,
    run_threads,
)


def _row(name: str, cases: dict[str, Callable[[], str | None]]) -> dict:
    details, ok = {}, 0
    for case, run in cases.items():
        start = time.perf_counter()
        try:
            problem = run()
        except Exception as err:  # noqa: BLE001 - a crash of the check is a failed case
            problem = f"check crashed: {type(err).__name__}: {err}"
        if problem is None:
            ok += 1
        else:
            details[case] = problem
        print(f"  {name}/{case}: {'ok' if problem is None else problem} "
              f"({time.perf_counter() - start:.1f} s)", file=sys.stderr)
    return {"row": name, "tried": len(cases), "ok": ok, "details": details}


def _load_model(model: str | None):
    from siamtext import SiamText

    return SiamText(model, device="cpu") if model else SiamText(device="cpu")


def hostile_text_row(model: str | None = None, n_empty: int = 100_000) -> dict:
    """Odd, 1 MB, empty, duplicate and one-class inputs through encode, the collators, the
    pair builders and the three classifiers."""
    from siamtext.classify import DuplicateDetector, IntentClassifier, ThresholdClassifier
    from siamtext.data import PairCollator, make_pairs, make_triplets

    m = _load_model(model)
    dim = m.embedding_dim
    odd = list(ODD_TEXTS.values())
    big = megabyte_texts()

    def emb(texts: list[str]) -> Callable[[], str | None]:
        return lambda: outcome(lambda: m.encode(texts, batch_size=256),
                               lambda e: check_embeddings(e, len(texts), dim))

    cases: dict[str, Callable[[], str | None]] = {
        "encode/odd": emb(odd),
        **{f"encode/1MB_{k}": emb([v]) for k, v in big.items()},
        f"encode/{n_empty}_empty": emb([""] * n_empty),
        "encode/duplicates_only": emb(["same"] * 500),
        "encode/lone_surrogate_refused": lambda: outcome(lambda: m.encode([SURROGATE]),
                                                         refuse=True),
        "collator/odd_and_1MB": lambda: outcome(lambda: PairCollator(m)(
            [{"sentence1": t, "sentence2": big["emoji"], "label": 1} for t in odd])),
        "collator/nan_label_refused": lambda: outcome(lambda: PairCollator(m)(
            [{"sentence1": "a", "sentence2": "b", "label": float("nan")}]), refuse=True),
        "pairs/duplicates_only": lambda: outcome(
            lambda: make_pairs(["same"] * 10, [0] * 5 + [1] * 5),
            lambda ds: None if set(ds["label"]) == {0, 1} else "missing a pair kind"),
        "pairs/one_class_refused": lambda: outcome(lambda: make_triplets(["a", "b"], [0, 0]),
                                                   refuse=True),
        "threshold/tied_scores": lambda: outcome(
            lambda: ThresholdClassifier().fit([0.5] * 10, [0, 1] * 5).predict_proba([0.5]),
            lambda p: None if np.isfinite(p).all() else "non-finite"),
        "threshold/one_class_refused": lambda: outcome(
            lambda: ThresholdClassifier().fit([0.1, 0.2], [1, 1]), refuse=True),
        "intent/one_class": lambda: outcome(
            lambda: IntentClassifier(m).fit(["a", "b"], ["x", "x"]).predict(odd),
            lambda p: None if set(p.tolist()) == {"x"} else f"labels {set(p.tolist())}"),
        "intent/odd_and_1MB": lambda: outcome(
            lambda: IntentClassifier(m, mode="knn").fit(odd + [big["rtl"]], list(
                range(len(odd) + 1))).predict_proba(odd),
            lambda p: None if np.isfinite(p).all() else "non-finite"),
        f"intent/{n_empty}_empty": lambda: outcome(
            lambda: IntentClassifier(m, batch_size=256).fit(["a", ""], ["p", "q"]).predict(
                [""] * n_empty),
            lambda p: None if (p == "q").all() else "wrong labels"),
        "dedup/duplicates_only": lambda: outcome(
            lambda: DuplicateDetector(m, threshold=0.99).find_duplicates(["dup"] * 50),
            lambda f: None if len(f) == 50 * 49 // 2 else f"{len(f)} pairs of 1225"),
        f"dedup/{n_empty}_empty_refused_without_top_k": lambda: outcome(
            lambda: DuplicateDetector(m, threshold=0.9, batch_size=256).find_duplicates(
                [""] * n_empty), refuse=True),
        "dedup/nan_embeddings_refused": lambda: outcome(
            lambda: DuplicateDetector(threshold=0.9).find_duplicates(
                np.full((4, 8), np.nan, dtype=np.float32)), refuse=True),
    }
    return _row("hostile_text", cases)


def hostile_folder_row(model: str | None = None) -> dict:
    """Each hostile model or classifier folder is refused naming the file; no code runs."""
    from siamtext import SiamText
    from siamtext.classify import DuplicateDetector, IntentClassifier

    m = _load_model(model)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        good = base / "good"
        m.transformer.save_pretrained(good)
        m.tokenizer.save_pretrained(good)
        if not (good / "tokenizer_config.json").is_file():
            (good / "tokenizer_config.json").write_text("{}")
        marker = base / MARKER_NAME
        cases: dict[str, Callable[[], str | None]] = {}
        for name, (folder, file_name) in hostile_model_folders(good, base / "models").items():
            cases[name] = (lambda f=folder, n=file_name: check_refused(
                lambda: SiamText(f, device="cpu"), n, base / "models" / MARKER_NAME))
        IntentClassifier(m).fit(["lost card", "card gone", "hello", "hi"],
                                ["card", "card", "greet", "greet"]).save(base / "intent")
        DuplicateDetector(m).fit([("a", "a"), ("a", "b"), ("x y", "y x"), ("hi", "card")],
                                 [1, 0, 1, 0]).save(base / "dedup")
        built = hostile_classifier_folders(base / "intent", base / "dedup", base)
        for name, (folder, kind, file_name) in built.items():
            cls = IntentClassifier if kind == "intent" else DuplicateDetector
            cases[name] = (lambda c=cls, f=folder, n=file_name: check_refused(
                lambda: c.load(f, device="cpu"), n, marker))
        return _row("hostile_folders", cases)


def threads_row(model: str | None = None, n_threads: int = 8, calls: int = 4) -> dict:
    """encode, IntentClassifier.predict and DuplicateDetector.is_duplicate from 8 threads
    against serial results; add_examples while others predict."""
    from siamtext.classify import DuplicateDetector, IntentClassifier

    m = _load_model(model)
    texts = [f"{w} number {i}" for i, w in enumerate(["card", "weather", "booking", "hello",
                                                      "transfer", "refund"] * 8)]
    labels = [t.split()[0] for t in texts]
    queries = ["I lost my card", "is it raining", "table for two", "", ODD_TEXTS["emoji"]]

    def same_as_serial(fn: Callable[[], object]) -> Callable[[], str | None]:
        def check() -> str | None:
            serial = fn()
            results = run_threads(lambda i: fn(), n_threads=n_threads, calls=calls)
            bad = sum(not np.array_equal(np.asarray(r), np.asarray(serial)) for r in results)
            return None if bad == 0 else f"{bad} of {len(results)} calls differ from serial"
        return check

    clf = IntentClassifier(m, threshold=0.2).fit(texts, labels)
    det = DuplicateDetector(m, threshold=0.8)

    def add_while_predicting() -> str | None:
        ref = IntentClassifier(m).fit(texts, labels)
        states = [ref.predict_proba(queries)]
        edits = [([f"new intent text {i}" for i in range(5)], "new"),
                 (["another new one", "and one more"], "new")]
        for x, label in edits:  # the serial answers after each edit
            states.append(ref.add_examples(x, label).predict_proba(queries))
        live = IntentClassifier(m).fit(texts, labels)
        t = threading.Thread(target=lambda: [live.add_examples(*e) for e in edits])
        t.start()
        seen = run_threads(lambda i: live.predict_proba(queries), n_threads=n_threads - 1,
                           calls=calls)
        t.join()
        bad = sum(not any(p.shape == s.shape and np.array_equal(p, s) for s in states)
                  for p in seen)
        return None if bad == 0 else f"{bad} of {len(seen)} answers from no whole state"

    cases = {
        "encode": same_as_serial(lambda: m.encode(texts, batch_size=16)),
        "token_ids_mixed_max_length": lambda: (None if all(
            r == m.token_ids(texts, max_length=4 + i % 8) for i, r in enumerate(
                run_threads(lambda i: m.token_ids(texts, max_length=4 + i % 8),
                            n_threads=n_threads, calls=calls)))
            else "truncated with another thread's length"),
        "intent_predict": same_as_serial(lambda: clf.predict(queries)),
        "intent_predict_proba": same_as_serial(lambda: clf.predict_proba(queries)),
        "is_duplicate": same_as_serial(lambda: det.is_duplicate(texts[:24], texts[24:])),
        "add_examples_while_predicting": add_while_predicting,
    }
    return _row("threads", cases)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None,
                        help="model folder or id (default: the packaged all-MiniLM-L6-v2)")
    parser.add_argument("--quick", action="store_true", help="10,000 empty strings, not 100,000")
    args = parser.parse_args()
    rows = [hostile_text_row(args.model, n_empty=10_000 if args.quick else 100_000),
            hostile_folder_row(args.model), threads_row(args.model)]
    for row in rows:
        print(f"{row['row']:<16} {row['ok']:>3}/{row['tried']:<3} "
              f"{100 * row['ok'] / max(row['tried'], 1):5.1f} %")
    print(json.dumps(rows, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
