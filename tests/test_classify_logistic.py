"""IntentClassifier(mode="logistic"): the head against scikit-learn, C by cross-validation,
editing, rejection and persistence without pickle."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from siamtext.classify import logistic
from siamtext.classify.intent import IntentClassifier
from tests.test_classify_intent import toy


def unit(X: np.ndarray) -> np.ndarray:
    return X / np.linalg.norm(X, axis=1, keepdims=True)


@pytest.mark.parametrize("n_classes", [2, 4])
def test_probabilities_are_scikit_learns(n_classes):
    """Multinomial, and binary kept as two rows [-w/2, w/2] whose softmax is the sigmoid."""
    X, y, _ = toy(n_classes=n_classes, noise=1.5)
    Xq, _, _ = toy(n_classes=n_classes, noise=1.5, sample_seed=5)
    clf = IntentClassifier(mode="logistic", C=3.0).fit(X, y)
    ref = LogisticRegression(C=3.0, max_iter=1000).fit(unit(X).astype(np.float32), y)
    np.testing.assert_allclose(clf.predict_proba(Xq), ref.predict_proba(unit(Xq)), atol=1e-5)
    assert clf.predict(Xq).tolist() == ref.predict(unit(Xq)).tolist()
    assert clf.head_.coef.shape == (n_classes, 32) and clf.C_ == 3.0
    assert "cv_scores" not in clf.head_.info  # C was given: no cross-validation


def test_binary_rows_by_hand():
    # w = (2, 0), b = 1: p(class 1 | q) = sigmoid(2 q0 + 1); the two rows give the same
    head = logistic.LogisticHead(torch.tensor([[-1.0, 0.0], [1.0, 0.0]]),
                                 torch.tensor([-0.5, 0.5]), C=1.0)
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.softmax(head.logits(q), dim=1)[:, 1]
    np.testing.assert_allclose(p.numpy(), [1 / (1 + np.exp(-3.0)), 1 / (1 + np.exp(-1.0))],
                               rtol=1e-6)


def imbalanced() -> tuple[np.ndarray, np.ndarray]:
    """Toy rows: 8 of intent_0, 2 of intent_1."""
    X, y, _ = toy(n_classes=2, per_class=8, noise=1.0)
    keep = np.r_[0:8, 8:10]
    return X[keep], y[keep]


def test_balanced_weights_are_sample_weights_by_hand():
    # 10 rows, 2 classes: n / (n_classes * n_c) = 10 / 16 for the 8, 10 / 4 for the 2
    X, y = imbalanced()
    weights = np.where(y == "intent_0", 10 / 16, 10 / 4)
    ref = LogisticRegression(C=3.0, max_iter=1000).fit(unit(X).astype(np.float32), y,
                                                       sample_weight=weights)
    clf = IntentClassifier(mode="logistic", C=3.0).fit(X, y)
    assert clf.class_weight == "balanced" and clf.head_.info["class_weight"] == "balanced"
    np.testing.assert_allclose(clf.predict_proba(X), ref.predict_proba(unit(X)), atol=1e-5)
    plain = IntentClassifier(mode="logistic", C=3.0, class_weight=None).fit(X, y)
    ref = LogisticRegression(C=3.0, max_iter=1000).fit(unit(X).astype(np.float32), y)
    np.testing.assert_allclose(plain.predict_proba(X), ref.predict_proba(unit(X)), atol=1e-5)
    # the small class gets more of every query than it does unweighted
    assert (clf.predict_proba(X)[:, 1] > plain.predict_proba(X)[:, 1]).all()


def test_class_weight_is_checked_saved_and_old_folders_load_unweighted(tmp_path):
    X, y = imbalanced()
    clf = IntentClassifier(mode="logistic", C=3.0, class_weight=None).fit(X, y)
    before = clf.head_.coef.clone()
    for bad in ("balance", "auto", {"intent_0": 1.0}):
        clf.set_params(class_weight=bad)
        with pytest.raises(ValueError, match="class_weight must be 'balanced' or None"):
            clf.fit(X, y)
        assert torch.equal(clf.head_.coef, before)
    clf.set_params(class_weight=None)
    folder = clf.save(tmp_path / "clf")
    assert IntentClassifier.load(folder).class_weight is None
    balanced = IntentClassifier(mode="logistic", C=3.0).fit(X, y).save(tmp_path / "bal")
    assert IntentClassifier.load(balanced).class_weight == "balanced"
    # a folder saved before class_weight existed was fitted unweighted, and refits so
    payload = json.loads((folder / "intent_classifier.json").read_text())
    del payload["params"]["class_weight"]
    (folder / "intent_classifier.json").write_text(json.dumps(payload))
    old = IntentClassifier.load(folder)
    assert old.class_weight is None
    old.add_examples(X[8:9], "intent_1")
    plain = IntentClassifier(mode="logistic", C=3.0, class_weight=None).fit(
        np.concatenate([X, X[8:9]]), np.append(y, "intent_1"))
    np.testing.assert_allclose(old.predict_proba(X), plain.predict_proba(X), atol=1e-5)


def test_C_is_chosen_by_stratified_cross_validation():
    X, y, _ = toy(n_classes=4, per_class=6, noise=2.0)
    clf = IntentClassifier(mode="logistic").fit(X, y)
    info = clf.head_.info
    assert info["folds"] == 5 and set(info["cv_scores"]) == {"0.1", "1", "10", "100", "1000"}
    # the same folds by hand give the same accuracies
    x = unit(X).astype(np.float32)
    codes = np.unique(y, return_inverse=True)[1]
    for c in (0.1, 10.0):
        # the folds are uneven (5 or 4 rows of a class): the weights are the fold's own
        model = LogisticRegression(C=c, max_iter=1000, class_weight="balanced")
        accs = [(model.fit(x[tr], codes[tr]).predict(x[te]) == codes[te]).mean()
                for tr, te in StratifiedKFold(5, shuffle=True, random_state=0).split(x, codes)]
        assert info["cv_scores"][f"{c:g}"] == pytest.approx(np.mean(accs), abs=1e-4)
    assert info["cv_scores"][f"{clf.C_:g}"] == max(info["cv_scores"].values())


def test_cross_validation_needs_two_examples_per_class_and_state_is_kept():
    X, y, _ = toy(n_classes=3)
    clf = IntentClassifier(mode="logistic", C=1.0).fit(X, y)
    before = clf.head_.coef.clone()
    clf.set_params(C=None)
    y_one = np.array(list(y[:12]) + ["lonely"])
    with pytest.raises(ValueError, match="at least 2 examples per class.*lonely.*C="):
        clf.fit(X[:13], y_one)
    assert torch.equal(clf.head_.coef, before) and len(clf.classes_) == 3
    # with C given, a one-example class is fine
    assert IntentClassifier(mode="logistic", C=10.0).fit(X[:13], y_one).classes_[-1] == "lonely"
    for bad in (0, -1.0, float("nan"), "10", True):
        with pytest.raises(ValueError, match="C must be a positive finite number"):
            IntentClassifier(mode="logistic", C=bad).fit(X, y)


def test_add_examples_refits_the_head_and_logs_its_time(caplog):
    X, y, centres = toy(n_classes=4)
    clf = IntentClassifier(mode="logistic").fit(X, y)
    chosen = clf.C_
    far = -centres[:1]  # the opposite of intent_0: nothing stored is near it
    assert clf.predict(far).tolist() != ["new"]
    with caplog.at_level(logging.INFO, logger="siamtext.classify.logistic"):
        clf.add_examples(far + 0.01, "new")
    assert "fitted in" in caplog.text and "5 classes" in caplog.text
    assert clf.predict(far).tolist() == ["new"]
    assert clf.head_.coef.shape == (5, 32) and clf.C_ == chosen  # refit keeps the chosen C
    assert clf.predict(centres).tolist() == [f"intent_{c}" for c in range(4)]
    # a new example of an existing class moves its decision region
    clf2 = IntentClassifier(mode="logistic", C=10.0).fit(X, y)
    point = (centres[1] + centres[2]) / 2
    side = clf2.predict(point[None])[0]
    other = "intent_2" if side == "intent_1" else "intent_1"
    clf2.add_examples(np.repeat(point[None], 6, axis=0), other)
    assert clf2.predict(point[None]).tolist() == [other]


def test_remove_class_refits_and_the_class_is_gone():
    X, y, centres = toy(n_classes=4)
    clf = IntentClassifier(mode="logistic", C=10.0, unknown_label="oos").fit(X, y)
    clf.remove_class("intent_1")
    assert clf.head_.coef.shape == (3, 32)
    assert clf.classes_.tolist() == ["intent_0", "intent_2", "intent_3"]
    assert "intent_1" not in clf.predict(centres).tolist()
    assert clf.predict_proba(centres).shape == (4, 3)
    before = clf.head_.coef.clone()
    with pytest.raises(ValueError, match="removed with remove_class.*intent_1"):
        clf.fit_threshold(centres[:2], ["intent_1", "oos"])
    with pytest.raises(ValueError, match="'intent_1' is not a stored class"):
        clf.remove_class("intent_1")
    assert torch.equal(clf.head_.coef, before) and not hasattr(clf, "threshold_")


def test_one_class_then_a_second():
    clf = IntentClassifier(mode="logistic")
    clf.add_examples(np.array([[1.0, 0.0], [0.9, 0.1]]), "a")
    assert clf.predict(np.array([[0.0, 1.0]])).tolist() == ["a"]  # constant head
    np.testing.assert_allclose(clf.predict_proba(np.array([[0.0, 1.0]])), [[1.0]])
    clf.add_examples(np.array([[0.0, 1.0], [0.1, 0.9]]), "b")
    assert clf.C_ == logistic.DEFAULT_C
    assert clf.predict(np.array([[0.05, 1.0], [1.0, 0.05]])).tolist() == ["b", "a"]


def test_rejection_uses_the_nearest_stored_example():
    X, y, centres = toy(n_classes=4)
    clf = IntentClassifier(mode="logistic", C=10.0, unknown_label="oos").fit(X, y)
    knn = IntentClassifier(mode="knn").fit(X, y)
    np.testing.assert_allclose(clf.similarity(centres), knn.similarity(centres), atol=1e-6)
    rng = np.random.default_rng(7)
    far = rng.normal(size=(8, 32)).astype(np.float32)
    clf.fit_threshold(np.concatenate([centres, far]), [f"intent_{c}" for c in range(4)]
                      + ["oos"] * 8)
    assert clf.predict(centres).tolist() == [f"intent_{c}" for c in range(4)]
    assert set(clf.predict(far).tolist()) == {"oos"}


def test_save_load_without_pickle_predicts_identically(tmp_path):
    X, y, centres = toy(n_classes=4)
    clf = IntentClassifier(mode="logistic").fit(X, y)
    clf.add_examples(-centres[:1], "new")
    folder = clf.save(tmp_path / "clf")
    assert not list(folder.rglob("*.pkl")) and not list(folder.rglob("*.joblib"))
    loaded = IntentClassifier.load(folder)
    assert loaded.mode == "logistic" and loaded.C_ == clf.C_
    assert loaded.head_.info["C"] == clf.C_
    assert np.array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    assert loaded.predict(X).tolist() == clf.predict(X).tolist()
    # a head that does not fit the stored classes is refused, naming the file
    from safetensors.torch import load_file, save_file

    path = folder / "intent_classifier.safetensors"
    tensors = load_file(str(path))
    tensors["head_coef"] = tensors["head_coef"][:2].contiguous()
    save_file(tensors, str(path))
    with pytest.raises(ValueError, match="intent_classifier.safetensors.*logistic head has"):
        IntentClassifier.load(folder)
    payload = json.loads((folder / "intent_classifier.json").read_text())
    del payload["head_"]
    (folder / "intent_classifier.json").write_text(json.dumps(payload))
    with pytest.raises(ValueError, match="needs 'head_'"):
        IntentClassifier.load(folder)


def test_end_to_end_on_texts(tiny_model, tmp_path):
    import csv
    from importlib import resources

    path = resources.files("siamtext") / "resources" / "demo_intents.csv"
    with path.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    texts, labels = [r["text"] for r in rows], [r["label"] for r in rows]
    clf = IntentClassifier(tiny_model, mode="logistic").fit(texts, labels)
    assert (clf.predict(texts) == np.asarray(labels)).mean() > 0.5  # a random tiny tower
    clf.add_examples(["where is my parcel", "my package has not arrived"], "delivery")
    # a random tiny tower embeds every text alike, so only the refit itself is checked here
    # (the toy tests above check what it predicts)
    assert clf.classes_[-1] == "delivery" and clf.head_.coef.shape[0] == len(clf.classes_)
    proba = clf.predict_proba(["where is my parcel"])
    assert proba.shape == (1, len(clf.classes_)) and proba.sum() == pytest.approx(1, abs=1e-5)
    loaded = IntentClassifier.load(clf.save(tmp_path / "intent"), device="cpu")
    np.testing.assert_allclose(loaded.predict_proba(texts[:20]), clf.predict_proba(texts[:20]),
                               atol=1e-6)
