"""Data preparation: map a loss's ``input_format`` to the data's columns, check the rows, and
turn them into a :class:`TokenizedDataset` for the collators.

The path from user data to collator-ready rows, in order: :func:`resolve_columns` (which
columns feed the loss, as a :class:`DataSpec`), :func:`check_data` (fail before training on
rows the loss cannot learn from), :func:`prepare_dataset` (texts tokenised once by
:func:`pretokenize`, class labels encoded by :func:`encode_labels`). Data may be a
``datasets.Dataset``, a dict of lists or a list of dicts.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
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


@dataclass
class DataSpec:
    """Which columns feed the loss: text columns in loss order and the label column."""

    text_columns: list[str]
    label_column: str | None
    label_dtype: torch.dtype = torch.float32
    classes: list[Any] = field(default_factory=list)


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


# ---------------------------------------------------------------------------- columns
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


def resolve_columns(loss: nn.Module, data: Any, columns: Mapping[str, str] | None = None,
                    what: str = "train_dataset") -> DataSpec:
    """Map a loss's ``input_format`` to the data's columns and check that they exist.

    Args:
        loss: A siamtext loss (has ``input_format``).
        data: The dataset (for its column names).
        columns: Default name -> the data's name, e.g. ``{"sentence1": "question1",
            "label": "is_duplicate"}``.
        what: Name of the data in error messages.

    Returns:
        The :class:`DataSpec`; for ``anchor_positive`` rows every column whose name starts
        with the negative column's name is a further text column, and a ``label`` column
        is used when present.

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


# ---------------------------------------------------------------------------- checks
def check_data(data: Any, spec: DataSpec, input_format: str, what: str = "train_dataset") -> None:
    """Fail before training on data the loss cannot learn from.

    Args:
        data: The dataset.
        spec: Its columns, from :func:`resolve_columns`.
        input_format: The loss's ``input_format``.
        what: Name of the data in error messages.

    Raises:
        ValueError: An empty dataset; pair labels outside {0, 1}; NaN or infinite scores;
            a single class (or no class with two rows) for the batch-mining losses; a single
            class for (anchor, positive, label) rows without a negative column (masking
            same-class rows would leave every anchor only its own positive).
    """
    n = len(data) if not isinstance(data, Mapping) else len(next(iter(data.values()), []))
    if n == 0:
        raise ValueError(f"{what} is empty (0 rows); training needs at least one row")
    if spec.label_column is None:
        return
    labels = _column(data, spec.label_column)
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
    elif input_format == "anchor_positive" and len(spec.text_columns) == 2:
        classes = set(labels)
        if len(classes) < 2:
            raise ValueError(f"{what}[{spec.label_column!r}] has a single class "
                             f"{next(iter(classes))!r}: masking same-class rows leaves no "
                             "in-batch negative, so nothing would be learnt; drop the label "
                             "column (every other row is then a negative) or add a negative "
                             "column")
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


def check_finite(values: Sequence[float], what: str) -> None:
    """Raise ``ValueError`` if any value is NaN or infinite, naming the first one."""
    for i, v in enumerate(values):
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            raise ValueError(f"{what}[{i}] is {v!r}; scores must be finite numbers")


def _is_binary(v: object) -> bool:
    try:
        return float(v) in (0.0, 1.0)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


# ---------------------------------------------------------------------------- rows
def encode_labels(labels: Sequence[Any]) -> tuple[list[int], list[Any]]:
    """Class labels of any hashable type -> (integer ids, classes in id order)."""
    classes: dict[Any, int] = {}
    ids = [classes.setdefault(label, len(classes)) for label in labels]
    return ids, list(classes)


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
        TypeError: If a text cell is not a string, naming the column and the row.
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


def prepare_dataset(model: SiamText, data: Any, spec: DataSpec, pretokenized: bool,
                    what: str = "train_dataset") -> TokenizedDataset:
    """Rows ready for the collator.

    Args:
        model: The model whose tokenizer is used when ``pretokenized``.
        data: The dataset.
        spec: Its columns, from :func:`resolve_columns`; ``spec.classes`` is filled with the
            class labels in id order when the labels are class labels.
        pretokenized: Tokenise the text columns now (else they stay texts, tokenised per
            batch by the collator, and ``lengths`` are estimated as characters / 4).
        what: Name of the data in error messages.

    Returns:
        A :class:`TokenizedDataset` whose labels are numbers: class labels of any type
        become ids 0..C-1, pair labels and scores become floats.
    """
    if pretokenized:
        ds = pretokenize(model, data, spec.text_columns, spec.label_column, what=what)
    else:
        cols = {c: _column(data, c) for c in spec.text_columns}
        if spec.label_column:
            cols[spec.label_column] = _column(data, spec.label_column)
        first = cols[spec.text_columns[0]]
        ds = TokenizedDataset(cols, [max(len(cols[c][i]) for c in spec.text_columns) // 4 + 1
                                     for i in range(len(first))])
    if spec.label_column and spec.label_dtype == torch.long:
        ids, spec.classes = encode_labels(ds.columns[spec.label_column])
        ds.columns[spec.label_column] = ids
    elif spec.label_column:
        ds.columns[spec.label_column] = [float(v) for v in ds.columns[spec.label_column]]
    return ds


def _column(data: Any, name: str) -> list[Any]:
    """One column as a list; columnar access for dicts of lists and ``datasets.Dataset``."""
    if isinstance(data, Mapping) or hasattr(data, "column_names"):
        return list(data[name])
    return [row[name] for row in data]
