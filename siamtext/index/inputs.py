"""The checks :class:`~siamtext.index.collection.Index` runs on every input before any work
starts: ids, labels, metadata, thresholds, embeddings (as unit float32 rows) and the encoder
against the fingerprint a collection was filled with."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from siamtext.index import fingerprint as fp
from siamtext.index.base import Label, check_metadata
from siamtext.validation import check_label

if TYPE_CHECKING:
    from siamtext.model import SiamText

_INT64 = (-(2**63), 2**63 - 1)


def check_model(stored: dict | None, model: SiamText, precision: str, where: str) -> None:
    if stored is None:
        raise ValueError(f"{where} holds vectors given by the user (no model was attached "
                         f"when it was created); open it with model=None and pass embeddings")
    given = fp.fingerprint(model, precision)
    diff = fp.differences(stored, given)
    if diff:
        raise ValueError(f"{where} was filled by encoder {stored.get('model')!r}, not by "
                         f"{given['model']!r}: {'; '.join(diff)}. Its vectors would not be "
                         "comparable: open it with the model that filled it, or build a new "
                         "collection")


def check_threshold(threshold: object) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating)) \
            or not -1.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must be a cosine similarity in [-1, 1], got {threshold!r}")
    return float(threshold)


def check_ids(ids: object, name: str) -> np.ndarray:
    if isinstance(ids, (str, bytes)) or not isinstance(ids, (Sequence, np.ndarray)):
        raise TypeError(f"{name} must be a list of integers, got {type(ids).__name__}")
    out = []
    for i, v in enumerate(ids):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{name}[{i}] must be an integer, got {type(v).__name__}: {v!r:.40}")
        if not _INT64[0] <= int(v) <= _INT64[1]:
            raise ValueError(f"{name}[{i}] = {v} does not fit in int64")
        out.append(int(v))
    return np.asarray(out, dtype=np.int64)


def check_labels(labels: object, n: int) -> list[Label | None]:
    if labels is None:
        return [None] * n
    if isinstance(labels, (str, int, np.integer, np.str_)) and not isinstance(labels, bool):
        return [check_label(labels, "labels")] * n
    if not isinstance(labels, (Sequence, np.ndarray)):
        raise TypeError(f"labels must be a label, a list of labels or None, got "
                        f"{type(labels).__name__}")
    if len(labels) != n:
        raise ValueError(f"labels has {len(labels)} items for {n} items")
    return [None if v is None else check_label(v, f"labels[{i}]") for i, v in enumerate(labels)]


def check_metadata_list(metadata: object, n: int) -> list[dict | None]:
    if metadata is None:
        return [None] * n
    if isinstance(metadata, dict) or not isinstance(metadata, Sequence):
        raise TypeError("metadata must be a list of dicts (one per item) or None, got "
                        f"{type(metadata).__name__}")
    if len(metadata) != n:
        raise ValueError(f"metadata has {len(metadata)} items for {n} items")
    return [check_metadata(m, f"metadata[{i}]") for i, m in enumerate(metadata)]


def to_numpy(x: object) -> np.ndarray:
    """``x`` (a torch tensor, array or nested list) as a NumPy array."""
    if hasattr(x, "detach"):  # a torch tensor
        return x.detach().cpu().float().numpy()
    return np.asarray(x)


def as_matrix(x: object, dim: int, name: str) -> np.ndarray:
    """``x`` as a C-contiguous ``(n, dim)`` float32 array of unit rows."""
    try:
        arr = to_numpy(x)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be an array of shape (n, {dim}): {err}") from None
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ValueError(f"{name} must have shape (n, {dim}) for this collection, got "
                         f"{tuple(np.shape(x))}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        row = int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0])
        raise ValueError(f"{name} row {row} holds NaN or infinite values")
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError(f"{name} row {int(np.flatnonzero(norms[:, 0] == 0)[0])} is all zeros: "
                         "it has no direction to compare")
    return arr / norms


def few(values: list, most: int = 10) -> str:
    shown = ", ".join(str(v) for v in values[:most])
    return shown + (f" and {len(values) - most} more" if len(values) > most else "")
