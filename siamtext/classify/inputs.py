"""Checking and embedding what an intent classifier is given: texts or vectors, and labels."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from siamtext.classify import storage
from siamtext.classify.search import single_thread
from siamtext.validation import check_texts

if TYPE_CHECKING:
    from siamtext.model import SiamText


def embed(X: object, model: SiamText | None, *, batch_size: int, device: torch.device,
          dim: int | None = None, name: str = "X") -> torch.Tensor:
    """Normalised ``(n, dim)`` float32 embeddings of texts or of precomputed vectors.

    Args:
        X: A text, a list of texts (or a numpy array of strings), or ``(n, dim)`` vectors
            (numpy or torch).
        model: The encoder for texts, or ``None`` (then ``X`` must be vectors).
        batch_size: Encoding batch size.
        device: Where vectors go.
        dim: The dimension they must have (the stored examples'), or ``None``.
        name: The argument's name, for errors.

    Raises:
        ValueError: Naming ``name``: vectors that are not 2-D, hold NaN or infinity, or have
            another dimension than ``dim``; texts without a model.
    """
    if isinstance(X, np.ndarray):
        X = X.tolist() if X.dtype.kind in "UO" else torch.from_numpy(
            np.asarray(X, dtype=np.float32))
    if isinstance(X, torch.Tensor):
        if X.ndim != 2:
            raise ValueError(f"{name} embeddings must be 2-D (n, dim), got shape "
                             f"{tuple(X.shape)}")
        emb = X.to(device, torch.float32)
    else:
        texts = check_texts(X, name)
        if model is None:
            raise ValueError(f"{name} holds texts but this IntentClassifier has no model; "
                             "pass embeddings or build it with IntentClassifier(SiamText())")
        if not texts:
            return torch.zeros((0, model.embedding_dim), device=device)
        emb = model.encode(texts, batch_size=batch_size, convert_to="torch")
    if not bool(torch.isfinite(emb).all()):
        row = int((~torch.isfinite(emb)).any(dim=1).nonzero()[0])
        raise ValueError(f"{name} embeddings hold NaN or infinite values (row {row})")
    if dim is not None and emb.shape[1] != dim:
        raise ValueError(f"{name} has dimension {emb.shape[1]}, the stored examples have "
                         f"{dim}")
    with single_thread(emb.device):
        return F.normalize(emb.float(), p=2, dim=-1)


def labels(y: object, n: int, name: str = "y") -> list[str | int]:
    """``y`` as ``n`` JSON-safe labels of one type.

    Raises:
        ValueError: If there are not ``n`` of them.
        TypeError: For a label that is not a string or an integer, or a mix of both.
    """
    out = [storage.json_label(v, name) for v in np.asarray(y, dtype=object).ravel()]
    if len(out) != n:
        raise ValueError(f"X and {name} must have the same length, got {n} and {len(out)}")
    if len({type(v) for v in out}) > 1:
        raise TypeError(f"{name} mixes strings and integers; use one type")
    return out


def is_empty(X: object) -> bool:
    """Whether ``X`` is an empty list/tuple or an array with no rows."""
    return isinstance(X, (list, tuple)) and not X or getattr(X, "shape", (1,))[0] == 0
