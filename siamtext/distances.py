"""Distances and similarities between embeddings, looked up by name.

Two shapes of every measure:

* ``paired_*``: row ``i`` of ``a`` against row ``i`` of ``b``, shape ``(n,)``.
* ``pairwise_*``: every row of ``a`` against every row of ``b``, shape ``(n, m)``.

Distances grow as texts grow apart; ``cosine`` distance is ``1 - cosine similarity``. The
table is keyed by plain strings so that a loss's distance serialises into its JSON config.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F

DistanceName = Literal["euclidean", "manhattan", "cosine"]


def cosine_similarity_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every row of ``a`` with every row of ``b``.

    Shapes: ``(n, d), (m, d) -> (n, m)``.
    """
    return F.normalize(a, p=2, dim=-1) @ F.normalize(b, p=2, dim=-1).T


def paired_euclidean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distance between matching rows: ``(n, d), (n, d) -> (n,)``."""
    return (a - b).pow(2).sum(dim=-1).clamp(min=1e-12).sqrt()


def paired_manhattan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Manhattan (L1) distance between matching rows: ``(n, d), (n, d) -> (n,)``."""
    return (a - b).abs().sum(dim=-1)


def paired_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine distance ``1 - cos(a_i, b_i)`` between matching rows: ``(n, d), (n, d) -> (n,)``."""
    return 1.0 - F.cosine_similarity(a, b, dim=-1)


def pairwise_euclidean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distance of every row of ``a`` to every row of ``b``: ``(n, m)``.

    Computed from squared norms and one matrix product, clamped at a tiny positive value so
    that the gradient of the square root stays finite on the diagonal.
    """
    squared = (
        a.pow(2).sum(dim=-1, keepdim=True)
        - 2.0 * a @ b.T
        + b.pow(2).sum(dim=-1).unsqueeze(0)
    )
    return squared.clamp(min=1e-12).sqrt()


def pairwise_manhattan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Manhattan distance of every row of ``a`` to every row of ``b``: ``(n, m)``."""
    return torch.cdist(a, b, p=1)


def pairwise_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine distance of every row of ``a`` to every row of ``b``: ``(n, m)``."""
    return 1.0 - cosine_similarity_matrix(a, b)


PAIRED: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "euclidean": paired_euclidean,
    "manhattan": paired_manhattan,
    "cosine": paired_cosine,
}
PAIRWISE: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "euclidean": pairwise_euclidean,
    "manhattan": pairwise_manhattan,
    "cosine": pairwise_cosine,
}


def _check(name: str) -> None:
    if name not in PAIRED:
        raise ValueError(f"distance must be one of {sorted(PAIRED)}, got {name!r}")


def paired_distance(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The row-wise distance function called ``name``.

    Raises:
        ValueError: If ``name`` is not one of ``"euclidean"``, ``"manhattan"``, ``"cosine"``.
    """
    _check(name)
    return PAIRED[name]


def pairwise_distance(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The all-pairs distance function called ``name``.

    Raises:
        ValueError: If ``name`` is not one of ``"euclidean"``, ``"manhattan"``, ``"cosine"``.
    """
    _check(name)
    return PAIRWISE[name]
