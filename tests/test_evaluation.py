"""Evaluation metrics against hand-computed values; evaluators on the tiny model."""

from __future__ import annotations

import numpy as np
import pytest

from siamtext.evaluation import (
    IntentEvaluator,
    PairClassificationEvaluator,
    STSEvaluator,
    best_threshold,
    intent_accuracy,
    pair_classification,
    paired_cosine,
    sts_correlation,
)


def test_paired_cosine() -> None:
    a = np.array([[1.0, 0.0], [3.0, 4.0]])
    b = np.array([[0.0, 2.0], [3.0, 4.0]])
    np.testing.assert_allclose(paired_cosine(a, b), [0.0, 1.0], atol=1e-6)


def test_sts_correlation_by_hand() -> None:
    # cosine of (1,0) with (cos t, sin t) is cos t: similarities 1, 0.8, 0.6, 0
    angles = np.arccos([1.0, 0.8, 0.6, 0.0])
    e1 = np.tile([1.0, 0.0], (4, 1))
    e2 = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    out = sts_correlation(e1, e2, [5.0, 4.0, 3.0, 2.0])  # same order: Spearman 1
    assert out["spearman"] == pytest.approx(100.0)
    # Pearson of (1, .8, .6, 0) with (5, 4, 3, 2): r = 0.9466
    x, y = np.array([1, 0.8, 0.6, 0]), np.array([5, 4, 3, 2.0])
    r = np.sum((x - x.mean()) * (y - y.mean())) / np.sqrt(
        np.sum((x - x.mean()) ** 2) * np.sum((y - y.mean()) ** 2))
    assert out["pearson"] == pytest.approx(100 * r, abs=1e-3)
    with pytest.raises(ValueError, match="NaN"):
        sts_correlation(e1, e2, [1.0, float("nan"), 2.0, 3.0])


def test_best_threshold_by_hand() -> None:
    # sorted sims .9 .8 .3 .2 with labels 1 1 0 0: cut between .8 and .3
    assert best_threshold([0.9, 0.8, 0.3, 0.2], [1, 1, 0, 0]) == pytest.approx(0.55)
    # F1 with labels 1 0 1 0: predicting the top 3 gives F1 = 4/5, the best
    assert best_threshold([0.9, 0.8, 0.3, 0.2], [1, 0, 1, 0], "f1") == pytest.approx(0.25)
    # all negatives: a threshold above every similarity (predict nothing) is best
    assert best_threshold([0.9, 0.1], [0, 0]) > 0.9


def test_pair_classification_uses_the_fitted_threshold() -> None:
    # thresholds from the fit split (0.55); on the reported split 0.7 and 0.6 are positive
    out = pair_classification([0.9, 0.8, 0.3, 0.2], [1, 1, 0, 0], [0.7, 0.5, 0.6, 0.1],
                              [1, 0, 0, 0])
    assert out["accuracy_threshold"] == pytest.approx(0.55)
    assert out["accuracy"] == pytest.approx(75.0)  # 0.6 is a false positive
    assert out["f1"] == pytest.approx(100 * 2 / 3)  # tp 1, fp 1, fn 0
    assert out["average_precision"] == pytest.approx(100.0)  # the positive ranks first
    with pytest.raises(ValueError, match=r"labels must be 0 or 1, got other values \[2\]"):
        pair_classification([0.1, 0.2], [0, 2], [0.1], [1])


def test_intent_accuracy_prototype_and_knn() -> None:
    train = np.array([[1.0, 0.0], [1.0, 0.2], [0.0, 1.0], [0.9, 0.5]])
    labels = ["x", "x", "y", "y"]
    test = np.array([[1.0, 0.45], [0.1, 1.0]])
    # prototypes: x ~ (1, .1), y ~ normalised (0,1)+(.87,.48): (.52,.85); (1,.45) is x
    assert intent_accuracy(train, labels, test, ["x", "y"], "prototype") == 100.0
    # 1-NN: (1, .45) is nearest to (.9, .5) of class y
    assert intent_accuracy(train, labels, test, ["x", "y"], "knn", k=1) == 50.0
    # 3-NN: (1, .45) sees y, x, x -> x; (.1, 1) sees y, y, x -> y
    assert intent_accuracy(train, labels, test, ["x", "y"], "knn", k=3) == 100.0
    with pytest.raises(ValueError, match="method must be one of"):
        intent_accuracy(train, labels, test, ["x", "y"], "svm")
    with pytest.raises(ValueError, match="labels do not match embeddings"):
        intent_accuracy(train, labels[:2], test, ["x", "y"])


def test_intent_accuracy_logistic() -> None:
    # Two classes split by the sign of the first coordinate after normalisation; the test
    # points lie on either side, far from the boundary.
    train = np.array([[1.0, 0.1], [2.0, -0.3], [-1.0, 0.2], [-3.0, 0.1]] * 3)
    labels = ["pos", "pos", "neg", "neg"] * 3
    test = np.array([[5.0, 1.0], [-0.5, 0.05], [0.9, -0.4]])
    assert intent_accuracy(train, labels, test, ["pos", "neg", "pos"], "logistic") == 100.0
    assert intent_accuracy(train, labels, test, ["pos", "pos", "pos"],
                           "logistic") == pytest.approx(200 / 3)
    with pytest.raises(ValueError, match="needs at least two classes"):
        intent_accuracy(train[:2], ["pos", "pos"], test, ["pos"] * 3, "logistic")
    # One example of a class: no cross-validation is possible, C=1 is used.
    assert intent_accuracy(train[:3], labels[:3], test, ["pos", "neg", "pos"],
                           "logistic") == 100.0


def test_logistic_head_picks_c_by_cross_validation_on_the_training_set() -> None:
    from siamtext.evaluation import LOGISTIC_CS, _logistic_head

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 5))
    y = (x[:, 0] > 0).astype(int)
    assert _logistic_head(x, y).C in LOGISTIC_CS
    assert _logistic_head(x[:3], np.array([0, 1, 1])).C == 1.0  # a singleton class


def test_evaluators_on_the_tiny_model(tiny_model) -> None:
    sts = STSEvaluator(["a cat", "a dog", "the bank"], ["a cat", "a bird", "rain"], [5, 3, 0])
    out = sts(tiny_model)
    assert set(out) == {"sts_spearman", "sts_pearson"} and sts.primary_metric in out
    pairs = PairClassificationEvaluator((["a", "b"], ["a", "c"], [1, 0]),
                                        (["x", "y"], ["x", "z"], [1, 0]))
    assert set(pairs(tiny_model)) >= {"pairs_accuracy", "pairs_f1", "pairs_average_precision"}
    intent = IntentEvaluator(["a", "b"], ["x", "y"], ["a"], ["x"])
    out = intent(tiny_model)
    assert out["intent_prototype_accuracy"] == 100.0 and "intent_knn_accuracy" in out
    with pytest.raises(ValueError, match="same non-zero length"):
        STSEvaluator(["a"], ["b", "c"], [1.0])
