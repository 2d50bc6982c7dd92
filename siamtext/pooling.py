"""Pooling: turn per-token embeddings into one sentence embedding.

Each function takes ``token_embeddings`` of shape ``(batch, seq_len, dim)`` and an
``attention_mask`` of shape ``(batch, seq_len)`` (1 for real tokens, 0 for padding) and
returns ``(batch, dim)``. Padding never contributes, so a sentence's embedding does not
depend on how much padding its batch needed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import torch

PoolingName = Literal["mean", "cls", "max"]


def mean_pooling(token_embeddings: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average of the token embeddings, padding excluded (the Sentence-BERT default)."""
    mask = attention_mask.unsqueeze(-1).to(token_embeddings.dtype)
    summed = (token_embeddings * mask).sum(dim=1)
    counts = mask.sum(dim=1).clamp(min=1e-9)
    return summed / counts


def cls_pooling(token_embeddings: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The embedding of the first token ([CLS] for BERT-style models)."""
    return token_embeddings[:, 0]


def max_pooling(token_embeddings: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Element-wise maximum over the real tokens."""
    mask = attention_mask.unsqueeze(-1).bool()
    lowest = torch.finfo(token_embeddings.dtype).min
    return token_embeddings.masked_fill(~mask, lowest).max(dim=1).values


POOLING: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "mean": mean_pooling,
    "cls": cls_pooling,
    "max": max_pooling,
}


def get_pooling(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Look up a pooling function by name.

    Args:
        name: One of ``"mean"``, ``"cls"``, ``"max"``.

    Returns:
        The pooling function.

    Raises:
        ValueError: If ``name`` is not a known pooling.
    """
    try:
        return POOLING[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"pooling must be one of {sorted(POOLING)}, got {name!r}"
        ) from None


def pool_arrays(name: str, token_embeddings: np.ndarray, attention_mask: np.ndarray
                ) -> np.ndarray:
    """The pooling ``name`` in NumPy, for an inference engine's output (ONNX Runtime,
    OpenVINO): the same maths as the torch functions above, without a torch call, each of
    which lets the GIL go and then waits to take it back (measured in the server's lanes:
    :meth:`siamtext.serve.batcher.Batcher._embed`).

    Args:
        name: One of ``"mean"``, ``"cls"``, ``"max"``.
        token_embeddings: ``(batch, seq_len, dim)`` float32.
        attention_mask: ``(batch, seq_len)``, 1 for real tokens.

    Returns:
        ``(batch, dim)`` float32.

    Raises:
        ValueError: If ``name`` is not a known pooling.
    """
    get_pooling(name)  # the same error for an unknown name
    if name == "cls":
        return token_embeddings[:, 0]
    mask = attention_mask.astype(token_embeddings.dtype)
    if name == "max":
        lowest = np.finfo(token_embeddings.dtype).min
        return np.where(mask[..., None] > 0, token_embeddings, lowest).max(axis=1)
    summed = np.matmul(mask[:, None, :], token_embeddings)[:, 0]  # one call: sum over tokens
    return summed / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
