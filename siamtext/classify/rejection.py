"""Out-of-scope rejection thresholds, as pure functions of validation scores.

An intent classifier rejects an input when its score (the best cosine similarity to the
stored classes, for :class:`~siamtext.classify.IntentClassifier`; a top probability works the
same) is under a threshold. Two ways to choose it on validation data:

* :func:`threshold_for_recall`: the highest threshold that keeps a share of in-scope inputs.
* :func:`threshold_for_accuracy`: the threshold of best accuracy when out-of-scope inputs are
  labelled: an in-scope input is right when it is accepted and classified correctly, an
  out-of-scope one when it is rejected.
"""

from __future__ import annotations

import numpy as np

from siamtext.classify.threshold import sweep_thresholds


def threshold_for_recall(inscope: np.ndarray, target_recall: float) -> tuple[float, float]:
    """The highest threshold that accepts at least ``target_recall`` of the in-scope scores.

    Between the last score dropped and the first one kept, the midpoint (so that a slightly
    different score of the same input is decided the same way).

    Args:
        inscope: ``(n,)`` scores of in-scope validation inputs (``n >= 1``).
        target_recall: Share to accept, in (0, 1].

    Returns:
        ``(threshold, in_scope_recall)``: the recall it reaches on ``inscope``.
    """
    inscope = np.sort(np.asarray(inscope, dtype=np.float64))
    drop = int(np.floor((1.0 - target_recall) * len(inscope) + 1e-9))
    drop = min(drop, len(inscope) - 1)
    t = float(inscope[drop])
    if drop > 0 and inscope[drop - 1] < t:
        t = float((inscope[drop - 1] + t) / 2)
    return t, float((inscope >= t).mean())


def threshold_for_accuracy(scores: np.ndarray, right: np.ndarray, oos: np.ndarray
                           ) -> tuple[float, float]:
    """The threshold of best validation accuracy.

    Args:
        scores: ``(n,)`` validation scores.
        right: ``(n,)`` bool, the in-scope inputs whose predicted class is correct.
        oos: ``(n,)`` bool, the out-of-scope inputs (both kinds must be present).

    Returns:
        ``(threshold, accuracy)``; inputs scoring at or above the threshold are accepted.
    """
    scores = np.asarray(scores, dtype=np.float64)
    # accepted-and-right counts play the role of true positives in the sweep
    c = sweep_thresholds(scores, np.asarray(right, dtype=np.int64))
    oos_below = np.searchsorted(np.sort(scores[oos]), c["threshold"],
                                side="left").astype(np.float64)
    accuracy = (c["tp"] + oos_below) / len(scores)
    m = int(np.argmax(accuracy))
    return float(c["threshold"][m]), float(accuracy[m])


def fit_rejection(best: np.ndarray, oos: np.ndarray, right: np.ndarray | None,
                  target_recall: float | None) -> tuple[float, dict]:
    """A rejection threshold from validation scores, and how it was chosen.

    Args:
        best: ``(n,)`` validation scores.
        oos: ``(n,)`` bool, the out-of-scope inputs.
        right: ``(n,)`` bool, the in-scope inputs classified correctly (needed without
            ``target_recall``).
        target_recall: Use :func:`threshold_for_recall` on the in-scope scores; ``None``:
            :func:`threshold_for_accuracy`.

    Returns:
        ``(threshold, info)``, ``info`` a JSON-ready dict with ``method`` and what it reached.

    Raises:
        ValueError: If the inputs the method needs are missing (no in-scope inputs for a
            recall; not both kinds for accuracy).
    """
    if target_recall is not None:
        if oos.all():
            raise ValueError("target_recall needs in-scope examples in X, got none")
        t, recall = threshold_for_recall(best[~oos], target_recall)
        return t, {"method": "target_recall", "target_recall": float(target_recall),
                   "in_scope_recall": recall}
    if not oos.any() or oos.all():
        raise ValueError("y must include both in-scope examples and out-of-scope ones "
                         "labelled unknown_label")
    t, accuracy = threshold_for_accuracy(best, right, oos)
    return t, {"method": "accuracy", "accuracy": accuracy}
