"""The in-memory search structure of a local collection: exact below a size, IVF above.

Below :data:`IVF_FROM` items the vectors sit in a flat faiss index and every search is
exact (one matrix-vector product over all of them). From there on an inverted-file index
(``IndexIVFScalarQuantizer``, 8 bits per dimension, inner product on unit vectors) keeps the
vectors in ``nlist`` lists and scans the ``nprobe`` lists nearest a query, so a search reads
a few thousand vectors instead of a million. It proposes candidates (:data:`OVERFETCH` times
``k``, at least ``k`` + 10); the owner scores them exactly with their float vectors from the
rows and keeps the best ``k``, so every score returned is exact and only recall is
approximate. 8-bit codes take a quarter of the float vectors' memory (384 bytes an item at 384
dimensions, 0.36 GiB for a million), so the structure, its snapshot and its reload are four
times smaller. ``nlist`` follows the size (about ``2 sqrt(n)``), and ``nprobe`` is tuned, when
the structure is built, to the shallowest depth at which a sample of stored items finds
``recall_target`` of its exact ``k`` nearest among the candidates (the same rule as
:mod:`siamtext.classify.approximate`; the truth comes from the float vectors). As the
collection grows past :data:`RETRAIN_GROWTH` times the size it was trained at, the owner
rebuilds it.

The ids of the faiss index are the items' own int64 ids (no id map over IVF: the IVF
index's own ids with a hash-table direct map, which keeps removal fast and correct).
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
#: An IVF search asks for this many times ``k`` candidates (at least ``k`` + 10).
OVERFETCH = 2
#: The tuned depth is multiplied by this: stored items sit where the lists are dense, texts
#: never seen fall between them. Measured (benchmarks/index_online.py, 100,000 items): the
#: depth at which stored items reached recall@10 0.95 (nprobe 8) gave 2,000 held-out real
#: queries 0.90 to 0.92 (nprobe 12 to 16); they reached 0.985 at nprobe 32.
UNSEEN_MARGIN = 4
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
        index: ``IndexIDMap2(IndexFlatIP)`` (kind ``"flat"``: exact) or
            ``IndexIVFScalarQuantizer`` with 8-bit codes (kind ``"ivf"``: candidates).
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
        index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist,
                                              faiss.ScalarQuantizer.QT_8bit,
                                              faiss.METRIC_INNER_PRODUCT, False)
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

    def candidates(self, k: int) -> int:
        """How many candidates a search for ``k`` asks this structure for."""
        return k if self.kind == "flat" else max(OVERFETCH * k, k + 10)

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

    def tune(self, recall_target: float, queries: np.ndarray, query_ids: np.ndarray,
             truth: np.ndarray) -> None:
        """Set ``nprobe`` to :data:`UNSEEN_MARGIN` times the shallowest depth at which stored
        items ``query_ids`` (with vectors ``queries``) find ``recall_target`` of their exact
        nearest others ``truth`` (``(m, k)`` ids, -1 padded) among their candidates; the
        sample's recall at that depth is kept in ``recall``."""
        if self.kind != "ivf" or not len(queries):
            return
        k = truth.shape[1]
        want = [set(row[row >= 0].tolist()) for row in truth]
        total = sum(len(t) for t in want) or 1
        recall = 0.0
        def recall_at(depth: int) -> float:
            _, found = self.search(queries, self.candidates(k) + 1, nprobe=depth)
            return sum(len(t & set(row.tolist())) for t, row in zip(want, found)) / total

        for depth in [d for d in _DEPTHS if d < self.nlist] + [self.nlist]:
            recall = recall_at(depth)
            if recall >= recall_target:
                break
        if depth < self.nlist:  # new texts need more than stored items: see UNSEEN_MARGIN
            depth = min(self.nlist, UNSEEN_MARGIN * depth)
            recall = recall_at(depth)
        self.nprobe, self.recall = depth, recall
        logger.info("IVF %d lists over %d items: nprobe %d, sample recall@%d %.4f",
                    self.nlist, self.ntotal, depth, k, recall)

    # ------------------------------------------------------------------ snapshot
    def settings(self) -> dict[str, Any]:
        return {"kind": self.kind, "nprobe": self.nprobe, "trained_n": self.trained_n,
                "recall": self.recall, "nlist": self.nlist, "ntotal": self.ntotal}

    def write(self, path: str) -> None:
        faiss_module().write_index(self.index, path)

    def memory_bytes(self) -> int:
        """About what the stored vectors take in memory (codes and ids)."""
        per = self.index.code_size if self.kind == "ivf" else 4 * self.index.d
        return self.ntotal * (per + 8)

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


class ExactTopK:
    """The running exact ``k`` nearest (other) stored items of a few query items, merged
    chunk by chunk while a structure is built from the rows (the truth its search depth is
    tuned against, at the cost of one matrix product per chunk)."""

    def __init__(self, queries: np.ndarray, query_ids: np.ndarray, k: int = TUNE_K) -> None:
        self.queries, self.query_ids, self.k = queries, query_ids, k
        self.scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        self.ids = np.full((len(queries), k), -1, dtype=np.int64)

    def update(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if not len(self.queries) or not len(ids):
            return
        sims = self.queries @ vectors.T
        sims[self.query_ids[:, None] == ids[None, :]] = -np.inf  # not the item itself
        both_s = np.concatenate([self.scores, sims], axis=1)
        both_i = np.concatenate([self.ids, np.broadcast_to(ids, sims.shape)], axis=1)
        top = np.argsort(-both_s, axis=1, kind="stable")[:, : self.k]
        self.scores = np.take_along_axis(both_s, top, 1)
        self.ids = np.where(np.isfinite(self.scores), np.take_along_axis(both_i, top, 1), -1)
