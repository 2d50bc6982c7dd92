"""Similar pairs inside one set of embeddings: exact blocked search, faiss, and groups.

The exact search never holds an ``n x n`` matrix. It walks the upper triangle of the
similarity matrix in ``block_size x block_size`` tiles, so every pair is scored once, and
keeps for each row a running top-k (``n x k`` floats). A tile contributes to the top-k of its
rows and of its columns at once. Most entries of a tile cannot enter any top-k (they are below
the row's and the column's current k-th best, or below ``threshold``); they are dropped by one
comparison before anything is sorted, which is what makes this faster than a top-k over every
row of the full matrix.

A pair ``(i, j)`` is returned when ``j`` is among the ``top_k`` most similar items of ``i``
or ``i`` among those of ``j`` (the rule of
``sentence_transformers.util.paraphrase_mining_embeddings``), and its similarity is at least
``threshold``. With ``top_k=None`` every pair at or above ``threshold`` is returned.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

DEFAULT_BLOCK_SIZE = 4096


def _progress(total: int, show: bool | None, desc: str) -> tqdm:
    if show is None:
        show = total >= 16 and sys.stderr.isatty()
    return tqdm(total=total, desc=desc, disable=not show)


def _merge_topk(
    vals: torch.Tensor, idx: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
    scores: torch.Tensor,
) -> None:
    """Merge candidate entries ``(rows[m], cols[m], scores[m])`` into the per-row top-k
    ``vals``/``idx`` (``(n, k)``, sorted descending, ``-inf``/``-1`` padded), in place."""
    k = vals.shape[1]
    touched = torch.unique(rows)
    r_all = torch.cat([touched.repeat_interleave(k), rows])
    c_all = torch.cat([idx[touched].reshape(-1), cols])
    s_all = torch.cat([vals[touched].reshape(-1), scores])
    # order by row, then by descending score (two stable sorts)
    order = torch.argsort(s_all, descending=True, stable=True)
    order = order[torch.argsort(r_all[order], stable=True)]
    c_all, s_all = c_all[order], s_all[order]
    counts = torch.unique_consecutive(r_all[order], return_counts=True)[1]  # aligned with touched
    slot = torch.repeat_interleave(torch.arange(touched.numel(), device=vals.device), counts)
    pos = torch.arange(s_all.numel(), device=vals.device) - torch.repeat_interleave(
        torch.cumsum(counts, 0) - counts, counts
    )
    keep = pos < k
    new_vals = torch.full((touched.numel(), k), float("-inf"), dtype=vals.dtype, device=vals.device)
    new_idx = torch.full((touched.numel(), k), -1, dtype=idx.dtype, device=idx.device)
    new_vals[slot[keep], pos[keep]] = s_all[keep]
    new_idx[slot[keep], pos[keep]] = c_all[keep]
    vals[touched] = new_vals
    idx[touched] = new_idx


def _pairs_from_topk(
    vals: torch.Tensor, idx: torch.Tensor, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    n, k = vals.shape
    rows = torch.arange(n, device=vals.device).repeat_interleave(k)
    cols, scores = idx.reshape(-1), vals.reshape(-1)
    keep = (cols >= 0) & (scores >= threshold)
    rows, cols, scores = rows[keep], cols[keep], scores[keep]
    lo, hi = torch.minimum(rows, cols), torch.maximum(rows, cols)
    key = lo * n + hi
    key, first = _unique_first(key)
    return _sorted_pairs(key // n, key % n, scores[first])


def _unique_first(key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unique values of ``key`` and the index of one occurrence of each."""
    uniq, inverse = torch.unique(key, return_inverse=True)
    first = torch.empty(uniq.numel(), dtype=torch.long, device=key.device)
    first.scatter_(0, inverse, torch.arange(key.numel(), device=key.device))
    return uniq, first


def _sorted_pairs(
    lo: torch.Tensor, hi: torch.Tensor, scores: torch.Tensor
) -> tuple[np.ndarray, np.ndarray]:
    order = torch.argsort(scores, descending=True, stable=True)
    pairs = torch.stack([lo[order], hi[order]], dim=1).cpu().numpy().astype(np.int64)
    return pairs, scores[order].cpu().numpy().astype(np.float32)


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
    with torch.inference_mode(), bar:
        # Diagonal tiles first: every row gets a k-th best from its own tile, which then
        # screens the off-diagonal tiles.
        for a in starts:
            block = emb[a : a + block_size]
            sim = block @ block.T
            sim.fill_diagonal_(float("-inf"))
            kk = min(k, sim.shape[1] - 1)
            if kk > 0:
                top_v, top_i = torch.topk(sim, kk, dim=1)
                vals[a : a + block.shape[0], :kk] = top_v
                idx[a : a + block.shape[0], :kk] = top_i + a
            bar.update(1)
        for bi, a in enumerate(starts):
            rows_emb = emb[a : a + block_size]
            for b in starts[bi + 1 :]:
                sim = rows_emb @ emb[b : b + block_size].T
                floor_r = vals[a : a + sim.shape[0], -1].clamp(min=threshold)
                floor_c = vals[b : b + sim.shape[1], -1].clamp(min=threshold)
                # cheap scalar screen, then the exact per-row / per-column test
                cand = (sim > torch.minimum(floor_r.min(), floor_c.min())).nonzero()
                if cand.numel():
                    ri, ci = cand[:, 0], cand[:, 1]
                    s = sim[ri, ci]
                    for_row = s > floor_r[ri]
                    for_col = s > floor_c[ci]
                    if for_row.any():
                        _merge_topk(vals, idx, ri[for_row] + a, ci[for_row] + b, s[for_row])
                    if for_col.any():
                        _merge_topk(vals, idx, ci[for_col] + b, ri[for_col] + a, s[for_col])
                bar.update(1)
    return _pairs_from_topk(vals, idx, threshold)


def _all_pairs_above(
    emb: torch.Tensor, threshold: float, starts: list[int], block_size: int, bar: tqdm
) -> tuple[np.ndarray, np.ndarray]:
    los, his, scores = [], [], []
    with torch.inference_mode(), bar:
        for bi, a in enumerate(starts):
            rows_emb = emb[a : a + block_size]
            for b in starts[bi:]:
                sim = rows_emb @ emb[b : b + block_size].T
                if a == b:
                    sim = torch.triu(sim, diagonal=1) + torch.tril(
                        torch.full_like(sim, float("-inf"))
                    )
                hit = (sim >= threshold).nonzero()
                los.append(hit[:, 0] + a)
                his.append(hit[:, 1] + b)
                scores.append(sim[hit[:, 0], hit[:, 1]])
                bar.update(1)
    return _sorted_pairs(torch.cat(los), torch.cat(his), torch.cat(scores))


def faiss_pairs(
    embeddings: np.ndarray,
    threshold: float = -1.0,
    top_k: int = 10,
    index_factory: str = "HNSW32",
    batch_size: int = 16384,
    show_progress: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Similar pairs from a faiss index (approximate unless ``index_factory="Flat"``).

    Every item is searched for its ``top_k + 1`` nearest neighbours by inner product on
    L2-normalised embeddings; the pairs follow the same rule as :func:`exact_pairs`.

    Args:
        embeddings: ``(n, dim)`` float array.
        threshold: Smallest similarity kept.
        top_k: Neighbours per item.
        index_factory: A ``faiss.index_factory`` string, e.g. ``"HNSW32"`` (approximate,
            fast on millions) or ``"Flat"`` (exact).
        batch_size: Queries per search call.
        show_progress: Progress bar over query batches.

    Returns:
        ``pairs`` and ``scores`` as in :func:`exact_pairs`.

    Raises:
        ImportError: If faiss is not installed (``pip install 'siamtext[faiss]'``).
    """
    try:
        import faiss
    except ImportError as err:
        raise ImportError("method='faiss' needs faiss: pip install 'siamtext[faiss]' "
                          "(or faiss-cpu / faiss-gpu)") from err
    x = np.ascontiguousarray(embeddings, dtype=np.float32).copy()
    n = x.shape[0]
    if n < 2:
        return np.zeros((0, 2), dtype=np.int64), np.zeros((0,), dtype=np.float32)
    faiss.normalize_L2(x)
    index = faiss.index_factory(x.shape[1], index_factory, faiss.METRIC_INNER_PRODUCT)
    index.train(x)
    index.add(x)
    k = min(top_k + 1, n)
    rows, cols, scores = [], [], []
    starts = range(0, n, batch_size)
    with _progress(len(starts), show_progress, "Finding duplicates (faiss)") as bar:
        for a in starts:
            sims, nbrs = index.search(x[a : a + batch_size], k)
            q = np.arange(a, a + len(nbrs))[:, None].repeat(k, axis=1)
            keep = (nbrs >= 0) & (nbrs != q)
            rows.append(q[keep])
            cols.append(nbrs[keep])
            scores.append(sims[keep])
            bar.update(1)
    r = torch.from_numpy(np.concatenate(rows))
    c = torch.from_numpy(np.concatenate(cols).astype(np.int64))
    s = torch.from_numpy(np.concatenate(scores))
    # at most top_k per row (the self match may be missing from an approximate result)
    rank = _rank_within_row(r, s)
    keep = (rank < top_k) & (s >= threshold)
    r, c, s = r[keep], c[keep], s[keep]
    key, first = _unique_first(torch.minimum(r, c) * n + torch.maximum(r, c))
    return _sorted_pairs(key // n, key % n, s[first])


def _rank_within_row(rows: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    order = torch.argsort(scores, descending=True, stable=True)
    order = order[torch.argsort(rows[order], stable=True)]
    sorted_rows = rows[order]
    uniq, counts = torch.unique_consecutive(sorted_rows, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    rank_sorted = torch.arange(rows.numel()) - starts.repeat_interleave(counts)
    rank = torch.empty_like(rank_sorted)
    rank[order] = rank_sorted
    return rank


def connected_groups(pairs: np.ndarray, n: int) -> list[list[int]]:
    """Groups of items linked by ``pairs`` (connected components of size 2 or more).

    Union-find with path halving over the edges; each group is sorted, and groups are
    ordered by their smallest member.

    Args:
        pairs: ``(m, 2)`` int array of item indices.
        n: Number of items.

    Returns:
        A list of groups, each a sorted list of indices.
    """
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j in pairs.tolist():
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    members: dict[int, list[int]] = {}
    for i in np.unique(pairs).tolist():
        members.setdefault(find(i), []).append(i)
    return [sorted(g) for _, g in sorted(members.items())]
