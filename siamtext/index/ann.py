"""The in-memory search structure of a local collection: exact below a size, IVF above.

Below :data:`IVF_FROM` items the vectors sit in a flat faiss index and every search is
exact (one matrix-vector product over all of them). From there on an inverted-file index
(``IndexIVFFlat``, inner product on unit vectors) keeps the full vectors in ``nlist`` lists
and scans the ``nprobe`` lists nearest a query, so a search reads a few thousand vectors
instead of a million; its scores are exact for what it finds. ``nlist`` follows the size
(about ``2 sqrt(n)``), and ``nprobe`` is tuned, when the structure is built, to the
shallowest depth at which a sample of stored items finds ``recall_target`` of its exact
``k`` nearest (the same rule as :mod:`siamtext.classify.approximate`). As the collection
grows past :data:`RETRAIN_GROWTH` times the size it was trained at, the owner rebuilds it.

The ids of the faiss index are the items' own int64 ids (no id map over IVF: the IVF
index's own ids with a hash-table direct map, which keeps removal and ``reconstruct`` fast
and correct).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from siamtext.extras import require

logger = logging.getLogger(__name__)

#: Items from which an IVF index replaces exact search (exact search of one query over
#: 20,000 384-d vectors takes about 1 ms here; at 100,000 it takes 5 to 10).
IVF_FROM = 20_000
#: Rebuild (retrain) the IVF index once the collection is this many times its trained size.
RETRAIN_GROWTH = 4.0
TUNE_QUERIES = 256
TUNE_K = 10
#: Calls on fewer rows than this run on one thread (:func:`_threads_for`).
SMALL_CALL = 1000
_DEPTHS = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)


def faiss_module() -> Any:
    return require("faiss", "index", "siamtext.index", "pip install faiss-cpu")


def nlist_for(n: int) -> int:
    """Lists of an IVF index over ``n`` vectors: about ``2 sqrt(n)``, a power of two, 64 to
    65,536 (1,000,000 items: 2,048 lists of about 500)."""
    return min(max(2 ** round(math.log2(2 * math.sqrt(max(n, 1)))), 64), 65536)


@dataclass
class Structure:
    """A faiss index with what is needed to search it as it was tuned.

    Attributes:
        index: ``IndexIDMap2(IndexFlatIP)`` (kind ``"flat"``) or ``IndexIVFFlat``
            (kind ``"ivf"``).
        kind: ``"flat"`` or ``"ivf"``.
        nprobe: Lists scanned per query (IVF).
        trained_n: Items the IVF index was trained at (0 for flat).
        recall: The tuning sample's recall at ``nprobe`` (``None`` for flat: exact).
    """

    index: Any
    kind: str = "flat"
    nprobe: int | None = None
    trained_n: int = 0
    recall: float | None = None

    # ------------------------------------------------------------------ building
    @classmethod
    def flat(cls, dim: int) -> Structure:
        faiss = faiss_module()
        return cls(faiss.IndexIDMap2(faiss.IndexFlatIP(dim)), "flat")

    @classmethod
    def ivf(cls, train: np.ndarray, n: int, seed: int = 0) -> Structure:
        """An empty IVF index for about ``n`` items, trained on the vectors ``train``."""
        faiss = faiss_module()
        dim = train.shape[1]
        nlist = min(nlist_for(n), max(1, len(train) // 39))  # faiss wants >= 39 per list
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.train(np.ascontiguousarray(train, dtype=np.float32))
        index.set_direct_map_type(faiss.DirectMap.Hashtable)
        return cls(index, "ivf", nprobe=min(16, nlist), trained_n=n)

    @staticmethod
    def train_size(n: int) -> int:
        """How many vectors to train an IVF index for ``n`` items on."""
        return min(n, max(40 * nlist_for(n), 10_000))

    # ------------------------------------------------------------------ updates
    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def nlist(self) -> int | None:
        return int(self.index.nlist) if self.kind == "ivf" else None

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            with _threads_for(len(ids)):
                self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32),
                                        np.ascontiguousarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> int:
        if not len(ids):
            return 0
        return int(self.index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64)))

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        return self.index.reconstruct_batch(np.ascontiguousarray(ids, dtype=np.int64))

    # ------------------------------------------------------------------ search
    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None,
               nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, ids)`` of shape ``(m, k)``, best first; id -1 where fewer were found.
        ``allowed`` restricts the search to those ids."""
        faiss = faiss_module()
        q = np.ascontiguousarray(queries, dtype=np.float32)
        sel = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64)) \
            if allowed is not None else None
        with _threads_for(len(q)):
            if self.kind == "ivf":
                params = faiss.SearchParametersIVF(nprobe=nprobe or self.nprobe or 1)
                if sel is not None:
                    params.sel = sel
                return self.index.search(q, k, params=params)
            if sel is not None:
                return self.index.search(q, k, params=faiss.SearchParameters(sel=sel))
            return self.index.search(q, k)

    def tune(self, recall_target: float, rng: np.random.Generator, k: int = TUNE_K) -> None:
        """Set ``nprobe`` to the shallowest depth at which a sample of stored items finds
        ``recall_target`` of its ``k`` exact nearest others (an exhaustive scan of the same
        index is the truth)."""
        if self.kind != "ivf" or self.ntotal <= k + 1:
            return
        ids = _sample_ids(self.index, min(TUNE_QUERIES, self.ntotal), rng)
        q = self.reconstruct(ids)
        truth = _neighbours(self.search(q, k + 1, nprobe=self.nlist)[1], ids, k)
        total = sum(len(t) for t in truth) or 1
        recall = 0.0
        for depth in [d for d in _DEPTHS if d < self.nlist] + [self.nlist]:
            found = _neighbours(self.search(q, k + 1, nprobe=depth)[1], ids, k)
            recall = sum(len(t & f) for t, f in zip(truth, found, strict=True)) / total
            if recall >= recall_target:
                break
        self.nprobe, self.recall = depth, recall
        logger.info("IVF %d lists over %d items: nprobe %d, sample recall@%d %.4f",
                    self.nlist, self.ntotal, depth, k, recall)

    # ------------------------------------------------------------------ snapshot
    def settings(self) -> dict[str, Any]:
        return {"kind": self.kind, "nprobe": self.nprobe, "trained_n": self.trained_n,
                "recall": self.recall, "nlist": self.nlist, "ntotal": self.ntotal}

    def write(self, path: str) -> None:
        faiss_module().write_index(self.index, path)

    @classmethod
    def read(cls, path: str, settings: dict[str, Any]) -> Structure:
        faiss = faiss_module()
        index = faiss.read_index(path)
        kind = settings.get("kind")
        if kind == "ivf":
            index.set_direct_map_type(faiss.DirectMap.Hashtable)
        elif kind != "flat":
            raise ValueError(f"{path}: unknown search structure {kind!r}")
        return cls(index, kind, settings.get("nprobe"), int(settings.get("trained_n") or 0),
                   settings.get("recall"))


@contextmanager
def _threads_for(rows: int) -> Iterator[None]:
    """Run a small faiss call (a few queries, a batch of 100 items) on one OpenMP thread.

    Measured on these 2 cores with other work running: adding 100 vectors to an IVF index
    took 39 ms on two threads and 7 ms on one (the threads wait for each other). OpenMP's
    thread count is a setting of the calling thread, so other threads are not affected.
    """
    if rows >= SMALL_CALL:
        yield
        return
    faiss = faiss_module()
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _sample_ids(index: Any, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` ids stored in ``index``, at random (read from its lists or its id map)."""
    faiss = faiss_module()
    if hasattr(index, "invlists"):
        inv, ids = index.invlists, []
        for lst in range(inv.nlist):
            size = inv.list_size(lst)
            if size:
                ids.append(faiss.rev_swig_ptr(inv.get_ids(lst), size).copy())
        pool = np.concatenate(ids)
    else:
        pool = faiss.vector_to_array(index.id_map)
    return rng.choice(pool, size=min(n, len(pool)), replace=False)


def _neighbours(found: np.ndarray, ids: np.ndarray, k: int) -> list[set[int]]:
    return [set(row[(row != i) & (row >= 0)][:k].tolist()) for row, i in zip(found, ids)]
