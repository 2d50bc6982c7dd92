"""siamtext.classify.examples: the stored classes as immutable snapshots."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from siamtext.classify import IntentClassifier
from siamtext.classify import examples as ex

E = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])


def test_from_labels_sorts_the_classes_and_means_each_class():
    state = ex.from_labels(E, ["b", "a", "b"])
    assert state.labels == ["a", "b"] and state.example_classes.tolist() == [1, 0, 1]
    # b = normalise([1, 0] + [0.6, 0.8]) = [1.6, 0.8] / sqrt(3.2)
    s = 3.2 ** 0.5
    torch.testing.assert_close(state.prototypes, torch.tensor([[0.0, 1.0], [1.6 / s, 0.8 / s]]))
    assert state.dim == 2 and state.head is None and state.static is None and state.ids is None


def test_from_rows_keeps_the_order_of_first_appearance_and_the_ids():
    state = ex.from_rows(E, ["b", "a", "b"], ids=np.array([7, 9, 12]))
    assert state.labels == ["b", "a"] and state.example_classes.tolist() == [0, 1, 0]
    assert ex.class_ids(state, "b").tolist() == [7, 12]


def test_with_examples_appends_a_new_class_last_and_leaves_the_old_snapshot_alone():
    old = ex.from_labels(E[:2], ["a", "b"], static=torch.eye(2))
    new = ex.with_examples(old, E[2:], "c", static=torch.ones(1, 2))
    assert new.labels == ["a", "b", "c"] and new.example_classes.tolist() == [0, 1, 2]
    assert new.static.examples.shape == (3, 2) and new.static.prototypes.shape == (3, 2)
    torch.testing.assert_close(new.static.prototypes[2], torch.tensor([0.5, 0.5]) * 2 ** 0.5)
    assert old.labels == ["a", "b"] and len(old.examples) == 2  # untouched
    more = ex.with_examples(new, E[:1], "b", static=torch.zeros(1, 2))
    assert more.labels == ["a", "b", "c"] and more.example_classes.tolist() == [0, 1, 2, 1]
    first = ex.with_examples(None, E[:1], 5)
    assert first.labels == [5] and first.example_classes.tolist() == [0]


def test_without_class_renumbers_the_rest():
    state = ex.from_rows(E, ["a", "b", "c"], static=torch.eye(3)[:, :2], ids=np.array([1, 2, 3]))
    out = ex.without_class(state, "b")
    assert out.labels == ["a", "c"] and out.example_classes.tolist() == [0, 1]
    assert out.ids.tolist() == [1, 3] and out.static.examples.tolist() == [[1, 0], [0, 0]]
    with pytest.raises(ValueError, match=r"label 'z' is not a stored class \(2 classes"):
        ex.without_class(out, "z")
    with pytest.raises(ValueError, match="cannot remove 'a': it is the only class"):
        ex.without_class(ex.without_class(out, "c"), "a")


def test_a_slow_edit_never_shows_half_a_state(monkeypatch):
    """While an edit builds the next snapshot (made slow on purpose), predictions answer
    from the whole previous one, without waiting; afterwards from the whole new one."""
    X = np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0.1, 0.9, 0]], dtype=np.float32)
    clf = IntentClassifier().fit(X, ["a", "a", "b", "b"])
    queries = np.array([[1, 0, 0], [0, 0, 1]], dtype=np.float32)
    before = clf.predict_proba(queries)
    real = ex.build
    building = threading.Event()

    def slow_build(*args, **kwargs):
        building.set()
        time.sleep(0.3)
        return real(*args, **kwargs)

    monkeypatch.setattr(ex, "build", slow_build)
    editor = threading.Thread(target=clf.add_examples,
                              args=(np.array([[0, 0, 1]], dtype=np.float32), "c"))
    editor.start()
    assert building.wait(10)
    during = clf.predict_proba(queries)  # answers from the previous snapshot
    assert editor.is_alive()  # the edit was still building: no lock made the query wait
    editor.join()
    np.testing.assert_array_equal(during, before)
    after = clf.predict_proba(queries)
    assert after.shape == (2, 3) and clf.predict(queries).tolist() == ["a", "c"]
