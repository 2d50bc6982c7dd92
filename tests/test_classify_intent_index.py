"""siamtext.classify.intent_index: an IntentClassifier's examples kept in a siamtext.index."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from siamtext.classify import IntentClassifier
from siamtext.index import Index, IndexLockedError

X = np.array([[1, 0.1, 0, 0], [0.9, 0, 0.2, 0], [0, 1, 0.1, 0], [0.1, 0.9, 0, 0.1],
              [0, 0, 1, 0.2], [0, 0.1, 0.8, 0]], dtype=np.float32)
Y = ["b", "b", "a", "a", "c", "c"]
D = np.array([[0, 0, 0.1, 1]], dtype=np.float32)
Q = np.random.default_rng(0).standard_normal((12, 4)).astype(np.float32)
MODES = {"prototype": {"mode": "prototype"}, "knn": {"mode": "knn", "n_neighbors": 2},
         "logistic": {"mode": "logistic", "C": 10.0}}


def answers(clf: IntentClassifier) -> tuple:
    return clf.predict(Q), clf.predict_proba(Q), clf.similarity(Q)


def assert_same(a: tuple, b: tuple) -> None:
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("mode", list(MODES))
def test_predictions_are_identical_after_a_reopen(tmp_path, mode):
    path = tmp_path / "intents"
    clf = IntentClassifier(index=path, threshold=0.2, **MODES[mode]).fit(X, Y)
    clf.add_examples(D, "d")
    clf.add_examples(np.array([[0.5, 0.5, 0, 0]], dtype=np.float32), "a")
    clf.remove_class("c")
    before = answers(clf)
    assert clf.classes_.tolist() == ["a", "b", "d"] and "unknown" in before[0].tolist()
    clf.close()
    with IntentClassifier.open(path, threshold=0.2, **MODES[mode]) as again:
        assert again.classes_.tolist() == ["a", "b", "d"]
        assert_same(answers(again), before)
        if mode == "logistic":
            assert again.C_ == 10.0


def test_the_in_memory_and_the_indexed_classifier_agree(tmp_path):
    memory = IntentClassifier(mode="knn", n_neighbors=2).fit(X, Y).add_examples(D, "d")
    live = IntentClassifier(mode="knn", n_neighbors=2, index=tmp_path / "i").fit(X, Y)
    live.add_examples(D, "d")
    assert live.classes_.tolist() == memory.classes_.tolist() == ["a", "b", "c", "d"]
    assert live.predict(Q).tolist() == memory.predict(Q).tolist()
    np.testing.assert_allclose(live.predict_proba(Q), memory.predict_proba(Q), atol=1e-6)
    live.close()


def test_edits_are_increments_of_the_collection(tmp_path):
    clf = IntentClassifier(index=tmp_path / "i").fit(X, Y)
    index = clf.index_
    # fit wrote the rows grouped by class, classes sorted: a, a, b, b, c, c
    items = list(index)
    assert [it.label for it in items] == ["a", "a", "b", "b", "c", "c"]
    first = [it.id for it in items]
    clf.add_examples(D, "d")
    items = list(index)
    assert [it.id for it in items][:6] == first and items[-1].label == "d"
    assert items[-1].id > max(first)
    clf.remove_class("b")
    assert [it.label for it in index] == ["a", "a", "c", "c", "d"]
    assert [it.id for it in index] == [first[0], first[1], first[4], first[5], items[-1].id]
    # a refit replaces the rows: new ids, the old ones gone
    clf.fit(X[:2], ["x", "x"])
    assert [it.label for it in index] == ["x", "x"] and min(it.id for it in index) > items[-1].id
    clf.close()


def test_a_classifier_given_the_path_continues_the_collection(tmp_path):
    path = tmp_path / "i"
    IntentClassifier(index=path).fit(X, Y).close()
    clf = IntentClassifier(index=path).add_examples(D, "d")
    assert clf.classes_.tolist() == ["a", "b", "c", "d"] and len(clf.index_) == 7
    clf.close()
    given = Index.open(path)
    clf = IntentClassifier.open(given)
    clf.close()  # not its own: the index stays open
    assert len(given) == 7
    given.close()


READER = textwrap.dedent("""
    import json, sys
    import numpy as np
    from siamtext.classify import IntentClassifier

    q = np.asarray(json.loads(sys.argv[2]), dtype=np.float32)
    clf = IntentClassifier.open(sys.argv[1], mode="knn", n_neighbors=2, readonly=True)
    for line in sys.stdin:
        if line.strip() == "refresh":
            clf.refresh()
        print(json.dumps({"classes": clf.classes_.tolist(), "predict": clf.predict(q).tolist(),
                          "proba": clf.predict_proba(q).tolist()}), flush=True)
""")


def ask(proc: subprocess.Popen, line: str, timeout: float = 120) -> dict:
    proc.stdin.write(line + "\n")
    proc.stdin.flush()
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"the reader did not answer: {proc.stderr.read() if proc.poll() else ''}"
    return json.loads(proc.stdout.readline())


def test_a_reader_process_sees_a_class_added_after_its_next_refresh(tmp_path):
    path = tmp_path / "i"
    writer = IntentClassifier(mode="knn", n_neighbors=2, index=path).fit(X, Y)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", READER, str(path), json.dumps(Q.tolist())],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert ask(proc, "show")["classes"] == ["a", "b", "c"]
        writer.add_examples(D, "d")
        assert ask(proc, "show")["classes"] == ["a", "b", "c"]  # not before its refresh
        seen = ask(proc, "refresh")
        assert seen["classes"] == ["a", "b", "c", "d"]
        assert seen["predict"] == writer.predict(Q).tolist() and "d" in seen["predict"]
        np.testing.assert_array_equal(np.asarray(seen["proba"], dtype=np.float32),
                                      writer.predict_proba(Q))
        writer.remove_class("a")
        assert ask(proc, "refresh")["classes"] == ["b", "c", "d"]
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
        writer.close()
    assert proc.returncode == 0, proc.stderr.read()


def test_cascade_with_the_tiny_tower_reads_its_static_state_back(tmp_path, tiny_model, corpus):
    pytest.importorskip("model2vec")
    static = tiny_model.distill_static(pca_dims=8)
    texts, labels = corpus[:40], [f"c{i % 5}" for i in range(40)]
    queries = corpus[40:60]
    kwargs = {"mode": "knn", "n_neighbors": 2, "first_pass": static, "rerank_top": 3}
    clf = IntentClassifier(tiny_model, index=tmp_path / "i", **kwargs).fit(texts, labels)
    clf.add_examples(["where is my parcel", "my package has not arrived"], "delivery")
    before = (clf.predict(queries), clf.predict_proba(queries), clf.first_pass_examples_)
    assert [it.text for it in clf.index_][-2:] == ["where is my parcel",
                                                   "my package has not arrived"]
    clf.close()
    again = IntentClassifier.open(tmp_path / "i", tiny_model, **kwargs)
    np.testing.assert_array_equal(again.predict(queries), before[0])
    np.testing.assert_array_equal(again.predict_proba(queries), before[1])
    np.testing.assert_array_equal(again.first_pass_examples_.numpy(), before[2].numpy())
    again.close()


def test_bad_input_changes_nothing(tmp_path):
    with pytest.raises(TypeError, match="index must be a path .* got int"):
        IntentClassifier(index=3).fit(X, Y)
    with pytest.raises(ValueError, match="mode='logistic' with an index needs C="):
        IntentClassifier(mode="logistic", index=tmp_path / "l").fit(X, Y)
    assert not (tmp_path / "l").exists()
    clf = IntentClassifier(index=tmp_path / "i").fit(X, Y)
    with pytest.raises(ValueError, match="label 'z' is not a stored class"):
        clf.remove_class("z")
    with pytest.raises(ValueError, match="X has dimension 3, the stored examples have 4"):
        clf.add_examples(np.ones((1, 3), dtype=np.float32), "d")
    with pytest.raises(TypeError, match="label must be a str like the stored classes"):
        clf.add_examples(D, 7)
    assert len(clf.index_) == 6 and clf.classes_.tolist() == ["a", "b", "c"]
    with pytest.raises(IndexLockedError):
        IntentClassifier.open(tmp_path / "i")
    reader = IntentClassifier.open(tmp_path / "i", readonly=True)
    with pytest.raises(PermissionError, match="readonly"):
        reader.add_examples(D, "d")
    with pytest.raises(PermissionError, match="readonly"):
        reader.remove_class("a")
    assert reader.classes_.tolist() == ["a", "b", "c"]
    reader.close()
    clf.close()
    with pytest.raises(FileNotFoundError, match="no collection at"):
        IntentClassifier.open(tmp_path / "missing")
    with pytest.raises(ValueError, match="refresh needs a classifier opened on an index"):
        IntentClassifier().fit(X, Y).refresh()


def test_an_index_without_labels_is_refused(tmp_path):
    index = Index.create(tmp_path / "raw", dim=4)
    index.add(embeddings=X[:2])
    index.close()
    with pytest.raises(ValueError, match=r"items \[0, 1\] of the collection have no label"):
        IntentClassifier.open(tmp_path / "raw")
    # the refused collection was closed again: a writer may open it
    Index.open(tmp_path / "raw").close()


def test_an_unread_classifier_says_how_to_read_its_collection(tmp_path):
    from sklearn.exceptions import NotFittedError

    IntentClassifier(index=tmp_path / "i").fit(X, Y).close()
    with pytest.raises(NotFittedError, match=r"IntentClassifier.open\(index, model\)"):
        IntentClassifier(index=tmp_path / "i").predict(Q)


def test_integer_labels_round_trip(tmp_path):
    clf = IntentClassifier(index=tmp_path / "i").fit(X, [2, 2, 1, 1, 3, 3])
    clf.add_examples(D, 0)
    before = clf.predict(Q)
    clf.close()
    again = IntentClassifier.open(tmp_path / "i")
    assert again.classes_.tolist() == [1, 2, 3, 0]
    np.testing.assert_array_equal(again.predict(Q), before)
    again.close()
