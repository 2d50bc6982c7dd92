"""Folders saved by an earlier siamtext still load and answer as they did.

``tests/fixtures/classify_v1/`` was written by ``tests/fixtures/make_classify_folders.py`` at
commit 83aa4b2, before ``siamtext.classify`` was split into one-way modules; each folder's
``expected.json`` holds what that code answered.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from siamtext.classify import DuplicateDetector, IntentClassifier

FOLDERS = Path(__file__).resolve().parent / "fixtures" / "classify_v1"


def answers(folder: Path) -> dict:
    return json.loads((folder / "expected.json").read_text())


@pytest.mark.parametrize("name", ["intent_prototype", "intent_knn", "intent_logistic"])
def test_intent_folders_of_the_earlier_layout_give_the_same_answers(name):
    folder = FOLDERS / name
    want = answers(folder)
    clf = IntentClassifier.load(folder)
    q = np.asarray(want["queries"], dtype=np.float32)
    assert clf.model is None and clf.classes_.tolist() == ["a", "b", "c", "d"]
    assert clf.threshold_ is not None
    assert clf.predict(q).tolist() == want["predict"]
    np.testing.assert_allclose(clf.predict_proba(q), want["predict_proba"], atol=1e-6)
    np.testing.assert_allclose(clf.similarity(q), want["similarity"], atol=1e-6)
    if name == "intent_logistic":
        assert clf.C_ == clf.head_.C and clf.head_.info["C"] == clf.C_


def test_cascade_folder_of_the_earlier_layout_gives_the_same_answers():
    pytest.importorskip("model2vec")
    folder = FOLDERS / "intent_cascade"
    want = answers(folder)
    clf = IntentClassifier.load(folder, device="cpu")
    assert clf.first_pass is not None and clf.rerank_top == 3
    assert math.isfinite(clf.first_pass_gate)
    assert clf.first_pass_examples_.shape == (len(clf.example_classes_), 8)
    assert clf.predict(want["queries"]).tolist() == want["predict"]
    np.testing.assert_allclose(clf.predict_proba(want["queries"]), want["predict_proba"],
                               atol=1e-5)
    np.testing.assert_allclose(clf.similarity(want["queries"]), want["similarity"],
                               atol=1e-5)


def test_duplicate_detector_folder_of_the_earlier_layout_loads():
    det = DuplicateDetector.load(FOLDERS / "duplicate_detector")
    assert det.model is None and det.decision_threshold == 0.8 and det.batch_size == 8
