"""Concurrent use from 8 threads gives the serial results, exactly; editing an
IntentClassifier while others predict never shows a class half added."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from siamtext.classify import DuplicateDetector, IntentClassifier
from siamtext.classify.search import single_thread

from .hostile import ODD_TEXTS, run_threads

QUERIES = ["I lost my card", "what is the weather", "book a table for two",
           ODD_TEXTS["emoji"], "", "transfer money to my savings account", "hi"]


@pytest.fixture(scope="module")
def texts(corpus) -> list[str]:
    return corpus[:96]


def test_encode_from_8_threads_equals_serial(tiny_model, texts):
    batches = [texts[i::4] for i in range(4)]
    serial = [tiny_model.encode(b, batch_size=8) for b in batches]
    results = run_threads(lambda i: tiny_model.encode(batches[i % 4], batch_size=8), calls=4)
    for i, emb in enumerate(results):
        np.testing.assert_array_equal(emb, serial[i % 4])


def test_token_ids_with_different_max_lengths_from_8_threads(tiny_model, texts):
    # a fast tokenizer keeps its truncation length as state: unguarded, threads truncated
    # with each other's length
    serial = {n: tiny_model.token_ids(texts, max_length=n) for n in range(4, 12)}
    results = run_threads(lambda i: tiny_model.token_ids(texts, max_length=4 + i % 8), calls=6)
    for i, ids in enumerate(results):
        assert ids == serial[4 + i % 8]


@pytest.mark.parametrize("mode", ["prototype", "knn"])
def test_intent_predict_from_8_threads_equals_serial(tiny_model, texts, mode):
    labels = [f"c{i % 6}" for i in range(len(texts))]
    clf = IntentClassifier(tiny_model, mode=mode, threshold=0.3).fit(texts, labels)
    serial = clf.predict(QUERIES), clf.predict_proba(QUERIES)
    results = run_threads(lambda i: (clf.predict(QUERIES), clf.predict_proba(QUERIES)))
    for pred, proba in results:
        np.testing.assert_array_equal(pred, serial[0])
        np.testing.assert_array_equal(proba, serial[1])


def test_is_duplicate_from_8_threads_equals_serial(tiny_model, texts):
    det = DuplicateDetector(tiny_model, threshold=0.8)
    a, b = texts[:40], texts[40:80]
    serial = det.is_duplicate(a, b), det.score(a, b)
    results = run_threads(lambda i: (det.is_duplicate(a, b), det.score(a, b)))
    for dup, score in results:
        np.testing.assert_array_equal(dup, serial[0])
        np.testing.assert_array_equal(score, serial[1])


@pytest.mark.parametrize("mode", ["prototype", "knn"])
def test_add_examples_while_predicting_shows_whole_states_only(tiny_model, mode):
    """Each prediction must equal the serial one before an edit or after it: a new class
    with part of its examples, or a prototype not yet updated, would give another."""
    base = (["I lost my card", "my card is gone", "hello there", "hi", "good morning"],
            ["card", "card", "greet", "greet", "greet"])
    edits = [(["what's the weather", "is it raining", "sunny today?", "forecast please"],
              "weather"),
             (["will it snow", "how cold is it", "weather tomorrow"], "weather"),
             (["book a table", "reserve dinner for two"], "booking")]
    queries = QUERIES + ["is it raining", "will it snow tomorrow", "dinner reservation"]
    def answer(c: IntentClassifier) -> tuple[list, np.ndarray]:
        return c.predict(queries).tolist(), c.predict_proba(queries)

    def same(a: tuple, b: tuple) -> bool:
        return a[0] == b[0] and a[1].shape == b[1].shape and np.array_equal(a[1], b[1])

    clf = IntentClassifier(tiny_model, mode=mode, n_neighbors=3).fit(*base)
    states = [answer(clf)]
    for x, label in edits:  # the serial answers after each edit
        states.append(answer(clf.add_examples(x, label)))
    assert not any(same(a, b) for i, a in enumerate(states) for b in states[i + 1 :])

    clf = IntentClassifier(tiny_model, mode=mode, n_neighbors=3).fit(*base)
    done = threading.Event()

    def edit() -> None:
        for x, label in edits:
            time.sleep(0.01)
            clf.add_examples(x, label)
        done.set()

    editor = threading.Thread(target=edit)
    editor.start()
    seen = run_threads(lambda i: answer(clf), n_threads=7, calls=6)
    editor.join()
    assert done.is_set()
    for pred, proba in seen:  # two calls: each may see another state, but a whole one
        assert any(pred == s[0] for s in states), f"labels from no whole state: {pred}"
        assert any(same((s[0], proba), s) for s in states), "probabilities from no whole state"
    assert same(answer(clf), states[-1])


def test_remove_class_while_predicting(tiny_model):
    clf = IntentClassifier(tiny_model).fit(["card", "lost card", "hello", "hi", "rain"],
                                           ["card", "card", "greet", "greet", "weather"])
    before = clf.predict(QUERIES).tolist()
    after = clf.remove_class("greet").predict(QUERIES).tolist()
    clf.add_examples(["hello", "hi"], "greet")
    assert clf.predict(QUERIES).tolist() == before
    flips = threading.Thread(target=lambda: [clf.remove_class("greet").add_examples(
        ["hello", "hi"], "greet") for _ in range(10)])
    flips.start()
    seen = run_threads(lambda i: clf.predict(QUERIES).tolist(), n_threads=7, calls=6)
    flips.join()
    assert all(p in (before, after) for p in seen)


def test_single_thread_restores_the_count_after_overlapping_callers():
    torch.set_num_threads(2)
    try:
        def hold(i: int) -> None:
            for _ in range(20):
                with single_thread(torch.device("cpu")):
                    time.sleep(0.0005 * (i % 3))

        run_threads(hold, calls=1)
        seen = []
        probe = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        probe.start()
        probe.join()
        assert torch.get_num_threads() == 2 and seen == [2]
    finally:
        torch.set_num_threads(1)
