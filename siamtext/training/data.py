"""Data preparation: map a loss's ``input_format`` to the data's columns, check the rows and
tokenise them for the collator."""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from siamtext.data.collators import (
    DEFAULT_COLUMNS,
    TokenizedDataset,
    check_columns,
    column_names,
    encode_labels,
    pretokenize,
)

if TYPE_CHECKING:
    from siamtext.model import SiamText


@dataclass
class DataSpec:
    """Which columns feed the loss: text columns in loss order and the label column."""

    text_columns: list[str]
    label_column: str | None
    label_dtype: torch.dtype = torch.float32
    classes: list[Any] = field(default_factory=list)


def resolve_columns(loss: nn.Module, data: Any, columns: Mapping[str, str] | None = None,
                    what: str = "train_dataset") -> DataSpec:
    """Map a loss's ``input_format`` to the data's columns and check that they exist.

    Args:
        loss: A siamtext loss (has ``input_format``).
        data: The dataset (for its column names).
        columns: Default name -> the data's name, e.g. ``{"sentence1": "question1",
            "label": "is_duplicate"}``.
        what: Name of the data in error messages.

    Raises:
        ValueError: Naming the missing columns and the existing ones.
    """
    fmt = getattr(loss, "input_format", None)
    if fmt not in DEFAULT_COLUMNS:
        raise ValueError(f"loss {type(loss).__name__} has input_format {fmt!r}; expected one "
                         f"of {sorted(DEFAULT_COLUMNS)}")
    columns = dict(columns or {})
    unknown = set(columns) - {c for t, lab in DEFAULT_COLUMNS.values() for c in (*t, lab) if c}
    unknown -= {"negative", "label"}
    if unknown:
        raise ValueError(f"columns has unknown key(s) {sorted(unknown)}; keys are the default "
                         "column names (sentence1, sentence2, anchor, positive, negative, "
                         "text, label)")
    available = column_names(data)
    texts, label = DEFAULT_COLUMNS[fmt]
    text_cols = [columns.get(c, c) for c in texts]
    label_col = columns.get(label, label) if label else None
    if fmt == "anchor_positive":
        neg = columns.get("negative", "negative")
        extra = sorted(c for c in available if c.startswith(neg) and c not in text_cols)
        text_cols += extra
        lab = columns.get("label", "label")
        label_col = lab if lab in available else None
    check_columns(available, text_cols + ([label_col] if label_col else []), what)
    dtype = torch.float32 if fmt in ("pair", "pair_score") else torch.long
    return DataSpec(text_cols, label_col, dtype)


def check_data(data: Any, spec: DataSpec, input_format: str, what: str = "train_dataset") -> None:
    """Fail before training on data the loss cannot learn from.

    Raises:
        ValueError: An empty dataset; pair labels outside {0, 1}; NaN or infinite scores;
            a single class (or no class with two rows) for the batch-mining losses.
    """
    n = len(data) if not isinstance(data, Mapping) else len(next(iter(data.values()), []))
    if n == 0:
        raise ValueError(f"{what} is empty (0 rows); training needs at least one row")
    if spec.label_column is None:
        return
    labels = _values(data, spec.label_column)
    if input_format == "pair":
        bad = sorted({v for v in labels if not _is_binary(v)}, key=repr)
        if bad:
            raise ValueError(f"{what}[{spec.label_column!r}] must be 0 or 1 for a contrastive "
                             f"loss (1 = similar), got other values {bad[:10]}")
    elif input_format == "pair_score":
        for i, v in enumerate(labels):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"{what}[{spec.label_column!r}][{i}] is {v!r}; scores must be "
                                 "finite numbers")
    elif input_format == "labelled":
        counts: dict[Hashable, int] = {}
        for v in labels:
            counts[v] = counts.get(v, 0) + 1
        if len(counts) < 2:
            raise ValueError(f"{what}[{spec.label_column!r}] has a single class "
                             f"{next(iter(counts))!r}: triplet mining needs at least two "
                             "classes (no negatives otherwise)")
        if max(counts.values()) < 2:
            raise ValueError(f"{what}[{spec.label_column!r}]: every class has one row, so "
                             "triplet mining finds no positive pairs")


def _is_binary(v: object) -> bool:
    try:
        return float(v) in (0.0, 1.0)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def _values(data: Any, name: str) -> list[Any]:
    if isinstance(data, Mapping) or hasattr(data, "column_names"):
        return list(data[name])
    return [row[name] for row in data]


def prepare_dataset(model: SiamText, data: Any, spec: DataSpec, pretokenized: bool,
                    what: str = "train_dataset") -> TokenizedDataset:
    """Rows ready for the collator: text columns tokenised (or kept as text), labels as
    numbers (class labels of any type become ids 0..C-1, kept in ``spec.classes``)."""
    if pretokenized:
        ds = pretokenize(model, data, spec.text_columns, spec.label_column, what=what)
    else:
        cols = {c: _values(data, c) for c in spec.text_columns}
        if spec.label_column:
            cols[spec.label_column] = _values(data, spec.label_column)
        first = cols[spec.text_columns[0]]
        ds = TokenizedDataset(cols, [max(len(cols[c][i]) for c in spec.text_columns) // 4 + 1
                                     for i in range(len(first))])
    if spec.label_column and spec.label_dtype == torch.long:
        ids, spec.classes = encode_labels(ds.columns[spec.label_column])
        ds.columns[spec.label_column] = ids
    elif spec.label_column:
        ds.columns[spec.label_column] = [float(v) for v in ds.columns[spec.label_column]]
    return ds
