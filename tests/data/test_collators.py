"""Collators on a real ``datasets.Dataset``: tokenised features per column, labels, errors."""

from __future__ import annotations

import datasets
import pytest
import torch

from siamtext.data.collators import LabelledCollator, PairCollator, TextCollator, TripletCollator
from siamtext.data.prepare import pretokenize


@pytest.fixture(scope="module")
def pairs() -> datasets.Dataset:
    return datasets.Dataset.from_dict({
        "sentence1": ["I lost my card", "what is the weather like"],
        "sentence2": ["my card is gone, please help me block it", "book a table"],
        "label": [1, 0],
    })


def test_pair_collator_on_a_dataset(tiny_model, pairs: datasets.Dataset) -> None:
    batch = PairCollator(tiny_model)([pairs[0], pairs[1]])
    assert len(batch["features"]) == 2
    f1, f2 = batch["features"]
    expected = tiny_model.tokenize(pairs["sentence1"])
    torch.testing.assert_close(f1["input_ids"], expected["input_ids"])
    torch.testing.assert_close(f1["attention_mask"], expected["attention_mask"])
    assert f2["input_ids"].shape[0] == 2
    assert f2["attention_mask"].sum(1).tolist() == [
        len(x) for x in tiny_model.token_ids(pairs["sentence2"])]
    assert batch["labels"].dtype == torch.float32
    assert batch["labels"].tolist() == [1.0, 0.0]


def test_pretokenized_rows_give_the_same_batch(tiny_model, pairs: datasets.Dataset) -> None:
    rows = pretokenize(tiny_model, pairs, ["sentence1", "sentence2"], "label")
    collate = PairCollator(tiny_model)
    from_ids = collate([rows[0], rows[1]])
    from_text = collate([pairs[0], pairs[1]])
    for a, b in zip(from_ids["features"], from_text["features"], strict=True):
        torch.testing.assert_close(a["input_ids"], b["input_ids"])
    torch.testing.assert_close(from_ids["labels"], from_text["labels"])


def test_custom_column_names_and_missing_columns(tiny_model) -> None:
    rows = [{"q1": "a", "q2": "b", "dup": 1}]
    batch = PairCollator(tiny_model, sentence1="q1", sentence2="q2", label="dup")(rows)
    assert batch["labels"].tolist() == [1.0]
    with pytest.raises(ValueError, match=r"rows\[0\] is missing column\(s\) \['sentence1', "
                                         r"'sentence2', 'label'\]; it has columns "
                                         r"\['q1', 'q2', 'dup'\]"):
        PairCollator(tiny_model)(rows)


def test_triplet_and_anchor_positive_collators(tiny_model) -> None:
    rows = [{"anchor": "a", "positive": "b", "negative": "c"}] * 3
    batch = TripletCollator(tiny_model)(rows)
    assert len(batch["features"]) == 3 and batch["labels"] is None
    pairs = [{"anchor": "a", "positive": "b", "label": 4}]
    batch = TripletCollator(tiny_model, negative=None, label="label")(pairs)
    assert len(batch["features"]) == 2
    assert batch["labels"].dtype == torch.long and batch["labels"].tolist() == [4]


def test_labelled_collator(tiny_model) -> None:
    batch = LabelledCollator(tiny_model)([{"text": "x", "label": 0}, {"text": "y z", "label": 2}])
    assert batch["labels"].tolist() == [0, 2]
    assert batch["features"][0]["input_ids"].shape[0] == 2


def test_collator_errors(tiny_model) -> None:
    with pytest.raises(ValueError, match="cannot collate an empty list of rows"):
        PairCollator(tiny_model)([])
    with pytest.raises(ValueError, match="text_columns must name at least one column"):
        TextCollator(tiny_model, [], None)
