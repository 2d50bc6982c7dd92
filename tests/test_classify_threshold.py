"""ThresholdClassifier: threshold sweep against brute force, calibration, sklearn API."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import cross_val_score

from siamtext.classify.threshold import (
    ThresholdClassifier,
    best_threshold,
    check_similarity_threshold,
    sweep_thresholds,
)


def _metrics(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    tp = float(((pred == 1) & (y == 1)).sum())
    fp = float(((pred == 1) & (y == 0)).sum())
    fn = float(((pred == 0) & (y == 1)).sum())
    tn = float(((pred == 0) & (y == 0)).sum())
    return {
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0,
        "accuracy": (tp + tn) / len(y),
        "precision": tp / (tp + fp) if tp + fp else 1.0,
        "recall": tp / (tp + fn) if tp + fn else 0.0,
        "tp": tp,
    }


def _brute(scores: np.ndarray, y: np.ndarray, objective: str, target: float | None) -> float:
    """Best objective over every decision `score >= t`, t in the scores and above them."""
    best = -np.inf
    for t in list(np.unique(scores)) + [np.inf]:
        m = _metrics((scores >= t).astype(int), y)
        if objective in ("f1", "accuracy"):
            value = m[objective]
        elif objective == "precision_at_recall":
            value = m["precision"] if m["recall"] >= target else -np.inf
        else:
            value = m["recall"] if m["precision"] >= target and m["tp"] > 0 else -np.inf
        best = max(best, value)
    return best


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("objective,target", [
    ("f1", None), ("accuracy", None), ("precision_at_recall", 0.8),
    ("recall_at_precision", 0.6),
])
def test_threshold_matches_brute_force_with_ties(seed, objective, target):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 120)
    # coarse scores: many ties, positives a little higher
    scores = np.round(rng.normal(0.5 * y, 0.5) * 4) / 4
    clf = ThresholdClassifier(objective=objective, target=target).fit(scores, y)
    expected = _brute(scores, y, objective, target)
    assert clf.best_score_ == pytest.approx(expected)
    achieved = _metrics(clf.predict(scores), y)
    if objective in ("f1", "accuracy"):
        assert achieved[objective] == pytest.approx(expected)
    elif objective == "precision_at_recall":
        assert achieved["recall"] >= target
        assert achieved["precision"] == pytest.approx(expected)
    else:
        assert achieved["precision"] >= target
        assert achieved["recall"] == pytest.approx(expected)


def test_threshold_is_a_midpoint_between_distinct_scores():
    clf = ThresholdClassifier().fit([0.1, 0.4, 0.8, 0.9], [0, 0, 1, 1])
    assert clf.threshold_ == pytest.approx(0.6)
    assert clf.best_score_ == 1.0
    assert clf.predict([0.4, 0.59, 0.61, 0.8]).tolist() == [0, 0, 1, 1]
    np.testing.assert_allclose(clf.decision_function([0.7]), [0.1])


def test_ties_cannot_inflate_the_score():
    # one tied score value with mixed labels: the only choices are all or none positive
    clf = ThresholdClassifier(objective="accuracy").fit([0.5] * 4, [1, 0, 0, 0])
    assert clf.best_score_ == pytest.approx(0.75)  # all negative, not a split inside the tie
    c = sweep_thresholds(np.array([0.5, 0.5, 0.7]), np.array([1, 0, 1]))
    np.testing.assert_allclose(c["threshold"][:2], [0.5, 0.6])
    np.testing.assert_array_equal(c["tp"], [2, 1, 0])
    np.testing.assert_array_equal(c["fp"], [1, 0, 0])


def test_best_threshold_precision_at_recall_by_hand():
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    y = np.array([0, 1, 0, 1, 0, 1])
    # recall >= 2/3 needs t <= 0.4: precision 2/3 at t in (0.3, 0.4]
    t, value = best_threshold(scores, y, "precision_at_recall", 0.6)
    assert t == pytest.approx(0.35)
    assert value == pytest.approx(2 / 3)


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_calibration_is_monotone_and_a_probability(method):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    scores = rng.normal(y * 1.0, 0.7)
    clf = ThresholdClassifier(calibration=method).fit(scores, y)
    grid = np.linspace(-3, 4, 200)
    proba = clf.predict_proba(grid)
    assert proba.shape == (200, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert (np.diff(proba[:, 1]) >= -1e-12).all()
    assert proba[0, 1] < 0.2 and proba[-1, 1] > 0.8


def test_platt_matches_empirical_rate_roughly():
    rng = np.random.default_rng(1)
    scores = rng.uniform(0, 1, 4000)
    y = (rng.uniform(0, 1, 4000) < scores).astype(int)  # P(y=1 | s) = s
    p = ThresholdClassifier().fit(scores, y).predict_proba([0.5])[0, 1]
    assert p == pytest.approx(0.5, abs=0.05)


def test_sklearn_api_and_cross_val_score():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    X = rng.normal(y * 2.0, 0.5).reshape(-1, 1)
    est = ThresholdClassifier(objective="accuracy")
    assert not hasattr(est, "threshold_")
    assert clone(est).get_params()["objective"] == "accuracy"
    scores = cross_val_score(est, X, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.9
    assert est.fit(X, y) is est
    assert est.score(X, y) > 0.9


def test_string_labels_use_the_second_sorted_class_as_positive():
    clf = ThresholdClassifier().fit([0.1, 0.9, 0.2, 0.8], ["diff", "same", "diff", "same"])
    assert clf.classes_.tolist() == ["diff", "same"]
    assert clf.predict([0.95, 0.05]).tolist() == ["same", "diff"]


def test_not_fitted():
    clf = ThresholdClassifier()
    for method in (clf.predict, clf.predict_proba, clf.decision_function):
        with pytest.raises(NotFittedError, match="not fitted"):
            method([0.5])


@pytest.mark.parametrize("kwargs,X,y,error,match", [
    ({}, [0.1, 0.2, 0.3], [0, 1, 2], ValueError, "exactly two classes"),
    ({}, [0.1, 0.2], [1, 1], ValueError, "single class"),
    ({}, [0.1, 0.2, 0.3], [0, 1], ValueError, "same length"),
    ({}, [[0.1, 0.2], [0.3, 0.4]], [0, 1], ValueError, "shape"),
    ({}, [0.1, float("nan")], [0, 1], ValueError, "NaN"),
    ({}, [("a", "b"), ("c", "d")], [0, 1], TypeError, "numeric scores"),
    ({"objective": "auc"}, [0.1, 0.2], [0, 1], ValueError, "objective must be one of"),
    ({"calibration": "beta"}, [0.1, 0.2], [0, 1], ValueError, "calibration must be one of"),
    ({"objective": "precision_at_recall"}, [0.1, 0.2], [0, 1], ValueError, "target must be"),
    ({"objective": "recall_at_precision", "target": 1.5}, [0.1, 0.2], [0, 1], ValueError,
     "target must be"),
    ({"objective": "recall_at_precision", "target": 1.0}, [0.9, 0.1, 0.5], [0, 1, 1], ValueError,
     "not reached"),
    ({"batch_size": 0}, [0.1, 0.2], [0, 1], ValueError, "batch_size"),
])
def test_fit_errors_leave_the_fitted_state(kwargs, X, y, error, match):
    clf = ThresholdClassifier().fit([0.1, 0.9], [0, 1])
    before = clf.threshold_
    clf.set_params(**kwargs)
    with pytest.raises(error, match=match):
        clf.fit(X, y)
    assert clf.threshold_ == before


def test_check_similarity_threshold():
    assert check_similarity_threshold(1) == 1.0
    with pytest.raises(ValueError, match=r"range \[-1, 1\], got 1.5"):
        check_similarity_threshold(1.5)
    with pytest.raises(TypeError, match="must be a number"):
        check_similarity_threshold("0.5")


def test_text_pairs_with_an_encoder(tiny_model):
    pairs = [("I lost my card", "I lost my card"), ("I lost my card", "what is my balance"),
             ("transfer money", "transfer money"), ("transfer money", "my card was stolen")]
    clf = ThresholdClassifier(encoder=tiny_model).fit(pairs, [1, 0, 1, 0])
    emb = tiny_model.encode(["I lost my card", "what is my balance"])
    expected = float(emb[0] @ emb[1] / np.linalg.norm(emb[0]) / np.linalg.norm(emb[1]))
    np.testing.assert_allclose(clf.similarity(pairs)[:2], [1.0, expected], atol=1e-5)
    scores = clf.similarity(pairs)
    assert clf.predict(pairs).tolist() == (scores >= clf.threshold_).astype(int).tolist()
    with pytest.raises(TypeError, match=r"X\[0\] must be a \(text, text\) pair"):
        clf.predict([("only one",)])
    with pytest.raises(TypeError, match="list of \\(text, text\\) pairs"):
        clf.predict("not pairs")
