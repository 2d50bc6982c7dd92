"""Collators: rows of a dataset (dicts) -> ``{"features": [batch dict per column], "labels"}``.

A collator knows which columns hold texts and which holds the label. A text cell may be a
string (tokenised when the batch is built) or a list of token ids (already tokenised by
:func:`~siamtext.data.prepare.pretokenize`, then only padded), so one collator serves both
paths.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from siamtext.data.prepare import check_columns
from siamtext.validation import check_texts

if TYPE_CHECKING:
    from siamtext.model import SiamText


class TextCollator:
    """Turn rows into one tokenised batch dict per text column plus a label tensor.

    Args:
        model: The :class:`~siamtext.SiamText` whose tokenizer and device are used.
        text_columns: Names of the text columns, in the order the loss expects them.
        label_column: Name of the label column, or ``None`` when rows carry no label.
        label_dtype: dtype of the label tensor (``torch.float32`` for pair labels and
            scores, ``torch.long`` for class ids).
        max_length: Truncate texts to this many tokens (default: the model's limit).
        device: Where the batch tensors go (default: the model's device). The trainer pads
            on ``"cpu"`` and lets the data loader pin and copy the batch to the GPU without
            blocking.

    Returns (when called):
        ``{"features": [dict per text column], "labels": (batch,) tensor or None}``.
    """

    def __init__(self, model: SiamText, text_columns: Sequence[str], label_column: str | None,
                 label_dtype: torch.dtype = torch.float32, max_length: int | None = None,
                 device: str | torch.device | None = None) -> None:
        if not text_columns:
            raise ValueError("text_columns must name at least one column, got []")
        self.model = model
        self.text_columns = list(text_columns)
        self.label_column = label_column
        self.label_dtype = label_dtype
        self.max_length = max_length
        self.device = device

    @property
    def columns(self) -> list[str]:
        """Every column a row must have."""
        return self.text_columns + ([self.label_column] if self.label_column else [])

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        if not rows:
            raise ValueError("cannot collate an empty list of rows")
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise TypeError(f"rows[{i}] must be a mapping of column -> value, got "
                                f"{type(row).__name__}")
            check_columns(list(row), self.columns, f"rows[{i}]")
        features = []
        for col in self.text_columns:
            cells = [row[col] for row in rows]
            if isinstance(cells[0], str):
                ids = self.model.token_ids(check_texts(cells, f"column {col!r}"),
                                           self.max_length)
            else:
                ids = _check_token_ids(cells, col)
            features.append(self.model.pad(ids, self.device))
        labels = None
        if self.label_column is not None:
            labels = _label_tensor([row[self.label_column] for row in rows],
                                   self.label_dtype, self.label_column)
        return {"features": features, "labels": labels}


def _check_token_ids(cells: list[Any], column: str) -> list[Any]:
    """Pre-tokenised cells: each a non-empty sequence of token ids."""
    for i, cell in enumerate(cells):
        if isinstance(cell, (str, bytes)) or not hasattr(cell, "__len__"):
            raise TypeError(f"column {column!r}[{i}] must be a string or a list of token ids "
                            f"like the rows before it, got {type(cell).__name__}: {cell!r:.60}")
        if len(cell) == 0:
            raise ValueError(f"column {column!r}[{i}] is an empty list of token ids; "
                             "pretokenize() always keeps the special tokens")
    return cells


def _label_tensor(values: list[Any], dtype: torch.dtype, column: str) -> torch.Tensor:
    """Labels as a ``(batch,)`` tensor of ``dtype``; each must be a finite number (and a whole
    one for an integer dtype)."""
    try:
        exact = torch.as_tensor(values, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"column {column!r} must hold one number per row, got "
                        f"{values[:4]!r:.80}") from err
    if exact.ndim != 1:
        raise ValueError(f"column {column!r} must hold one number per row, got shape "
                         f"{tuple(exact.shape)}")
    bad = ~torch.isfinite(exact)
    if not dtype.is_floating_point:
        bad |= exact != exact.round()
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        kind = "finite numbers" if dtype.is_floating_point else "whole numbers (class ids)"
        raise ValueError(f"column {column!r}[{i}] is {values[i]!r}; labels must be {kind}")
    return torch.as_tensor(values, dtype=dtype)


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
        label: Column of the class ids (integers; see
            :func:`~siamtext.data.prepare.encode_labels` for strings).
        max_length: Truncate texts to this many tokens.
    """

    def __init__(self, model: SiamText, text: str = "text", label: str = "label",
                 max_length: int | None = None) -> None:
        super().__init__(model, [text], label, torch.long, max_length)
