"""Intent heads and rejection scores on fixed embeddings: what the classifier does with them.

Two questions ``benchmarks/intent_quality.py`` raised, answered on the same Banking77 splits
(the same seeded classes and rows) without retraining anything but the heads:

* ``added``: 10 classes added from 5 examples beside 67 of 20 (``intent_quality.py
  --only newclasses``). Accuracy on the added classes' test rows and on all, for prototype,
  k-NN and logistic mode, the last with ``class_weight`` ``"balanced"`` and ``None``; and the
  same with 20 examples of each added class, the ceiling that more examples would give.
* ``rejection``: 19 unknown classes, 58 known of 20 rows (``--only oos``). The AUROC of
  in-scope against out-of-scope test rows for several scores of the stored examples: the best
  cosine similarity (what :class:`siamtext.classify.IntentClassifier` thresholds), the mean
  of the top 3, the best prototype similarity, a Mahalanobis distance to the class means
  (shared Ledoit-Wolf covariance), and the logistic head's top probability and energy.

Each is measured on the base model's embeddings ("zero-shot") and, with ``--tuned``, on
those of the tower fine-tuned the way ``intent_quality.py`` fine-tunes it for that part
(the recipe its selection chose there: SupCon for ``rejection``, batch-hard for ``added``).

    python benchmarks/intent_heads.py            # zero-shot: about 2 minutes on 2 cores
    python benchmarks/intent_heads.py --tuned    # and fine-tuned: about 12 minutes more

Results: ``benchmarks/results/intent_heads.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_banking77, table, write_results  # noqa: E402
from intent_quality import by_class, model_path, shuffled, take  # noqa: E402

from siamtext import SiamText  # noqa: E402
from siamtext.classify import IntentClassifier  # noqa: E402
from siamtext.recipes import FEWSHOT_RECIPES  # noqa: E402

RECIPES = {r.name: r for r in FEWSHOT_RECIPES}


def embed(model: SiamText, texts: list[str]) -> np.ndarray:
    return np.asarray(model.encode(texts, batch_size=128))


HEADS = {"prototype": {"mode": "prototype"}, "knn": {"mode": "knn"},
         "logistic balanced": {"mode": "logistic", "C": 10.0},
         "logistic unweighted": {"mode": "logistic", "C": 10.0, "class_weight": None}}


def added(model: SiamText, groups: dict[str, list[str]], test: tuple[list, list]) -> dict:
    """Each head with the new classes added from 5 examples, and (the ceiling of more
    examples, ``"... 20 added"``) from 20."""
    classes = shuffled(groups, 0)
    new, base = classes[:10], classes[10:]
    x, y = take(groups, 20, 0, base)
    queries = embed(model, test[0])
    gold = np.asarray(test[1], dtype=object)
    is_new = np.isin(gold, new)
    out = {}
    for shots in (5, 20):
        nx, ny = take(groups, shots, 1, new)
        stored = embed(model, x + nx)
        for name, params in HEADS.items():
            # the base classes first, then each new class added, as intent_quality.py does
            clf = IntentClassifier(**params).fit(stored[: len(x)], y)
            for c in new:
                rows = [len(x) + i for i, v in enumerate(ny) if v == c]
                clf.add_examples(stored[rows], c)
            pred = clf.predict(queries).astype(object)
            key = name if shots == 5 else f"{name}, {shots} added"
            out[key] = {"added": round(float((pred[is_new] == gold[is_new]).mean() * 100), 2),
                        "all": round(float((pred == gold).mean() * 100), 2)}
    return out


def rejection(model: SiamText, groups: dict[str, list[str]], test: tuple[list, list]) -> dict:
    from sklearn.covariance import LedoitWolf
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    classes = shuffled(groups, 0)
    known = classes[len(classes) // 4:]
    x, y = take(groups, 20, 0, known)
    X, Q = embed(model, x), embed(model, test[0])
    labels = np.asarray(y)
    inscope = np.isin(np.asarray(test[1]), known)
    sim = Q @ X.T
    means = np.stack([X[labels == c].mean(axis=0) for c in known])
    protos = means / np.linalg.norm(means, axis=1, keepdims=True)
    index = {c: i for i, c in enumerate(known)}
    centred = X - means[[index[c] for c in y]]
    precision = LedoitWolf().fit(centred).precision_
    mahalanobis = np.stack([np.einsum("ij,jk,ik->i", Q - m, precision, Q - m) for m in means], 1)
    head = LogisticRegression(C=10.0, max_iter=1000).fit(X, labels)
    logits = head.decision_function(Q)
    scores = {
        "best cosine (IntentClassifier)": sim.max(axis=1),
        "mean of top 3 cosines": np.sort(sim, axis=1)[:, -3:].mean(axis=1),
        "best prototype cosine": (Q @ protos.T).max(axis=1),
        "Mahalanobis (Ledoit-Wolf)": -mahalanobis.min(axis=1),
        "logistic top probability": head.predict_proba(Q).max(axis=1),
        "logistic energy": np.log(np.exp(logits).sum(axis=1)),
    }
    return {name: round(float(roc_auc_score(inscope, s)), 4) for name, s in scores.items()}


def tuned(recipe: str, groups: dict[str, list[str]], classes: list[str]) -> SiamText:
    model = SiamText(model_path())
    x, y = take(groups, 20, 0, classes)
    start = time.perf_counter()
    RECIPES[recipe].train(model, x, y, seed=0)
    print(f"  {recipe} on {len(x)} rows: {time.perf_counter() - start:.1f} s", flush=True)
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tuned", action="store_true",
                        help="also fine-tune the tower per part (batch-hard, SupCon)")
    cfg = parser.parse_args(argv)
    train, test = load_banking77("train"), load_banking77("test")
    groups = by_class(*train)
    base = SiamText(model_path())
    results: dict = {"zero_shot": {"added": added(base, groups, test),
                                   "rejection": rejection(base, groups, test)}}
    if cfg.tuned:
        classes = shuffled(groups, 0)
        results["tuned"] = {
            "added": added(tuned("batch_hard", groups, classes[10:]), groups, test),
            "rejection": rejection(tuned("supcon", groups, classes[len(classes) // 4:]),
                                   groups, test)}
    towers = list(results)
    print(table(["head", *(f"{t} added" for t in towers), *(f"{t} all" for t in towers)],
                [[h, *(results[t]["added"][h]["added"] for t in towers),
                  *(results[t]["added"][h]["all"] for t in towers)]
                 for h in results["zero_shot"]["added"]]))
    print()
    print(table(["rejection score", *(f"{t} AUROC" for t in towers)],
                [[s, *(results[t]["rejection"][s] for t in towers)]
                 for s in results["zero_shot"]["rejection"]]))
    path = write_results("intent_heads", {"settings": vars(cfg), "results": results})
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
