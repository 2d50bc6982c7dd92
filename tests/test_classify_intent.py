"""IntentClassifier: toy classes on synthetic embeddings, rejection, editing, persistence."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import cross_val_score

from siamtext.classify.intent import IntentClassifier


def toy(n_classes: int = 5, per_class: int = 6, dim: int = 32, noise: float = 0.3,
        seed: int = 0, sample_seed: int | None = None
        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Examples scattered around random class centres (from ``seed``; the scatter from
    ``sample_seed`` when given): (X, y, centres)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim))
    if sample_seed is not None:
        rng = np.random.default_rng(sample_seed)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    y = np.repeat(np.arange(n_classes), per_class)
    X = centres[y] + noise * rng.normal(size=(len(y), dim)) / np.sqrt(dim)
    names = np.array([f"intent_{c}" for c in range(n_classes)])
    return X.astype(np.float32), names[y], centres.astype(np.float32)


@pytest.mark.parametrize("mode", ["prototype", "knn"])
def test_recovers_toy_classes(mode):
    X, y, centres = toy()
    clf = IntentClassifier(mode=mode, n_neighbors=3).fit(X, y)
    assert clf.classes_.tolist() == [f"intent_{c}" for c in range(5)]
    assert clf.predict(centres).tolist() == clf.classes_.tolist()
    Xq, yq, _ = toy(noise=0.3, sample_seed=3)
    assert (clf.predict(Xq) == yq).mean() == 1.0
    proba = clf.predict_proba(centres)
    assert proba.shape == (5, 5)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    labels, probs = clf.top_k(centres, k=2)
    assert labels.shape == (5, 2) and (labels[:, 0] == clf.predict(centres)).all()
    assert (probs[:, 0] >= probs[:, 1]).all()


def test_prototype_is_the_normalised_mean():
    X = np.array([[1, 0], [0, 1], [-1, 0]], dtype=np.float32)
    clf = IntentClassifier().fit(X, ["a", "a", "b"])
    np.testing.assert_allclose(clf.prototypes_.numpy(), [[0.70710678, 0.70710678], [-1, 0]],
                               atol=1e-6)
    # similarity of (1, 0) to prototype a is cos 45 degrees, to b is -1
    np.testing.assert_allclose(clf.similarity(np.array([[1.0, 0.0]])), [0.70710678], atol=1e-6)
    p = clf.predict_proba(np.array([[1.0, 0.0]]))[0]
    expected = np.exp(0.70710678 / 0.05) / (np.exp(0.70710678 / 0.05) + np.exp(-1 / 0.05))
    assert p[0] == pytest.approx(expected)


def test_knn_votes_by_hand():
    X = np.array([[1, 0], [0.9, 0.1], [0, 1]], dtype=np.float32)
    clf = IntentClassifier(mode="knn", n_neighbors=2, temperature=1e6).fit(X, [0, 1, 2])
    # two nearest of (1, 0) are examples 0 and 1, with equal weight at a huge temperature
    np.testing.assert_allclose(clf.predict_proba(np.array([[1.0, 0.0]]))[0], [0.5, 0.5, 0.0],
                               atol=1e-5)


def test_rejects_far_away_inputs():
    X, y, centres = toy()
    clf = IntentClassifier(threshold=0.5, unknown_label="oos").fit(X, y)
    far = -centres.mean(axis=0, keepdims=True)
    assert clf.predict(far).tolist() == ["oos"]
    assert clf.predict(np.vstack([centres[:1], far])).tolist() == ["intent_0", "oos"]
    ints = IntentClassifier(threshold=0.5).fit(X, np.repeat(np.arange(5), 6))
    out = ints.predict(np.vstack([centres[:1], far]))
    assert out.tolist() == [0, "unknown"] and out.dtype == object


def test_fit_threshold_with_out_of_scope_examples():
    X, y, centres = toy()
    clf = IntentClassifier(unknown_label="oos").fit(X, y)
    Xv, yv, _ = toy(noise=0.5, sample_seed=1)
    rng = np.random.default_rng(5)
    oos = rng.normal(size=(20, 32)).astype(np.float32)  # random: low similarity to all classes
    clf.fit_threshold(np.vstack([Xv, oos]), list(yv) + ["oos"] * 20)
    assert clf.threshold_info_["method"] == "accuracy"
    sims_in, sims_out = clf.similarity(Xv), clf.similarity(oos)
    assert sims_out.max() < clf.threshold_ <= sims_in.min()
    assert clf.threshold_info_["accuracy"] == 1.0
    assert set(clf.predict(oos).tolist()) == {"oos"}


def test_fit_threshold_accuracy_matches_brute_force():
    X, y, _ = toy(noise=2.0, sample_seed=1)
    clf = IntentClassifier(unknown_label="oos").fit(X, y)
    Xv, yv, _ = toy(noise=2.0, sample_seed=2)
    oos = np.random.default_rng(3).normal(size=(30, 32)).astype(np.float32)
    Xall, yall = np.vstack([Xv, oos]), np.array(list(yv) + ["oos"] * 30)
    base = clf.predict(Xall)  # no threshold yet: nothing rejected
    clf.fit_threshold(Xall, yall)
    sims = clf.similarity(Xall)
    best = max(
        (np.where(sims >= t, base, "oos") == yall).mean() for t in [*np.unique(sims), np.inf]
    )
    assert 0.5 < best < 1.0  # a real trade-off
    assert clf.threshold_info_["accuracy"] == pytest.approx(best)
    assert (clf.predict(Xall) == yall).mean() == pytest.approx(best)


def test_fit_threshold_by_target_recall():
    X, y, _ = toy()
    Xv, yv, _ = toy(noise=0.8, sample_seed=7)
    clf = IntentClassifier().fit(X, y).fit_threshold(Xv, target_recall=0.9)
    accepted = (clf.similarity(Xv) >= clf.threshold_).mean()
    assert accepted >= 0.9
    assert clf.threshold_info_["in_scope_recall"] == pytest.approx(accepted)
    # the highest such threshold: raising it to the next similarity drops below the target
    sims = np.sort(clf.similarity(Xv))
    assert (sims >= sims[sims >= clf.threshold_][0] + 1e-7).mean() < 0.9


def test_add_examples_new_class_is_predicted_right_after():
    X, y, centres = toy(n_classes=4)
    clf = IntentClassifier().fit(X, y)
    new_centre = toy(n_classes=5)[2][4]  # a fifth random direction
    rng = np.random.default_rng(9)
    two = new_centre + 0.05 * rng.normal(size=(2, 32)).astype(np.float32)
    clf.add_examples(two, "intent_new")
    assert clf.classes_.tolist()[-1] == "intent_new"
    assert clf.predict(new_centre[None]).tolist() == ["intent_new"]
    assert clf.predict(centres[:4]).tolist() == [f"intent_{c}" for c in range(4)]
    n = len(clf.examples_)
    clf.add_examples(centres[:1], "intent_0")  # more examples for an existing class
    assert len(clf.examples_) == n + 1 and len(clf.classes_) == 5
    # the prototypes updated in place equal those of a classifier fitted from scratch
    scratch = IntentClassifier().fit(clf.examples_.numpy(),
                                     clf.classes_[clf.example_classes_.numpy()])
    order = [scratch.classes_.tolist().index(lab) for lab in clf.classes_.tolist()]
    torch.testing.assert_close(clf.prototypes_, scratch.prototypes_[order])


def test_add_examples_builds_an_unfitted_classifier():
    clf = IntentClassifier()
    clf.add_examples(np.array([[1.0, 0.0]]), "a").add_examples(np.array([[0.0, 1.0]]), "b")
    assert clf.predict(np.array([[0.1, 1.0]])).tolist() == ["b"]


def test_remove_class():
    X, y, centres = toy()
    clf = IntentClassifier(mode="knn").fit(X, y)
    clf.remove_class("intent_2")
    assert "intent_2" not in clf.classes_.tolist() and len(clf.examples_) == 24
    assert clf.predict(centres[[0, 1, 3, 4]]).tolist() == ["intent_0", "intent_1", "intent_3",
                                                           "intent_4"]
    assert "intent_2" not in clf.predict(centres).tolist()
    with pytest.raises(ValueError, match="'nope' is not a stored class"):
        clf.remove_class("nope")
    one = IntentClassifier().fit(X[:2], ["a", "a"])
    with pytest.raises(ValueError, match="only class"):
        one.remove_class("a")
    assert one.classes_.tolist() == ["a"]


def test_not_fitted():
    clf = IntentClassifier()
    for call in (lambda: clf.predict(np.ones((1, 2))), lambda: clf.remove_class("a"),
                 lambda: clf.fit_threshold(np.ones((1, 2)), target_recall=0.9),
                 lambda: clf.save("x")):
        with pytest.raises(NotFittedError, match="not fitted"):
            call()


@pytest.mark.parametrize("kwargs,X,y,error,match", [
    ({"mode": "svm"}, None, None, ValueError, "mode must be one of"),
    ({"n_neighbors": 0}, None, None, ValueError, "n_neighbors"),
    ({"temperature": 0}, None, None, ValueError, "temperature"),
    ({"threshold": 1.2}, None, None, ValueError, r"range \[-1, 1\]"),
    ({"unknown_label": 1.5}, None, None, TypeError, "unknown_label"),
    ({}, np.zeros((0, 32)), [], ValueError, "at least one example"),
    ({}, [], [], ValueError, "at least one example"),
    ({}, "toy", ["a", "b"], ValueError, "same length"),
    ({}, None, "mixed", TypeError, "mixes strings and integers"),
    ({}, None, "unknown", ValueError, "contains unknown_label"),
    ({}, None, "float", TypeError, "string or an integer"),
    ({}, np.ones(3), ["a"], ValueError, "2-D"),
    ({}, ["text"], ["a"], ValueError, "has no model"),
])
def test_fit_errors_keep_the_stored_state(kwargs, X, y, error, match):
    Xt, yt, _ = toy()
    clf = IntentClassifier().fit(Xt, yt)
    examples = clf.examples_.clone()
    if isinstance(X, str):
        X = Xt
    if X is None:
        X = Xt[:3]
    if y is None:
        y = yt[:3]
    elif y == "mixed":
        y = ["a", 1, "b"]
    elif y == "unknown":
        y = ["a", "unknown", "b"]
    elif y == "float":
        y = [0.5, 1.5, 2.5]
    clf.set_params(**kwargs)
    with pytest.raises(error, match=match):
        clf.fit(X, y)
    assert torch.equal(clf.examples_, examples) and len(clf.classes_) == 5


def test_editing_and_threshold_errors_keep_state():
    X, y, _ = toy()
    clf = IntentClassifier(unknown_label="oos").fit(X, y)
    before = (clf.classes_.copy(), clf.examples_.clone())
    cases = [
        (lambda: clf.add_examples(np.ones((2, 7)), "x"), ValueError, "dimension 7"),
        (lambda: clf.add_examples(np.zeros((0, 32)), "x"), ValueError, "at least one"),
        (lambda: clf.add_examples(X[:1], "oos"), ValueError, "differ from unknown_label"),
        (lambda: clf.add_examples(X[:1], 3), TypeError, "must be a str"),
        (lambda: clf.fit_threshold(X, y), ValueError, "both in-scope"),
        (lambda: clf.fit_threshold(X), ValueError, "target_recall"),
        (lambda: clf.fit_threshold(X, target_recall=0), ValueError, r"\(0, 1\]"),
        (lambda: clf.fit_threshold(X[:2], ["intent_0", "zzz"]), ValueError, "zzz"),
        (lambda: clf.top_k(X, k=0), ValueError, "k must be"),
    ]
    for call, error, match in cases:
        with pytest.raises(error, match=match):
            call()
    assert (clf.classes_ == before[0]).all() and torch.equal(clf.examples_, before[1])
    assert not hasattr(clf, "threshold_")


def test_cross_val_score_on_embeddings():
    X, y, _ = toy(per_class=9)
    scores = cross_val_score(IntentClassifier(), X, y, cv=3)
    assert scores.min() == 1.0


def test_end_to_end_with_texts_and_round_trip(tiny_model, corpus, tmp_path):
    import csv
    from importlib import resources

    path = resources.files("siamtext") / "resources" / "demo_intents.csv"
    with path.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    texts, labels = [r["text"] for r in rows], [r["label"] for r in rows]
    clf = IntentClassifier(tiny_model, mode="knn", n_neighbors=3).fit(texts, labels)
    # the text path gives what the embedding path gives on the model's own embeddings
    on_emb = IntentClassifier(mode="knn", n_neighbors=3).fit(tiny_model.encode(texts), labels)
    np.testing.assert_allclose(clf.predict_proba(texts[:40]),
                               on_emb.predict_proba(tiny_model.encode(texts[:40])), atol=1e-5)
    clf.add_examples(["where is my parcel", "my package has not arrived"], "delivery")
    assert clf.classes_.tolist()[-1] == "delivery"
    assert clf.similarity(["where is my parcel"])[0] == pytest.approx(1.0, abs=1e-5)
    clf.fit_threshold(texts[:30], target_recall=0.8)
    folder = clf.save(tmp_path / "intent")
    assert (folder / "intent_classifier.safetensors").is_file()
    assert (folder / "encoder").is_dir() and not list(folder.rglob("*.pkl"))
    loaded = IntentClassifier.load(folder, device="cpu")
    assert loaded.get_params(deep=False).keys() == clf.get_params(deep=False).keys()
    assert loaded.mode == "knn" and loaded.threshold_ == clf.threshold_
    assert loaded.classes_.tolist() == clf.classes_.tolist()
    np.testing.assert_allclose(loaded.predict_proba(texts[:10]), clf.predict_proba(texts[:10]),
                               atol=1e-5)
    assert loaded.predict(texts[:10]).tolist() == clf.predict(texts[:10]).tolist()


def test_round_trip_without_model(tmp_path):
    X, y, centres = toy()
    clf = IntentClassifier(threshold=0.2).fit(X, np.repeat(np.arange(5), 6))
    loaded = IntentClassifier.load(clf.save(tmp_path / "emb"))
    assert loaded.model is None and loaded.classes_.tolist() == [0, 1, 2, 3, 4]
    assert loaded.predict(centres).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(FileNotFoundError, match="not a saved IntentClassifier"):
        IntentClassifier.load(tmp_path)
