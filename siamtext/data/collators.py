"""Collators: rows of a dataset (dicts) -> ``{"features": [batch dict per column], "labels"}``.

A collator knows which columns hold texts and which holds the label. A text cell may be a
string (tokenised when the batch is built) or a list of token ids (already tokenised by
:func:`pretokenize`, then only padded), so one collator serves both paths.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import Dataset

if TYPE_CHECKING:
    from siamtext.model import SiamText

#: Default text columns and label column of each input format (see ``siamtext.losses``).
DEFAULT_COLUMNS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "pair": (("sentence1", "sentence2"), "label"),
    "pair_score": (("sentence1", "sentence2"), "label"),
    "triplet": (("anchor", "positive", "negative"), None),
    "labelled": (("text",), "label"),
    "anchor_positive": (("anchor", "positive"), None),
}


def column_names(data: object) -> list[str]:
    """The column names of a ``datasets.Dataset``, a dict of lists or a list of dicts."""
    names = getattr(data, "column_names", None)
    if names is not None:
        return list(names)
    if isinstance(data, Mapping):
        return list(data)
    if isinstance(data, Sequence) and len(data) and isinstance(data[0], Mapping):
        return list(data[0])
    return []


def check_columns(available: Sequence[str], required: Sequence[str], what: str = "dataset") -> None:
    """Raise ``ValueError`` naming the missing columns and the ones that exist.

    Args:
        available: The columns the data has.
        required: The columns needed.
        what: How to call the data in the message, e.g. ``"train_dataset"``.
    """
    missing = [c for c in required if c not in available]
    if missing:
        raise ValueError(f"{what} is missing column(s) {missing}; it has columns "
                         f"{list(available)}. Rename them or pass the column names, e.g. "
                         "columns={'sentence1': 'question1'}.")


class TextCollator:
    """Turn rows into one tokenised batch dict per text column plus a label tensor.

    Args:
        model: The :class:`~siamtext.SiamText` whose tokenizer and device are used.
        text_columns: Names of the text columns, in the order the loss expects them.
        label_column: Name of the label column, or ``None`` when rows carry no label.
        label_dtype: dtype of the label tensor (``torch.float32`` for pair labels and
            scores, ``torch.long`` for class ids).
        max_length: Truncate texts to this many tokens (default: the model's limit).

    Returns (when called):
        ``{"features": [dict per text column], "labels": (batch,) tensor or None}``.
    """

    def __init__(self, model: SiamText, text_columns: Sequence[str], label_column: str | None,
                 label_dtype: torch.dtype = torch.float32, max_length: int | None = None) -> None:
        if not text_columns:
            raise ValueError("text_columns must name at least one column, got []")
        self.model = model
        self.text_columns = list(text_columns)
        self.label_column = label_column
        self.label_dtype = label_dtype
        self.max_length = max_length

    @property
    def columns(self) -> list[str]:
        """Every column a row must have."""
        return self.text_columns + ([self.label_column] if self.label_column else [])

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        if not rows:
            raise ValueError("cannot collate an empty list of rows")
        check_columns(list(rows[0]), self.columns, "row")
        features = []
        for col in self.text_columns:
            cells = [row[col] for row in rows]
            if isinstance(cells[0], str):
                ids = self.model.token_ids(cells, self.max_length)
            else:
                ids = cells
            features.append(self.model.pad(ids))
        labels = None
        if self.label_column is not None:
            labels = torch.as_tensor([row[self.label_column] for row in rows],
                                     dtype=self.label_dtype)
        return {"features": features, "labels": labels}


class PairCollator(TextCollator):
    """Rows ``(sentence1, sentence2, label)``: a 0/1 label or a graded score (float).

    Args:
        model: The model whose tokenizer pads the batch.
        sentence1: Column of the first texts.
        sentence2: Column of the second texts.
        label: Column of the labels or scores.
        max_length: Truncate texts to this many tokens.
    """

    def __init__(self, model: SiamText, sentence1: str = "sentence1",
                 sentence2: str = "sentence2", label: str = "label",
                 max_length: int | None = None) -> None:
        super().__init__(model, [sentence1, sentence2], label, torch.float32, max_length)


class TripletCollator(TextCollator):
    """Rows ``(anchor, positive, negative)``, or ``(anchor, positive)`` with ``negative=None``.

    Args:
        model: The model whose tokenizer pads the batch.
        anchor: Column of the anchors.
        positive: Column of the positives.
        negative: Column of the negatives, or ``None`` for (anchor, positive) rows (in-batch
            negatives).
        label: Optional class-id column (e.g. for masking same-class in-batch negatives).
        max_length: Truncate texts to this many tokens.
    """

    def __init__(self, model: SiamText, anchor: str = "anchor", positive: str = "positive",
                 negative: str | None = "negative", label: str | None = None,
                 max_length: int | None = None) -> None:
        columns = [anchor, positive] + ([negative] if negative else [])
        super().__init__(model, columns, label, torch.long, max_length)


class LabelledCollator(TextCollator):
    """Rows ``(text, label)`` with an integer class id, for the batch-mining losses.

    Args:
        model: The model whose tokenizer pads the batch.
        text: Column of the texts.
        label: Column of the class ids (integers; see :func:`encode_labels` for strings).
        max_length: Truncate texts to this many tokens.
    """

    def __init__(self, model: SiamText, text: str = "text", label: str = "label",
                 max_length: int | None = None) -> None:
        super().__init__(model, [text], label, torch.long, max_length)


def encode_labels(labels: Sequence[Any]) -> tuple[list[int], list[Any]]:
    """Class labels of any hashable type -> (integer ids, classes in id order)."""
    classes: dict[Any, int] = {}
    ids = [classes.setdefault(label, len(classes)) for label in labels]
    return ids, list(classes)


class TokenizedDataset(Dataset):
    """Rows whose text columns hold token ids, built once by :func:`pretokenize`.

    Attributes:
        columns: Column name -> list of values (token id lists for text columns).
        lengths: Longest token sequence of each row, for length-grouped batching.
    """

    def __init__(self, columns: dict[str, list[Any]], lengths: list[int]) -> None:
        self.columns = columns
        self.lengths = lengths

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {name: values[index] for name, values in self.columns.items()}

    @property
    def column_names(self) -> list[str]:
        return list(self.columns)


def pretokenize(model: SiamText, data: Any, text_columns: Sequence[str],
                label_column: str | None = None, max_length: int | None = None,
                what: str = "dataset") -> TokenizedDataset:
    """Tokenise every text column of ``data`` once, so batches are only padded.

    Args:
        model: The model whose tokenizer is used.
        data: A ``datasets.Dataset``, a dict of lists or a list of dicts.
        text_columns: Columns holding texts.
        label_column: Column holding labels (kept as they are), or ``None``.
        max_length: Truncate to this many tokens (default: the model's limit).
        what: Name of the data in error messages.

    Returns:
        A :class:`TokenizedDataset` with the text columns as token ids.

    Raises:
        ValueError: If a column is missing or the data is empty.
    """
    wanted = list(text_columns) + ([label_column] if label_column else [])
    check_columns(column_names(data), wanted, what)
    table = {name: _column(data, name) for name in wanted}
    n = len(table[wanted[0]])
    if n == 0:
        raise ValueError(f"{what} is empty (0 rows); training needs at least one row")
    lengths = [0] * n
    for name in text_columns:
        texts = table[name]
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"{what}[{name!r}][{i}] must be a string, got "
                                f"{type(text).__name__}: {text!r:.60}")
        ids = model.token_ids(texts, max_length)
        table[name] = ids
        lengths = [max(a, len(b)) for a, b in zip(lengths, ids, strict=True)]
    return TokenizedDataset(table, lengths)


def _column(data: Any, name: str) -> list[Any]:
    if isinstance(data, Mapping):
        return list(data[name])
    if hasattr(data, "column_names"):  # datasets.Dataset: columnar access is fast
        return list(data[name])
    return [row[name] for row in data]


def check_finite(values: Sequence[float], what: str) -> None:
    """Raise ``ValueError`` if any value is NaN or infinite, naming the first one."""
    for i, v in enumerate(values):
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            raise ValueError(f"{what}[{i}] is {v!r}; scores must be finite numbers")
