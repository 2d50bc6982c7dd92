"""Data preparation: columns mapped and named, bad rows rejected before training, rows
tokenised once and labels encoded, for each form data comes in."""

from __future__ import annotations

import datasets
import pytest
import torch
from torch import nn

from siamtext.data.prepare import (
    DataSpec,
    check_data,
    check_finite,
    column_names,
    encode_labels,
    prepare_dataset,
    pretokenize,
    resolve_columns,
)


class _Loss(nn.Module):
    """What resolve_columns reads of a loss: its input_format."""

    def __init__(self, input_format: str) -> None:
        super().__init__()
        self.input_format = input_format


def _checked(data: dict, fmt: str) -> None:
    check_data(data, resolve_columns(_Loss(fmt), data), fmt)


def test_contrastive_labels_outside_0_1_are_rejected() -> None:
    data = {"sentence1": ["a", "b"], "sentence2": ["c", "d"], "label": [1, 2]}
    with pytest.raises(ValueError, match=r"must be 0 or 1 .*\[2\]"):
        _checked(data, "pair")
    _checked({**data, "label": [1, 0.0]}, "pair")


def test_nan_scores_are_rejected() -> None:
    data = {"sentence1": ["a", "b"], "sentence2": ["c", "d"], "label": [0.5, float("nan")]}
    with pytest.raises(ValueError, match=r"\['label'\]\[1\] is nan; scores must be finite"):
        _checked(data, "pair_score")
    with pytest.raises(ValueError, match=r"scores\[1\] is inf; scores must be finite"):
        check_finite([0.5, float("inf")], "scores")


def test_single_class_is_rejected_for_triplet_mining() -> None:
    with pytest.raises(ValueError, match="single class 'x'.*at least two classes"):
        _checked({"text": ["a", "b", "c"], "label": ["x", "x", "x"]}, "labelled")


def test_single_class_is_rejected_for_in_batch_negatives_without_a_negative_column() -> None:
    rows = {"anchor": ["a", "b"], "positive": ["c", "d"], "label": ["x", "x"]}
    with pytest.raises(ValueError, match="single class 'x': masking same-class rows leaves no"):
        _checked(rows, "anchor_positive")
    _checked({**rows, "negative": ["e", "f"]}, "anchor_positive")  # hard negatives remain
    _checked({**rows, "label": ["x", "y"]}, "anchor_positive")


def test_one_row_per_class_is_rejected_for_triplet_mining() -> None:
    with pytest.raises(ValueError, match="every class has one row"):
        _checked({"text": ["a", "b", "c"], "label": ["x", "y", "z"]}, "labelled")


def test_empty_dataset_is_rejected() -> None:
    with pytest.raises(ValueError, match="train_dataset is empty"):
        _checked({"text": [], "label": []}, "labelled")


def test_missing_columns_and_unknown_keys_are_named() -> None:
    data = {"question1": ["a"], "question2": ["b"], "label": [1]}
    with pytest.raises(ValueError, match=r"missing column\(s\) \['sentence1', 'sentence2'\]; "
                                         r"it has columns \['question1', 'question2', 'label'\]"):
        resolve_columns(_Loss("pair"), data)
    with pytest.raises(ValueError, match=r"columns has unknown key\(s\) \['question1'\]"):
        resolve_columns(_Loss("pair"), data, {"question1": "sentence1"})
    with pytest.raises(ValueError, match="has input_format 'rows'; expected one of"):
        resolve_columns(_Loss("rows"), data)


def test_resolve_columns_maps_names_and_finds_negatives() -> None:
    data = {"q": ["a"], "positive": ["b"], "negative": ["c"], "label": [0]}
    spec = resolve_columns(_Loss("anchor_positive"), data, {"anchor": "q"})
    assert spec.text_columns == ["q", "positive", "negative"]
    assert spec.label_column == "label"
    assert spec.label_dtype == torch.long
    check_data(data, spec, "anchor_positive")
    pairs = resolve_columns(_Loss("pair"), {"a": [], "b": [], "dup": []},
                            {"sentence1": "a", "sentence2": "b", "label": "dup"})
    assert (pairs.text_columns, pairs.label_column, pairs.label_dtype) == (
        ["a", "b"], "dup", torch.float32)


@pytest.mark.parametrize("form", ["dict", "rows", "dataset"])
def test_every_form_of_data_gives_the_same_rows(tiny_model, form: str) -> None:
    columns = {"text": ["I lost my card", "book a table", "weather"], "label": ["b", "a", "b"]}
    data = {"dict": columns,
            "rows": [dict(zip(columns, r, strict=True)) for r in zip(*columns.values(),
                                                                      strict=True)],
            "dataset": datasets.Dataset.from_dict(columns)}[form]
    assert column_names(data) == ["text", "label"]
    spec = DataSpec(["text"], "label", torch.long)
    rows = prepare_dataset(tiny_model, data, spec, pretokenized=True)
    assert rows.columns["text"] == tiny_model.token_ids(columns["text"])
    assert rows.columns["label"] == [0, 1, 0] and spec.classes == ["b", "a"]
    assert rows.lengths == [len(ids) for ids in rows.columns["text"]]
    raw = prepare_dataset(tiny_model, data, DataSpec(["text"], None), pretokenized=False)
    assert raw[1] == {"text": "book a table"}  # texts kept, tokenised per batch
    assert raw.lengths == [len(t) // 4 + 1 for t in columns["text"]]


def test_scores_become_floats(tiny_model) -> None:
    data = {"sentence1": ["a", "b"], "sentence2": ["c", "d"], "label": [1, 0]}
    spec = resolve_columns(_Loss("pair"), data)
    rows = prepare_dataset(tiny_model, data, spec, pretokenized=True)
    assert rows.columns["label"] == [1.0, 0.0] and spec.classes == []


def test_pretokenize_gives_token_ids_and_longest_lengths(tiny_model) -> None:
    pairs = datasets.Dataset.from_dict({
        "sentence1": ["I lost my card", "what is the weather like"],
        "sentence2": ["my card is gone, please help me block it", "book a table"],
        "label": [1, 0],
    })
    rows = pretokenize(tiny_model, pairs, ["sentence1", "sentence2"], "label")
    assert len(rows) == 2 and rows.column_names == ["sentence1", "sentence2", "label"]
    assert rows.lengths == [max(len(a), len(b)) for a, b in zip(
        tiny_model.token_ids(pairs["sentence1"]), tiny_model.token_ids(pairs["sentence2"]),
        strict=True)]
    assert rows[1]["label"] == 0


def test_label_encoding() -> None:
    ids, classes = encode_labels(["b", "a", "b", "c"])
    assert ids == [0, 1, 0, 2] and classes == ["b", "a", "c"]


def test_pretokenize_errors(tiny_model) -> None:
    with pytest.raises(ValueError, match="dataset is empty"):
        pretokenize(tiny_model, {"text": []}, ["text"])
    with pytest.raises(TypeError, match=r"dataset\['text'\]\[1\] must be a string, got int"):
        pretokenize(tiny_model, {"text": ["a", 3]}, ["text"])
    with pytest.raises(ValueError, match=r"missing column\(s\) \['text'\]"):
        pretokenize(tiny_model, [{"sentence": "a"}], ["text"])
