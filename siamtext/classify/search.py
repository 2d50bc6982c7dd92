"""Similar pairs inside one set of embeddings: exact blocked search, and groups
(:mod:`siamtext.classify.approximate` has the faiss search).

The exact search never holds an ``n x n`` matrix. It walks the upper triangle of the
similarity matrix in ``block_size x block_size`` tiles, so every pair is scored once, and
keeps for each row a running top-k (``n x k`` floats). A tile contributes to the top-k of its
rows and of its columns at once. Most entries of a tile cannot enter any top-k (they are below
their row's and their column's current k-th best, or below ``threshold``): one comparison
with the lowest k-th best of the tile screens them out, and the few entries left are merged
without any sort. Half the matrix products and no full top-k over the rows make this faster
than a top-k over every row of the full matrix.

A pair ``(i, j)`` is returned when ``j`` is among the ``top_k`` most similar items of ``i``
or ``i`` among those of ``j`` (the rule of
``sentence_transformers.util.paraphrase_mining_embeddings``), and its similarity is at least
``threshold``. With ``top_k=None`` every pair at or above ``threshold`` is returned. When a
``top_k`` cap leaves out pairs at or above a threshold (> -1), the exact search counts them
and warns with the count, so no pair above the threshold is lost silently.
"""

from __future__ import annotations

import logging
import sys
import threading
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

DEFAULT_BLOCK_SIZE = 4096
# Most pairs a search with top_k=None may return (about 1 GB while they are sorted): past it
# the search stops with an error instead of filling the memory.
MAX_PAIRS = 20_000_000
_threads_lock = threading.Lock()
_threads_users = 0  # callers inside single_thread, over all Python threads
_threads_saved = 0  # the thread count to restore when the last one leaves


def _progress(total: int, show: bool | None, desc: str) -> tqdm:
    if show is None:
        show = total >= 16 and sys.stderr.isatty()
    return tqdm(total=total, desc=desc, disable=not show)


@contextmanager
def single_thread(device: torch.device):
    """Run small CPU tensor operations on one thread.

    Between two matrix products come many small operations; on a busy machine every
    multi-threaded one waits for its slowest thread (measured here: a 256 x 384 normalise
    took 16 ms on two threads, 0.1 ms on one). The products keep all threads.

    The thread count is process-wide, so calls from several Python threads share one
    setting: the first to enter saves the count and the last to leave restores it (a save
    and restore per call would let overlapping calls leave the process on one thread).
    Other threads' work runs on one thread meanwhile; results do not depend on it.
    """
    global _threads_users, _threads_saved
    if device.type != "cpu":
        yield
        return
    with _threads_lock:
        if _threads_users == 0:
            _threads_saved = torch.get_num_threads()
            torch.set_num_threads(1)
        _threads_users += 1
    try:
        yield
    finally:
        with _threads_lock:
            _threads_users -= 1
            if _threads_users == 0:
                torch.set_num_threads(_threads_saved)


def _merge_topk(
    vals: torch.Tensor, idx: torch.Tensor, base: int, rows: torch.Tensor, cols: torch.Tensor,
    scores: torch.Tensor, tile: torch.Tensor, col_base: int,
) -> None:
    """Merge candidates into the running top-k of rows ``base .. base + len(tile)``, in place.

    ``rows`` are local row numbers of ``tile`` in ascending order (grouped), ``cols`` global
    item indices. A row with few candidates gets them packed into a small ``-inf``-padded
    matrix; a row with many gets the top-k of its whole ``tile`` row (columns start at global
    index ``col_base``). One ``topk`` over ``[current top-k | candidates]`` per row keeps the
    best ``k``; nothing is sorted.
    """
    k = vals.shape[1]
    width = 2 * k
    counts = torch.bincount(rows, minlength=tile.shape[0])
    heavy = counts > width
    touched = counts.nonzero().squeeze(1)
    slot_of_row = torch.cumsum(counts > 0, 0) - 1
    pos = torch.arange(rows.numel(), device=rows.device) - (torch.cumsum(counts, 0) - counts)[rows]
    light = ~heavy[rows]
    cand_v = torch.full((touched.numel(), width), float("-inf"), device=vals.device)
    cand_i = torch.full((touched.numel(), width), -1, dtype=idx.dtype, device=idx.device)
    slot = slot_of_row[rows[light]]
    cand_v[slot, pos[light]] = scores[light]
    cand_i[slot, pos[light]] = cols[light]
    if heavy.any():
        heavy_rows = heavy.nonzero().squeeze(1)
        top_v, top_i = torch.topk(tile[heavy_rows], min(k, tile.shape[1]), dim=1)
        cand_v[slot_of_row[heavy_rows], : top_v.shape[1]] = top_v
        cand_i[slot_of_row[heavy_rows], : top_v.shape[1]] = top_i + col_base
    target = touched + base
    all_v = torch.cat([vals[target], cand_v], dim=1)
    all_i = torch.cat([idx[target], cand_i], dim=1)
    top_v, top_p = torch.topk(all_v, k, dim=1)
    vals[target] = top_v
    idx[target] = all_i.gather(1, top_p)


def _pairs_from_topk(
    vals: torch.Tensor, idx: torch.Tensor, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    n, k = vals.shape
    rows = np.repeat(np.arange(n, dtype=np.int64), k)
    cols, scores = idx.reshape(-1).cpu().numpy(), vals.reshape(-1).cpu().numpy()
    keep = (cols >= 0) & (scores >= threshold)
    return _unique_sorted_pairs(rows[keep], cols[keep], scores[keep], n)


def _unique_sorted_pairs(
    rows: np.ndarray, cols: np.ndarray, scores: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs as ``(min, max)`` without repeats, most similar first."""
    key = np.minimum(rows, cols).astype(np.int64) * n + np.maximum(rows, cols)
    key, first = np.unique(key, return_index=True)
    scores = scores[first].astype(np.float32)
    order = np.argsort(-scores, kind="stable")
    pairs = np.stack([key // n, key % n], axis=1)[order]
    return pairs.astype(np.int64), scores[order]


def _screen_and_merge(vals: torch.Tensor, idx: torch.Tensor, sim: torch.Tensor, a: int, b: int,
                      threshold: float) -> None:
    """Fold one off-diagonal tile (rows from ``a``, columns from ``b``) into the top-k of
    its rows and of its columns.

    One comparison with the lowest k-th best of the tile's rows and columns screens the
    whole tile; the few entries left are tested against their own row's and column's k-th
    best and merged.
    """
    with single_thread(sim.device):
        floor_r = vals[a : a + sim.shape[0]].min(dim=1).values.clamp(min=threshold)
        floor_c = vals[b : b + sim.shape[1]].min(dim=1).values.clamp(min=threshold)
        lowest = float(torch.minimum(floor_r.min(), floor_c.min()))
    cand = (sim > lowest).nonzero()
    if not cand.numel():
        return
    with single_thread(sim.device):
        ri, ci = cand[:, 0], cand[:, 1]
        s = sim[ri, ci]
        for_row = s > floor_r[ri]
        for_col = s > floor_c[ci]
        if for_row.any():  # nonzero() is row-major: rows come grouped
            _merge_topk(vals, idx, a, ri[for_row], ci[for_row] + b, s[for_row], sim, b)
        if for_col.any():
            c_r, c_c, c_s = ri[for_col], ci[for_col], s[for_col]
            order = _argsort_ints(c_c)
            _merge_topk(vals, idx, b, c_c[order], c_r[order] + a, c_s[order], sim.T, a)


def _argsort_ints(x: torch.Tensor) -> torch.Tensor:
    """Stable argsort of an integer tensor. On CPU numpy's radix sort is used: torch's CPU
    sort is slow on small integer keys when it runs on several threads."""
    if x.device.type == "cpu":
        return torch.from_numpy(np.argsort(x.numpy(), kind="stable"))
    return torch.argsort(x, stable=True)


def exact_pairs(
    embeddings: torch.Tensor,
    threshold: float = -1.0,
    top_k: int | None = 10,
    block_size: int = DEFAULT_BLOCK_SIZE,
    show_progress: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Similar pairs by exact cosine similarity, in memory-bounded tiles.

    Args:
        embeddings: ``(n, dim)`` float tensor on the device to compute on. Rows are
            L2-normalised here.
        threshold: Smallest similarity kept.
        top_k: Neighbours per item; ``None`` keeps every pair at or above ``threshold``
            (the result then grows with the number of such pairs).
        block_size: Tile side; peak extra memory is about ``3 * block_size**2`` floats plus
            ``n * top_k`` for the running top-k.
        show_progress: Progress bar over tiles; ``None``: only on a terminal for big inputs.

    Returns:
        ``pairs`` ``(m, 2)`` int64 with ``i < j``, and ``scores`` ``(m,)`` float32, sorted by
        descending score.
    """
    emb = F.normalize(embeddings.float(), p=2, dim=-1)
    n = emb.shape[0]
    empty = (np.zeros((0, 2), dtype=np.int64), np.zeros((0,), dtype=np.float32))
    if n < 2:
        return empty
    starts = list(range(0, n, block_size))
    tiles = len(starts) * (len(starts) + 1) // 2
    bar = _progress(tiles, show_progress, "Finding duplicates")
    if top_k is None:
        return _all_pairs_above(emb, threshold, starts, block_size, bar)

    k = min(top_k, n - 1)
    vals = torch.full((n, k), float("-inf"), device=emb.device)
    idx = torch.full((n, k), -1, dtype=torch.long, device=emb.device)
    count_above = threshold > -1.0  # every pair is "above" -1: nothing to warn about
    above = torch.zeros((), dtype=torch.long, device=emb.device)  # pairs >= threshold
    with torch.inference_mode(), bar:
        # one reused buffer for the tiles: a fresh 64 MB tensor per tile costs page faults
        buffer = torch.empty(min(block_size, n) ** 2, device=emb.device)
        # Diagonal tiles first: every row gets a k-th best from its own tile, which then
        # screens the off-diagonal tiles.
        for a in starts:
            block = emb[a : a + block_size]
            sim = buffer[: len(block) ** 2].view(len(block), len(block))
            torch.mm(block, block.T, out=sim)
            sim.fill_diagonal_(float("-inf"))
            if count_above:  # a symmetric tile: each pair is counted twice
                above += (sim >= threshold).sum() // 2
            kk = min(k, sim.shape[1] - 1)
            if kk > 0:
                top_v, top_i = torch.topk(sim, kk, dim=1)
                vals[a : a + block.shape[0], :kk] = top_v
                idx[a : a + block.shape[0], :kk] = top_i + a
            bar.update(1)
        for bi, a in enumerate(starts):
            rows_emb = emb[a : a + block_size]
            for b in starts[bi + 1 :]:
                cols_emb = emb[b : b + block_size]
                sim = buffer[: len(rows_emb) * len(cols_emb)].view(len(rows_emb), len(cols_emb))
                torch.mm(rows_emb, cols_emb.T, out=sim)
                if count_above:
                    above += (sim >= threshold).sum()
                _screen_and_merge(vals, idx, sim, a, b, threshold)
                bar.update(1)
    pairs, scores = _pairs_from_topk(vals, idx, threshold)
    if count_above:
        _warn_if_capped(int(above), len(pairs), top_k, threshold)
    return pairs, scores


def _warn_if_capped(above: int, kept: int, top_k: int, threshold: float) -> None:
    if kept < above:
        logger.warning("top_k=%d kept %d of the %d pairs at or above the threshold %.4f: %d "
                       "pairs above it were left out; pass top_k=None to keep every one",
                       top_k, kept, above, threshold, above - kept)


def _all_pairs_above(
    emb: torch.Tensor, threshold: float, starts: list[int], block_size: int, bar: tqdm
) -> tuple[np.ndarray, np.ndarray]:
    los, his, scores = [], [], []
    found = 0
    with torch.inference_mode(), bar:
        for bi, a in enumerate(starts):
            rows_emb = emb[a : a + block_size]
            for b in starts[bi:]:
                sim = rows_emb @ emb[b : b + block_size].T
                if a == b:
                    sim = torch.triu(sim, diagonal=1) + torch.tril(
                        torch.full_like(sim, float("-inf"))
                    )
                above = sim >= threshold
                found += int(above.sum())
                if found > MAX_PAIRS:
                    raise ValueError(
                        f"more than {MAX_PAIRS:,} pairs are at or above threshold="
                        f"{threshold:.4f} (many near-identical texts?): pass top_k=... to "
                        "keep each text's nearest only, or raise the threshold "
                        "(siamtext.classify.search.MAX_PAIRS sets the limit)")
                hit = above.nonzero()
                los.append(hit[:, 0] + a)
                his.append(hit[:, 1] + b)
                scores.append(sim[hit[:, 0], hit[:, 1]])
                bar.update(1)
    n = emb.shape[0]
    return _unique_sorted_pairs(torch.cat(los).cpu().numpy(), torch.cat(his).cpu().numpy(),
                                torch.cat(scores).cpu().numpy(), n)


def connected_groups(pairs: np.ndarray, n: int) -> list[list[int]]:
    """Groups of items linked by ``pairs`` (connected components of size 2 or more).

    ``scipy.sparse.csgraph.connected_components`` over the sparse graph of the pairs, so
    millions of pairs take a fraction of a second; each group is sorted, and groups are
    ordered by their smallest member.

    Args:
        pairs: ``(m, 2)`` int array of item indices.
        n: Number of items.

    Returns:
        A list of groups, each a sorted list of indices.
    """
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if not len(pairs):
        return []
    graph = coo_matrix((np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])),
                       shape=(n, n))
    _, component = connected_components(graph, directed=False)
    members = np.unique(pairs)  # items in some pair, ascending
    labels = component[members]
    order = np.argsort(labels, kind="stable")  # by component, ascending members within
    members, labels = members[order], labels[order]
    cuts = np.flatnonzero(np.diff(labels)) + 1
    groups = [g.tolist() for g in np.split(members, cuts)]
    return sorted(groups, key=lambda g: g[0])
