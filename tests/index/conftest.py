"""Hand-built vectors for the collection tests: unit rows with a known brute-force answer."""

from __future__ import annotations

import numpy as np
import pytest


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def clustered(n: int, dim: int, clusters: int = 50, spread: float = 0.35,
              seed: int = 0) -> np.ndarray:
    """``n`` unit vectors around ``clusters`` random centres (as sentence embeddings
    cluster by topic)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    x = centres[rng.integers(clusters, size=n)] + spread * rng.standard_normal((n, dim))
    return unit(x)


def brute_force(x: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """The exact ``k`` nearest of each query: ``(scores, ids)``, best first (ties by id)."""
    sims = q @ x.T
    order = np.lexsort((np.broadcast_to(ids, sims.shape), -sims), axis=1)[:, :k]
    return np.take_along_axis(sims, order, 1), ids[order]


@pytest.fixture()
def square() -> np.ndarray:
    """Four 2-d unit vectors at 0, 30, 90 and 180 degrees: cosines are known by hand."""
    angles = np.deg2rad([0, 30, 90, 180])
    return np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
