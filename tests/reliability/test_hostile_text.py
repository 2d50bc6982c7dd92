"""Hostile and odd text through encode, the collators, the pair builders and the classifiers.

Every outcome is either a right answer (shapes, finite values, nothing dropped) or a
``ValueError``/``TypeError`` with a message; never another exception, a NaN or a hang.
Hypothesis runs derandomised (the same examples every run) and keeps no database.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from siamtext.classify import DuplicateDetector, IntentClassifier, ThresholdClassifier, search
from siamtext.data import (
    LabelledCollator,
    PairCollator,
    TripletCollator,
    make_anchor_positives,
    make_pairs,
    make_triplets,
)

from .hostile import (
    ODD_TEXTS,
    SURROGATE,
    check_embeddings,
    has_surrogate,
    megabyte_texts,
    outcome,
    text_strategy,
)

FAST = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
MODEL = settings(FAST, max_examples=12)  # properties that run the model several times each
texts_st = st.lists(text_strategy(), min_size=1, max_size=6)
any_texts_st = st.lists(text_strategy(surrogates=True), min_size=1, max_size=4)
labels_st = st.one_of(st.integers(-3, 3), st.floats(allow_nan=True, allow_infinity=True),
                      st.booleans(), st.none(), st.text(max_size=2))


def _ok(problem: str | None) -> None:
    assert problem is None, problem


def _unique_pairs(pairs: np.ndarray, n: int) -> bool:
    return bool(len(pairs) == 0 or (
        (pairs[:, 0] < pairs[:, 1]).all() and pairs.min() >= 0 and pairs.max() < n
        and len({tuple(p) for p in pairs.tolist()}) == len(pairs)))


# ---------------------------------------------------------------------- encode
@FAST
@given(texts=any_texts_st)
def test_encode_hostile_unicode(tiny_model, texts):
    dim = tiny_model.embedding_dim
    _ok(outcome(lambda: tiny_model.encode(texts), lambda e: check_embeddings(e, len(texts), dim),
                refuse=has_surrogate(texts)))


@pytest.mark.parametrize("name", sorted(ODD_TEXTS))
def test_encode_odd_texts_alone_and_batched(tiny_model, name):
    text = ODD_TEXTS[name]
    alone = tiny_model.encode(text)
    batched = tiny_model.encode([text, "I lost my card", text])
    _ok(check_embeddings(batched, 3, tiny_model.embedding_dim))
    np.testing.assert_allclose(batched[0], alone, atol=1e-5)
    np.testing.assert_array_equal(batched[0], batched[2])


def test_lone_surrogates_are_refused_naming_the_text(tiny_model):
    with pytest.raises(ValueError, match=r"sentences\[1\] holds a lone surrogate"):
        tiny_model.encode(["fine", SURROGATE])


@pytest.mark.parametrize("kind", sorted(megabyte_texts()))
def test_encode_one_megabyte_strings(tiny_model, kind):
    text = megabyte_texts()[kind]
    start = time.perf_counter()
    emb = tiny_model.encode([text, "short"])
    assert time.perf_counter() - start < 30
    _ok(check_embeddings(emb, 2, tiny_model.embedding_dim))


def test_encode_100k_empty_strings(tiny_model):
    # batch_size=1024: the default 32 makes 3,125 forward passes, minutes on two busy cores
    # (test_encode_100k_empty_strings_default_batch, marked slow, runs those)
    emb = tiny_model.encode([""] * 100_000, batch_size=1024)
    _ok(check_embeddings(emb, 100_000, tiny_model.embedding_dim))
    assert (emb == emb[0]).all()


@pytest.mark.slow
def test_encode_100k_empty_strings_default_batch(tiny_model):
    emb = tiny_model.encode([""] * 100_000)
    _ok(check_embeddings(emb, 100_000, tiny_model.embedding_dim))


def test_encode_duplicates_only(tiny_model):
    emb = tiny_model.encode(["same text"] * 300 + [""] * 5, batch_size=64)
    _ok(check_embeddings(emb, 305, tiny_model.embedding_dim))
    np.testing.assert_allclose(emb[:300], np.broadcast_to(emb[0], (300, emb.shape[1])),
                               atol=1e-6)


# ---------------------------------------------------------------------- collators
def _check_batch(batch: dict, n: int, columns: int, label_dtype: torch.dtype | None
                 ) -> str | None:
    if len(batch["features"]) != columns:
        return f"{len(batch['features'])} feature dicts, expected {columns}"
    for f in batch["features"]:
        ids, mask = f["input_ids"], f["attention_mask"]
        if ids.shape[0] != n or ids.shape != mask.shape or ids.shape[1] < 1:
            return f"bad feature shapes {tuple(ids.shape)} / {tuple(mask.shape)}"
        if not bool((mask.sum(1) >= 1).all()):
            return "a row without tokens"
    labels = batch["labels"]
    if label_dtype is None:
        return None if labels is None else "labels where none were asked for"
    if labels.shape != (n,) or labels.dtype != label_dtype:
        return f"labels {tuple(labels.shape)} {labels.dtype}"
    if labels.is_floating_point() and not bool(torch.isfinite(labels).all()):
        return "non-finite labels"
    return None


@FAST
@given(a=any_texts_st, b=any_texts_st, labels=st.lists(labels_st, min_size=6, max_size=6))
def test_pair_collator_hostile_rows(tiny_model, a, b, labels):
    n = min(len(a), len(b))
    rows = [{"sentence1": a[i], "sentence2": b[i], "label": labels[i]} for i in range(n)]
    _ok(outcome(lambda: PairCollator(tiny_model)(rows),
                lambda out: _check_batch(out, n, 2, torch.float32)))


@MODEL
@given(texts=st.lists(any_texts_st, min_size=3, max_size=3),
       labels=st.lists(labels_st, min_size=4, max_size=4))
def test_triplet_and_labelled_collators_hostile_rows(tiny_model, texts, labels):
    n = min(len(t) for t in texts)
    rows = [{"anchor": texts[0][i], "positive": texts[1][i], "negative": texts[2][i],
             "label": labels[i]} for i in range(n)]
    _ok(outcome(lambda: TripletCollator(tiny_model)(rows),
                lambda out: _check_batch(out, n, 3, None)))
    _ok(outcome(lambda: TripletCollator(tiny_model, label="label")(rows),
                lambda out: _check_batch(out, n, 3, torch.long)))
    text_rows = [{"text": r["anchor"], "label": r["label"]} for r in rows]
    _ok(outcome(lambda: LabelledCollator(tiny_model)(text_rows),
                lambda out: _check_batch(out, n, 1, torch.long)))


@pytest.mark.parametrize("rows, error", [
    ([{"sentence1": "a", "sentence2": "b", "label": float("nan")}], ValueError),
    ([{"sentence1": "a", "sentence2": "b", "label": "yes"}], TypeError),
    ([{"sentence1": None, "sentence2": "b", "label": 1}], TypeError),
    ([{"sentence1": "a", "sentence2": "b", "label": 1}, {"sentence1": 3, "sentence2": "b",
                                                       "label": 1}], TypeError),
    ([{"sentence1": "a", "sentence2": "b", "label": 1}, {"sentence1": "a", "label": 1}],
     ValueError),
    ([{"sentence1": [], "sentence2": [2, 3], "label": 1}], ValueError),
])
def test_pair_collator_names_the_bad_cell(tiny_model, rows, error):
    with pytest.raises(error, match=r"column|rows\[1\]"):
        PairCollator(tiny_model)(rows)


def test_collators_on_one_megabyte_and_100k_empty_rows(tiny_model):
    big = megabyte_texts()["ascii_words"]
    batch = PairCollator(tiny_model)([{"sentence1": big, "sentence2": "", "label": 1}])
    _ok(_check_batch(batch, 1, 2, torch.float32))


@pytest.mark.slow
def test_100k_empty_strings_through_collators_and_classifiers(tiny_model):
    rows = [{"text": "", "label": 0}] * 100_000
    _ok(_check_batch(LabelledCollator(tiny_model)(rows), 100_000, 1, torch.long))
    pairs = [("", "")] * 100_000
    clf = ThresholdClassifier(tiny_model).fit(pairs, [0, 1] * 50_000)
    _ok(_check_threshold(clf, pairs[:10]))
    intent = IntentClassifier(tiny_model, batch_size=1024).fit(["a", ""], ["p", "q"])
    assert intent.predict([""] * 100_000).tolist() == ["q"] * 100_000


# ---------------------------------------------------------------------- pair builders
def _check_rows(ds, texts: list[str], labels: list, kind: str) -> str | None:
    classes: dict = {}
    for t, y in zip(texts, labels):
        classes.setdefault(y, set()).add(t)

    def same(a, b):
        return any(a in s and b in s for s in classes.values())

    def differ(a, b):
        return any(a in s1 and b in s2 for y1, s1 in classes.items()
                   for y2, s2 in classes.items() if y1 != y2)

    rows = ds.to_list()
    if kind == "pairs":
        for r in rows:
            if r["label"] == 1 and not same(r["sentence1"], r["sentence2"]):
                return f"positive pair across classes: {r}"
            if r["label"] == 0 and not differ(r["sentence1"], r["sentence2"]):
                return f"negative pair within a class: {r}"
        if not rows or {r["label"] for r in rows} != {0, 1}:
            return f"pairs lack a positive or a negative: {len(rows)} rows"
        return None
    anchors = sum(1 for y in labels if labels.count(y) >= 2)
    if len(rows) != anchors:
        return f"{len(rows)} rows for {anchors} anchors"
    for r in rows:
        if not same(r["anchor"], r["positive"]):
            return f"positive from another class: {r}"
        if kind == "triplets" and not differ(r["anchor"], r["negative"]):
            return f"negative from the anchor's class: {r}"
    return None


@FAST
@given(texts=st.lists(text_strategy(surrogates=True), min_size=1, max_size=8),
       labels=st.lists(st.one_of(st.sampled_from([0, 1, 2, "x"]), st.just(float("nan"))),
                       min_size=1, max_size=8))
def test_pair_builders_hostile_input(texts, labels):
    labels = labels[: len(texts)] + [0] * (len(texts) - len(labels))
    for build, kind in [(make_pairs, "pairs"), (make_triplets, "triplets"),
                        (make_anchor_positives, "anchor_positives")]:
        _ok(outcome(lambda b=build: b(texts, labels),
                    lambda ds, k=kind: _check_rows(ds, texts, labels, k)))


def test_pair_builders_with_one_class_duplicates_and_empties():
    with pytest.raises(ValueError, match="single class"):
        make_pairs(["a", "b", "c"], [0, 0, 0])
    with pytest.raises(ValueError, match="single class"):
        make_triplets(["a", "b", "c"], [0, 0, 0])
    assert len(make_anchor_positives(["a", "b", "c"], [0, 0, 0])) == 3
    texts, labels = ["same"] * 6, [0, 0, 0, 1, 1, 1]
    _ok(_check_rows(make_pairs(texts, labels), texts, labels, "pairs"))
    _ok(_check_rows(make_triplets(texts, labels), texts, labels, "triplets"))
    empties, classes = [""] * 100_000, [i % 10 for i in range(100_000)]
    start = time.perf_counter()
    assert len(make_pairs(empties, classes, max_pairs=1000)) == 1000
    assert len(make_triplets(empties, classes)) == 100_000
    assert time.perf_counter() - start < 60


def test_pair_builders_refuse_nan_and_unhashable_labels():
    with pytest.raises(ValueError, match=r"labels\[1\] is nan"):
        make_pairs(["a", "b", "c", "d"], [0, float("nan"), 1, 1])
    with pytest.raises(TypeError, match=r"labels\[0\] must be hashable"):
        make_triplets(["a", "b"], [[0], [1]])
    with pytest.raises(TypeError, match="labels must be a list"):
        make_anchor_positives(["a", "b"], None)


# ---------------------------------------------------------------------- ThresholdClassifier
def _check_threshold(clf: ThresholdClassifier, X) -> str | None:
    if not np.isfinite(clf.threshold_):
        return f"threshold {clf.threshold_}"
    proba = clf.predict_proba(X)
    if proba.shape != (len(X), 2) or not np.isfinite(proba).all():
        return f"proba {proba.shape}, finite {np.isfinite(proba).all()}"
    if not np.allclose(proba.sum(1), 1) or proba.min() < 0 or proba.max() > 1:
        return "probabilities outside [0, 1] or not summing to 1"
    if clf.predict(X).shape != (len(X),):
        return "predict shape"
    return None


@FAST
@given(scores=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=1,
                       max_size=12),
       y=st.lists(st.one_of(st.sampled_from([0, 1]), labels_st), min_size=1, max_size=12),
       calibration=st.sampled_from(["platt", "isotonic"]))
def test_threshold_classifier_hostile_scores(scores, y, calibration):
    clf = ThresholdClassifier(calibration=calibration)
    with np.errstate(over="ignore"):  # a score of 1e308 overflows exp(): a finite 0 or 1
        _ok(outcome(lambda: clf.fit(scores, y[: len(scores)]),
                    lambda c: _check_threshold(c, scores)))


@MODEL
@given(a=any_texts_st, b=any_texts_st)
def test_threshold_classifier_hostile_text_pairs(tiny_model, a, b):
    n = min(len(a), len(b))
    pairs = list(zip(a[:n], b[:n])) * 2
    y = [1] * n + [0] * n
    clf = ThresholdClassifier(tiny_model)
    _ok(outcome(lambda: clf.fit(pairs, y), lambda c: _check_threshold(c, pairs),
                refuse=has_surrogate(a[:n] + b[:n])))


def test_threshold_classifier_duplicates_one_class_and_big_pairs(tiny_model):
    clf = ThresholdClassifier().fit([0.5] * 10, [0, 1] * 5)  # tied scores: one decision
    _ok(_check_threshold(clf, [0.5, 0.1, 0.9]))
    with pytest.raises(ValueError, match="single class"):
        ThresholdClassifier().fit([0.1, 0.2], [1, 1])
    with pytest.raises(TypeError, match="one type"):
        ThresholdClassifier().fit([0.1, 0.2, 0.3], [0, 1, None])
    big = megabyte_texts()["emoji"]
    _ok(_check_threshold(ThresholdClassifier(tiny_model).fit(
        [(big, "a"), ("a", "a")], [0, 1]), [(big, big)]))


# ---------------------------------------------------------------------- IntentClassifier
def _check_intent(clf: IntentClassifier, X, n: int) -> str | None:
    proba = clf.predict_proba(X)
    if proba.shape != (n, len(clf.classes_)) or not np.isfinite(proba).all():
        return f"proba {proba.shape}, finite {np.isfinite(proba).all()}"
    if n and not np.allclose(proba.sum(1), 1, atol=1e-4):
        return "probabilities do not sum to 1"
    pred = clf.predict(X)
    allowed = set(clf.classes_.tolist()) | {clf.unknown_label}
    if pred.shape != (n,) or not set(pred.tolist()) <= allowed:
        return f"predictions {pred[:5]} outside the classes"
    if not np.isfinite(clf.similarity(X)).all():
        return "non-finite similarity"
    return None


@MODEL
@given(texts=st.lists(text_strategy(), min_size=1, max_size=8),
       labels=st.lists(st.sampled_from(["a", "b", "c"]), min_size=8, max_size=8),
       queries=any_texts_st, mode=st.sampled_from(["prototype", "knn"]))
def test_intent_classifier_hostile_texts(tiny_model, texts, labels, queries, mode):
    clf = IntentClassifier(tiny_model, mode=mode, threshold=0.2)
    clf.fit(texts, labels[: len(texts)])
    _ok(outcome(lambda: _check_intent(clf, queries, len(queries)),
                refuse=has_surrogate(queries)))
    _ok(outcome(lambda: clf.add_examples(queries, "new"), lambda c: _check_intent(
        c, texts, len(texts)), refuse=has_surrogate(queries)))


@FAST
@given(values=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=8,
                       max_size=8),
       temperature=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-1, 2)),
       mode=st.sampled_from(["prototype", "knn"]))
def test_intent_classifier_hostile_embeddings_and_temperature(values, temperature, mode):
    X = np.asarray(values, dtype=np.float32).reshape(4, 2)
    clf = IntentClassifier(mode=mode, temperature=temperature, n_neighbors=2)
    queries = np.asarray([[1.0, 0.0], [0.0, 0.0], [-3e38, 3e38]], dtype=np.float32)
    _ok(outcome(lambda: clf.fit(X, ["a", "b", "a", "c"]),
                lambda c: _check_intent(c, queries, 3)))


def test_intent_classifier_tiny_temperature_gives_finite_probabilities():
    X = np.eye(3, dtype=np.float32)
    clf = IntentClassifier(temperature=1e-40).fit(X, ["a", "b", "c"])
    _ok(_check_intent(clf, np.asarray([[0.9, 0.1, 0.0]], dtype=np.float32), 1))
    with pytest.raises(ValueError, match="temperature"):
        IntentClassifier(temperature=float("nan")).fit(X, ["a", "b", "c"])


def test_intent_classifier_one_class_duplicates_and_big_inputs(tiny_model):
    one = IntentClassifier(tiny_model).fit(["a", "b"], ["only", "only"])
    _ok(_check_intent(one, ["anything", ODD_TEXTS["mixed"]], 2))
    assert one.predict(["x"]).tolist() == ["only"]
    one.fit_threshold(["a", "c", "d"], target_recall=0.5)
    assert np.isfinite(one.threshold_)
    dup = IntentClassifier(tiny_model, mode="knn").fit(["same"] * 4, ["x", "y", "x", "y"])
    _ok(_check_intent(dup, ["same", "other"], 2))
    big = megabyte_texts()["rtl"]
    clf = IntentClassifier(tiny_model).fit(["a", big], ["p", "q"])
    _ok(_check_intent(clf, [big, ""], 2))


# ---------------------------------------------------------------------- find_duplicates
def _check_duplicates(found, texts: list[str], threshold: float) -> str | None:
    n = len(texts)
    if found.pairs.shape[1:] != (2,) or not _unique_pairs(found.pairs, n):
        return f"bad pairs {found.pairs[:5]}"
    if len(found.scores) != len(found.pairs) or not np.isfinite(found.scores).all():
        return "bad scores"
    if len(found.scores) and found.scores.min() < threshold - 1e-6:
        return "a pair under the threshold"
    got = {tuple(p) for p in found.pairs.tolist()}
    for i in range(n):  # identical texts embed identically: none may be missed
        for j in range(i + 1, n):
            if texts[i] == texts[j] and (i, j) not in got:
                return f"identical texts {i} and {j} not paired"
    linked = sorted({i for p in got for i in p})
    if sorted(i for g in found.groups for i in g) != linked:
        return "groups do not cover the paired items"
    return None


@MODEL
@given(texts=st.lists(st.one_of(text_strategy(surrogates=True), st.sampled_from(
           ["", "dup", "\u200b", "\U0001f600"])), max_size=12),
       threshold=st.sampled_from([-1.0, 0.0, 0.99, 1.0]))
def test_find_duplicates_hostile_texts(tiny_model, texts, threshold):
    det = DuplicateDetector(tiny_model, threshold=threshold)
    _ok(outcome(lambda: det.find_duplicates(texts),
                lambda f: _check_duplicates(f, texts, min(threshold, 0.9999)),
                refuse=has_surrogate(texts)))


@FAST
@given(values=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=12,
                       max_size=12),
       top_k=st.sampled_from([None, 1, 3]))
def test_find_duplicates_hostile_embeddings(values, top_k):
    emb = np.asarray(values, dtype=np.float32).reshape(6, 2)
    det = DuplicateDetector(threshold=0.5)
    _ok(outcome(lambda: det.find_duplicates(emb, top_k=top_k),
                lambda f: None if _unique_pairs(f.pairs, 6) and np.isfinite(f.scores).all()
                else f"bad result {f.pairs.tolist()} {f.scores.tolist()}"))


def test_find_duplicates_duplicates_only_and_one_megabyte(tiny_model):
    det = DuplicateDetector(tiny_model, threshold=0.999)
    texts = ["dup"] * 40
    found = det.find_duplicates(texts)
    _ok(_check_duplicates(found, texts, 0.999))
    assert len(found) == 40 * 39 // 2 and found.groups == [list(range(40))]
    big = megabyte_texts()["one_long_word"]
    _ok(_check_duplicates(det.find_duplicates([big, "x", big]), [big, "x", big], 0.999))
    assert det.is_duplicate(big, big) is True


def test_find_duplicates_100k_identical_refuses_instead_of_filling_memory(tiny_model,
                                                                         monkeypatch):
    # 100,000 identical items make 5e9 pairs; the search stops at MAX_PAIRS. A lower limit
    # here reaches the same check in one tile instead of ~1 GB of pairs.
    monkeypatch.setattr(search, "MAX_PAIRS", 1_000_000)
    det = DuplicateDetector(tiny_model, threshold=0.9)
    emb = np.ones((100_000, tiny_model.embedding_dim), dtype=np.float32)
    with pytest.raises(ValueError, match="more than 1,000,000 pairs.*top_k"):
        det.find_duplicates(emb)
    found = det.find_duplicates(emb[:5000], top_k=2)  # a cap keeps memory at n * top_k
    assert 0 < len(found) <= 10_000 and _unique_pairs(found.pairs, 5000)


@pytest.mark.slow
def test_find_duplicates_100k_empty_strings(tiny_model):
    det = DuplicateDetector(tiny_model, threshold=0.9, batch_size=1024)
    with pytest.raises(ValueError, match="top_k"):
        det.find_duplicates([""] * 100_000)
    found = det.find_duplicates([""] * 100_000, top_k=1)
    assert len(found.groups) >= 1 and sum(map(len, found.groups)) == 100_000
