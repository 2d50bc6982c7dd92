"""Rejection thresholds by hand."""

from __future__ import annotations

import numpy as np
import pytest

from siamtext.classify.rejection import threshold_for_accuracy, threshold_for_recall


def test_threshold_for_recall_by_hand():
    scores = np.array([0.9, 0.5, 0.7, 0.3])  # sorted: 0.3 0.5 0.7 0.9
    assert threshold_for_recall(scores, 1.0) == (0.3, 1.0)
    t, recall = threshold_for_recall(scores, 0.75)  # drop one: midway between 0.3 and 0.5
    assert t == pytest.approx(0.4) and recall == 0.75
    t, recall = threshold_for_recall(scores, 0.6)  # floor(0.4 * 4) = 1 dropped
    assert t == pytest.approx(0.4) and recall == 0.75
    assert threshold_for_recall(np.array([0.2]), 0.1) == (0.2, 1.0)  # never drops every one


def test_threshold_for_accuracy_by_hand():
    # in-scope and right: 0.9, 0.8; in-scope but wrong: 0.6; out of scope: 0.7, 0.2
    scores = np.array([0.9, 0.8, 0.6, 0.7, 0.2])
    right = np.array([True, True, False, False, False])
    oos = np.array([False, False, False, True, True])
    t, acc = threshold_for_accuracy(scores, right, oos)
    # any threshold in (0.7, 0.8] accepts 0.9 and 0.8 and rejects the rest: 4 of 5 right
    assert 0.7 < t <= 0.8 and acc == pytest.approx(0.8)
    brute = max(((right & (scores >= c)) | (oos & (scores < c))).mean()
                for c in np.linspace(0, 1, 1001))
    assert acc == pytest.approx(brute)
