"""siamtext.classify.cascade: a static first pass proposes, the transformer decides."""

from __future__ import annotations

import csv
import json
import math
from importlib import resources

import numpy as np
import pytest
import torch
from sklearn.base import clone

pytest.importorskip("model2vec")

from siamtext.classify import DuplicateDetector, IntentClassifier  # noqa: E402
from siamtext.classify.cascade import smallest_gate  # noqa: E402
from siamtext.static import StaticEncoder  # noqa: E402


@pytest.fixture(scope="module")
def static(tiny_model) -> StaticEncoder:
    return tiny_model.distill_static(pca_dims=16)


@pytest.fixture(scope="module")
def intents() -> tuple[list[str], list[str]]:
    path = resources.files("siamtext") / "resources" / "demo_intents.csv"
    with path.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["label"] for r in rows]


@pytest.fixture(scope="module")
def split(intents):
    """Of every 10 utterances, 3 are stored, 2 validate and 1 is a query (kept small: the
    tiny transformer is the slow part here)."""
    texts, labels = intents
    fit = [i for i in range(len(texts)) if i % 10 < 3]
    val = [i for i in range(len(texts)) if i % 10 in (3, 4)]
    return ([texts[i] for i in fit], [labels[i] for i in fit], [texts[i] for i in val],
            [labels[i] for i in val], texts[5::10])


class NoTransformer:
    """Stands in for the tower where the cascade must not run it."""

    def __init__(self, model):
        self.model = model

    def __getattr__(self, name):
        return getattr(self.model, name)

    def encode(self, *args, **kwargs):
        raise AssertionError("the transformer ran")


# ---------------------------------------------------------------------- duplicates
def pair_dict(found) -> dict[tuple[int, int], float]:
    return {tuple(p): s for p, s in zip(found.pairs.tolist(), found.scores.tolist())}


def test_dedup_cascade_with_every_pair_a_candidate_equals_exact_search(tiny_model, static,
                                                                       corpus):
    texts = corpus[:60]
    det = DuplicateDetector(tiny_model, threshold=0.96)
    exact = det.find_duplicates(texts)
    assert 0 < len(exact) < 60 * 59 / 2
    found = det.find_duplicates(texts, first_pass=static, rerank_top=60)
    assert found.n == 60 and found.groups == exact.groups
    assert pair_dict(found).keys() == pair_dict(exact).keys()
    np.testing.assert_allclose([pair_dict(found)[p] for p in pair_dict(exact)],
                               exact.scores, atol=1e-5)
    assert (np.diff(found.scores) <= 0).all() and (found.pairs[:, 0] < found.pairs[:, 1]).all()
    assert found.pairs.dtype == np.int64 and found.scores.dtype == np.float32


@pytest.mark.parametrize("rerank_top, first_pass_threshold", [(3, None), (None, 0.4), (4, 0.3)])
def test_dedup_cascade_keeps_static_candidates_that_pass_the_transformer(
        tiny_model, static, corpus, rerank_top, first_pass_threshold):
    texts, threshold = corpus[:50], 0.96
    s = static.encode(texts).astype(np.float64) @ static.encode(texts).T.astype(np.float64)
    t = tiny_model.encode(texts).astype(np.float64) @ tiny_model.encode(texts).T
    np.fill_diagonal(s, -np.inf)
    near = np.ones_like(s, dtype=bool)
    if rerank_top is not None:
        top = np.zeros_like(near)
        np.put_along_axis(top, np.argsort(-s, axis=1)[:, :rerank_top], True, axis=1)
        near &= top | top.T
    if first_pass_threshold is not None:
        near &= s >= first_pass_threshold
    expected = {(i, j) for i, j in zip(*np.nonzero(np.triu(near, 1))) if t[i, j] >= threshold}
    found = DuplicateDetector(tiny_model, threshold=threshold).find_duplicates(
        texts, first_pass=static, rerank_top=rerank_top,
        first_pass_threshold=first_pass_threshold)
    assert set(pair_dict(found)) == expected
    assert expected  # the test has something to check
    for (i, j), score in pair_dict(found).items():
        assert score == pytest.approx(t[i, j], abs=1e-5)


def test_dedup_cascade_embeds_only_candidate_texts(tiny_model, static, corpus, monkeypatch):
    texts = corpus[:30] + ["I lost my card", "I lost my card"]
    seen: list[str] = []
    encode = tiny_model.encode

    def spy(sentences, *args, **kwargs):
        seen.extend(sentences)
        return encode(sentences, *args, **kwargs)

    monkeypatch.setattr(tiny_model, "encode", spy)
    det = DuplicateDetector(tiny_model, threshold=0.999)
    found = det.find_duplicates(texts, first_pass=static, first_pass_threshold=0.999)
    assert (30, 31) in pair_dict(found)
    assert len(seen) < len(texts)


def test_dedup_cascade_tiny_corpora(tiny_model, static):
    det = DuplicateDetector(tiny_model, threshold=0.5)
    for texts in ([], ["just one"]):
        found = det.find_duplicates(texts, first_pass=static, rerank_top=3)
        assert found.pairs.shape == (0, 2) and found.groups == [] and found.n == len(texts)


def test_dedup_cascade_faiss_static_search_equals_exact(tiny_model, static, corpus):
    pytest.importorskip("faiss")
    det = DuplicateDetector(tiny_model, threshold=0.9)
    exact = det.find_duplicates(corpus[:40], first_pass=static, rerank_top=4)
    flat = det.find_duplicates(corpus[:40], first_pass=static, rerank_top=4, method="faiss",
                               faiss_index="Flat")
    assert pair_dict(flat).keys() == pair_dict(exact).keys()


@pytest.mark.parametrize("kwargs, error, match", [
    ({"rerank_top": 5}, ValueError, "rerank_top=5 needs a first_pass"),
    ({"first_pass_threshold": 0.5}, ValueError, "first_pass_threshold needs a first_pass"),
    ({"first_pass": "static", "rerank_top": 0}, ValueError,
     "rerank_top must be a positive integer, got 0"),
    ({"first_pass": "tiny_model", "rerank_top": 3}, TypeError,
     "first_pass must be a siamtext.static.StaticEncoder"),
    ({"first_pass": "static"}, ValueError, "first_pass needs rerank_top=... .*and/or"),
    ({"first_pass": "static", "rerank_top": 3, "top_k": 2}, ValueError,
     "top_k cannot be combined with first_pass"),
    ({"first_pass": "static", "first_pass_threshold": 1.5}, ValueError,
     r"first_pass_threshold must lie in the cosine-similarity range"),
])
def test_dedup_cascade_errors(tiny_model, static, corpus, kwargs, error, match):
    kwargs = {k: {"static": static, "tiny_model": tiny_model}.get(v, v) if isinstance(v, str)
              else v for k, v in kwargs.items()}
    with pytest.raises(error, match=match):
        DuplicateDetector(tiny_model, threshold=0.5).find_duplicates(corpus[:5], **kwargs)


def test_dedup_cascade_needs_texts(tiny_model, static):
    with pytest.raises(ValueError, match="needs texts .*got precomputed embeddings"):
        DuplicateDetector(tiny_model, threshold=0.5).find_duplicates(
            np.ones((3, 32), dtype=np.float32), first_pass=static, rerank_top=2)


def test_static_encoder_without_vectors_is_refused(tiny_model, static, corpus):
    broken = StaticEncoder.__new__(StaticEncoder)
    broken.static_model = None
    with pytest.raises(ValueError, match="first_pass has no static model"):
        DuplicateDetector(tiny_model, threshold=0.5).find_duplicates(
            corpus[:5], first_pass=broken, rerank_top=2)


# ---------------------------------------------------------------------- intents
@pytest.mark.parametrize("mode", ["prototype", "knn"])
def test_full_shortlist_without_gate_equals_the_plain_classifier(tiny_model, static, split,
                                                                 mode):
    X, y, _, _, queries = split
    plain = IntentClassifier(tiny_model, mode=mode, n_neighbors=3).fit(X, y)
    n_classes = len(plain.classes_)
    assert n_classes == 16
    for top in (n_classes, n_classes + 5):
        casc = IntentClassifier(tiny_model, mode=mode, n_neighbors=3, first_pass=static,
                                rerank_top=top).fit(X, y)
        assert casc.predict(queries).tolist() == plain.predict(queries).tolist()
        np.testing.assert_array_equal(casc.predict_proba(queries), plain.predict_proba(queries))
        np.testing.assert_array_equal(casc.similarity(queries), plain.similarity(queries))
        assert casc.top_k(queries, 3)[0].tolist() == plain.top_k(queries, 3)[0].tolist()


def static_answers_by_hand(static, X, y, queries, mode) -> list[str]:
    """Static class scores from scratch: cosine to each class's normalised static mean
    (prototype) or to its nearest static example (k-NN)."""
    emb, q = static.encode(X).astype(np.float64), static.encode(queries).astype(np.float64)
    classes = sorted(set(y))
    y = np.asarray(y)
    if mode == "prototype":
        protos = np.stack([emb[y == c].sum(axis=0) for c in classes])
        protos /= np.linalg.norm(protos, axis=1, keepdims=True)
        scores = q @ protos.T
    else:
        scores = np.stack([(q @ emb[y == c].T).max(axis=1) for c in classes], axis=1)
    return [classes[i] for i in scores.argmax(axis=1)]


@pytest.mark.parametrize("mode", ["prototype", "knn"])
def test_gate_of_minus_inf_always_returns_the_static_answer(tiny_model, static, split, mode):
    X, y, _, _, queries = split
    clf = IntentClassifier(tiny_model, mode=mode, first_pass=static, rerank_top=3,
                           first_pass_margin=-math.inf, threshold=0.99).fit(X, y)
    clf.model = NoTransformer(tiny_model)  # nothing is rejected either: the gate is final
    assert clf.predict(queries).tolist() == static_answers_by_hand(static, X, y, queries, mode)
    assert clf.first_pass_gate == -math.inf


def test_gate_of_plus_inf_never_skips_and_shortlist_of_one_is_the_static_answer(
        tiny_model, static, split):
    X, y, _, _, queries = split
    shortlist = IntentClassifier(tiny_model, first_pass=static, rerank_top=2).fit(X, y)
    gated = clone(shortlist).set_params(first_pass_margin=math.inf).fit(X, y)
    assert gated.predict(queries).tolist() == shortlist.predict(queries).tolist()
    one = IntentClassifier(tiny_model, first_pass=static, rerank_top=1).fit(X, y)
    assert one.predict(queries).tolist() == static_answers_by_hand(static, X, y, queries,
                                                                   "prototype")
    proba = one.predict_proba(queries)
    assert ((proba > 0).sum(axis=1) == 1).all()  # the transformer saw one class only


def test_smallest_gate_by_hand():
    m = np.array([0.1, 0.2, 0.3, 0.4])
    d = np.array([True, False, True, False])
    assert smallest_gate(m, d, 0.0) == 0.3          # accept 0.4 alone
    assert smallest_gate(m, d, 0.25) == 0.1         # one disagreement allowed: 0.2, 0.3, 0.4
    assert smallest_gate(m, d, 0.5) == -math.inf    # both allowed: accept everything
    # a gate cannot split tied margins
    tied = np.array([0.1, 0.3, 0.3, 0.4])
    assert smallest_gate(tied, np.array([False, True, False, False]), 0.0) == 0.3
    assert smallest_gate(m, np.zeros(4, dtype=bool), 0.0) == -math.inf


def test_fit_first_pass_meets_the_disagreement_budget(tiny_model, static, split):
    X, y, X_val, y_val, queries = split
    clf = IntentClassifier(tiny_model, first_pass=static, rerank_top=4).fit(X, y)
    plain = clf.predict(X_val)  # no gate yet: the transformer among the shortlist
    clf.fit_first_pass(X_val, y_val, max_disagreement=0.05)
    info, gate = clf.first_pass_info_, clf.first_pass_margin_
    assert info["n"] == len(X_val) and info["disagreement"] <= 0.05
    assert 0.0 <= info["static_share"] <= 1.0
    assert {"accuracy_transformer", "accuracy_static", "accuracy_cascade"} <= info.keys()
    cascade = clf.predict(X_val)
    # the gated predictions disagree with the ungated ones on at most the budget
    assert np.mean(cascade != plain) <= 0.05 + 1e-9
    assert np.mean(cascade == np.asarray(y_val)) == pytest.approx(info["accuracy_cascade"])
    assert clf.first_pass_gate == gate
    # refitting the examples forgets the gate
    assert not hasattr(clf.fit(X, y), "first_pass_margin_")


def test_add_examples_and_remove_class_keep_the_static_state_aligned(tiny_model, static, split):
    X, y, *_ = split
    clf = IntentClassifier(tiny_model, mode="knn", n_neighbors=1, first_pass=static,
                           rerank_top=2).fit(X, y)
    before = clf.first_pass_examples_.clone(), clf.first_pass_prototypes_.clone()
    clf.add_examples(["where is my parcel", "my package has not arrived"], "delivery")
    assert clf.first_pass_examples_.shape == (len(X) + 2, 16)
    assert clf.first_pass_prototypes_.shape == (len(clf.classes_), 16)
    assert clf.predict(["where is my parcel"]).tolist() == ["delivery"]
    clf.add_examples("my parcel is late", "delivery")
    clf.remove_class("delivery")
    torch.testing.assert_close(clf.first_pass_examples_, before[0])
    torch.testing.assert_close(clf.first_pass_prototypes_, before[1])
    fresh = IntentClassifier(tiny_model, first_pass=static).add_examples(["hello"], "greet")
    assert fresh.first_pass_examples_.shape == (1, 16)


def test_cascade_round_trip(tiny_model, static, split, tmp_path):
    from model2vec import StaticModel

    X, y, X_val, y_val, queries = split
    clf = IntentClassifier(tiny_model, first_pass=static, rerank_top=3).fit(X, y)
    clf.fit_first_pass(X_val, y_val, max_disagreement=0.1)
    folder = clf.save(tmp_path / "intent")
    assert (folder / "first_pass" / "model.safetensors").is_file()
    StaticModel.from_pretrained(folder / "first_pass")
    assert not list(folder.rglob("*.pkl"))
    loaded = IntentClassifier.load(folder, device="cpu")
    assert isinstance(loaded.first_pass, StaticEncoder) and loaded.rerank_top == 3
    assert loaded.first_pass_margin_ == clf.first_pass_margin_
    assert loaded.first_pass_info_ == clf.first_pass_info_
    torch.testing.assert_close(loaded.first_pass_examples_, clf.first_pass_examples_)
    assert loaded.predict(queries).tolist() == clf.predict(queries).tolist()
    # an infinite gate is written as standard JSON and read back
    clf.set_params(first_pass_margin=-math.inf).fit(X, y)
    folder = clf.save(tmp_path / "intent")
    json.loads((folder / "intent_classifier.json").read_text(),
               parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert IntentClassifier.load(folder, device="cpu").first_pass_gate == -math.inf
    # a classifier without a first pass has none after loading
    plain = IntentClassifier(tiny_model).fit(X, y)
    assert IntentClassifier.load(plain.save(tmp_path / "plain"), device="cpu").first_pass is None


@pytest.mark.parametrize("kwargs, error, match", [
    ({"rerank_top": 3}, ValueError, "rerank_top=3 needs a first_pass"),
    ({"first_pass_margin": 0.1}, ValueError, "first_pass_margin=0.1 needs a first_pass"),
    ({"first_pass": "static", "rerank_top": 0}, ValueError, "rerank_top must be a positive"),
    ({"first_pass": "tiny_model"}, TypeError, "first_pass must be a siamtext.static"),
    ({"first_pass": "static", "first_pass_margin": float("nan")}, ValueError,
     "first_pass_margin must be a number, got nan"),
    ({"first_pass": "static", "first_pass_margin": "high"}, TypeError,
     "first_pass_margin must be a number"),
])
def test_intent_cascade_parameter_errors(tiny_model, static, split, kwargs, error, match):
    X, y, *_ = split
    kwargs = {k: {"static": static, "tiny_model": tiny_model}.get(v, v) if isinstance(v, str)
              else v for k, v in kwargs.items()}
    clf = IntentClassifier(tiny_model, **kwargs)
    with pytest.raises(error, match=match):
        clf.fit(X, y)
    assert not hasattr(clf, "examples_")


def test_intent_cascade_state_errors(tiny_model, static, split):
    X, y, X_val, y_val, queries = split
    late = IntentClassifier(tiny_model).fit(X, y)
    late.first_pass = static
    with pytest.raises(ValueError, match="first_pass was set after fit"):
        late.predict(queries)
    with pytest.raises(ValueError, match="fitted without its first_pass"):
        late.add_examples(["hello"], "greet")
    assert "greet" not in late.classes_
    with pytest.raises(ValueError, match="needs texts .*got precomputed embeddings"):
        IntentClassifier(tiny_model, first_pass=static).fit(tiny_model.encode(X), y)
    plain = IntentClassifier(tiny_model).fit(X, y)
    with pytest.raises(ValueError, match="fit_first_pass needs a first_pass"):
        plain.fit_first_pass(X_val, y_val)
    clf = IntentClassifier(tiny_model, first_pass=static).fit(X, y)
    with pytest.raises(ValueError, match=r"max_disagreement must be a number in \[0, 1\)"):
        clf.fit_first_pass(X_val, y_val, max_disagreement=1.0)
    with pytest.raises(ValueError, match="at least one validation example"):
        clf.fit_first_pass([], [])
    other = tiny_model.distill_static(pca_dims=8)
    clf.first_pass = other
    with pytest.raises(ValueError, match="first_pass embeds in 8 dimensions"):
        clf.predict(queries)


def test_intent_cascade_single_string_and_empty_queries(tiny_model, static, split):
    X, y, *_ = split
    plain = IntentClassifier(tiny_model).fit(X, y)
    clf = IntentClassifier(tiny_model, first_pass=static, rerank_top=16).fit(X, y)
    assert clf.predict("I lost my card").tolist() == plain.predict("I lost my card").tolist()
    assert clf.predict([]).shape == plain.predict([]).shape == (0,)
    assert clf.predict_proba([]).shape == (0, 16)
    assert clf.predict(np.array(["I lost my card"])).tolist() == plain.predict(
        ["I lost my card"]).tolist()


def test_a_shortlist_is_made_against_the_state_being_scored(tiny_model, static, split):
    from siamtext.classify import cascade

    X, y, _, _, queries = split
    clf = IntentClassifier(tiny_model, first_pass=static, rerank_top=3).fit(X, y)
    pending = cascade.shortlist(clf, queries)  # taken before an edit...
    clf.add_examples(["where is my parcel"], "delivery")
    _, _, pred = clf._scores(clf._embed(queries), proba=False, allowed=pending)  # ...scored after
    assert pred.shape == (len(queries),) and int(pred.max()) < len(clf.classes_)


def test_cascade_predicts_while_classes_change(tiny_model, static, split):
    import threading

    X, y, _, _, queries = split
    clf = IntentClassifier(tiny_model, first_pass=static, rerank_top=3,
                           first_pass_margin=0.05).fit(X, y)
    errors: list[BaseException] = []

    def edit():
        try:
            for i in range(10):
                clf.add_examples([f"where is my parcel number {i}"], "delivery")
                clf.remove_class("delivery")
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    editor = threading.Thread(target=edit)
    editor.start()
    while editor.is_alive():
        assert len(clf.predict(queries[:8])) == 8
    editor.join()
    assert not errors
    assert clf.first_pass_examples_.shape[0] == len(X)


def test_the_cascade_module_gives_the_estimators_answers(tiny_model, static, split, corpus):
    from siamtext.classify import cascade

    X, y, X_val, y_val, queries = split
    clf = IntentClassifier(tiny_model, mode="knn", first_pass=static, rerank_top=3).fit(X, y)
    assert cascade.fit_gate(clf, X_val, y_val, max_disagreement=0.1) is clf
    assert clf.first_pass_margin_ is not None
    assert cascade.predict(clf, queries).tolist() == clf.predict(queries).tolist()
    answer, margin, allowed = cascade.static_answers(clf, queries)
    assert clf.classes_[answer].tolist() == static_answers_by_hand(static, X, y, queries, "knn")
    again = cascade.static_answers(clf, cascade.static_queries(clf, queries))[0]
    assert again.tolist() == answer.tolist()
    assert allowed.shape == (len(queries), 16) and (allowed.sum(axis=1) == 3).all()
    assert (margin >= 0).all()
    det = DuplicateDetector(tiny_model, threshold=0.96)
    found = cascade.find_duplicates(det, corpus[:40], 0.96, first_pass=static, rerank_top=4,
                                    first_pass_threshold=None)
    assert found.pairs.tolist() == det.find_duplicates(corpus[:40], first_pass=static,
                                                       rerank_top=4).pairs.tolist()
