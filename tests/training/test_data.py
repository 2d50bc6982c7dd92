"""Data checks: bad rows are rejected before training, columns are mapped and named."""

from __future__ import annotations

from typing import ClassVar

import pytest

from siamtext import SiamText
from siamtext.training import check_data, fit, resolve_columns

from .toys import ToyLabelledLoss, ToyPairLoss


def test_contrastive_labels_outside_0_1_are_rejected(model: SiamText) -> None:
    data = {"sentence1": ["a", "b"], "sentence2": ["c", "d"], "label": [1, 2]}
    with pytest.raises(ValueError, match=r"must be 0 or 1 .*\[2\]"):
        fit(model, data, ToyPairLoss(model))


def test_nan_scores_are_rejected(model: SiamText) -> None:
    class ScoreLoss(ToyPairLoss):
        input_format: ClassVar[str] = "pair_score"

    data = {"sentence1": ["a", "b"], "sentence2": ["c", "d"], "label": [0.5, float("nan")]}
    with pytest.raises(ValueError, match=r"\['label'\]\[1\] is nan; scores must be finite"):
        fit(model, data, ScoreLoss(model))


def test_single_class_is_rejected_for_triplet_mining(model: SiamText) -> None:
    data = {"text": ["a", "b", "c"], "label": ["x", "x", "x"]}
    with pytest.raises(ValueError, match="single class 'x'.*at least two classes"):
        fit(model, data, ToyLabelledLoss(model))


def test_one_row_per_class_is_rejected_for_triplet_mining(model: SiamText) -> None:
    data = {"text": ["a", "b", "c"], "label": ["x", "y", "z"]}
    with pytest.raises(ValueError, match="every class has one row"):
        fit(model, data, ToyLabelledLoss(model))


def test_empty_dataset_is_rejected(model: SiamText) -> None:
    with pytest.raises(ValueError, match="train_dataset is empty"):
        fit(model, {"text": [], "label": []}, ToyLabelledLoss(model))


def test_missing_columns_are_named(model: SiamText) -> None:
    data = {"question1": ["a"], "question2": ["b"], "label": [1]}
    with pytest.raises(ValueError, match=r"missing column\(s\) \['sentence1', 'sentence2'\]; "
                                         r"it has columns \['question1', 'question2', 'label'\]"):
        fit(model, data, ToyPairLoss(model))


def test_resolve_columns_maps_names_and_finds_negatives(model: SiamText) -> None:
    class InBatch(ToyLabelledLoss):
        input_format: ClassVar[str] = "anchor_positive"

    data = {"q": ["a"], "positive": ["b"], "negative": ["c"], "label": [0]}
    spec = resolve_columns(InBatch(model), data, {"anchor": "q"})
    assert spec.text_columns == ["q", "positive", "negative"]
    assert spec.label_column == "label"
    check_data(data, spec, "anchor_positive")
