"""The duplicate search of a cascade: static candidate pairs, transformer decisions.

The static model proposes candidate pairs: ``(i, j)`` with ``j`` among the ``rerank_top``
static nearest neighbours of ``i`` (or ``i`` of ``j``), and a static similarity of at least
``first_pass_threshold``; either condition alone when only one is given. The transformer
embeds only the texts of candidate pairs, and a candidate is kept when its transformer
similarity reaches the threshold. ``rerank_top`` alone makes every text a candidate of some
pair, so the transformer still embeds the whole corpus (it saves the pair search, not the
encoding); the static threshold is what leaves texts out.

:meth:`DuplicateDetector.find_duplicates(first_pass=...)
<siamtext.classify.DuplicateDetector.find_duplicates>` composes these functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from siamtext.classify.approximate import faiss_pairs
from siamtext.classify.first_pass import check_first_pass
from siamtext.classify.search import DEFAULT_BLOCK_SIZE, _unique_sorted_pairs, exact_pairs
from siamtext.classify.threshold import check_similarity_threshold

if TYPE_CHECKING:
    from siamtext.model import SiamText

_PAIR_CHUNK = 65536


def check_options(first_pass: object, rerank_top: object, first_pass_threshold: object,
                  top_k: object) -> float | None:
    """Check a cascade's options at the public boundary; returns ``first_pass_threshold``.

    Raises:
        ValueError: A missing ``first_pass``, neither ``rerank_top`` nor
            ``first_pass_threshold``, a threshold outside [-1, 1], or ``top_k`` given.
        TypeError: A ``first_pass`` that is not a :class:`~siamtext.static.StaticEncoder`.
    """
    check_first_pass(first_pass, rerank_top)
    if first_pass is None:
        raise ValueError("first_pass_threshold needs a first_pass: pass "
                         "first_pass=model.distill_static()")
    if first_pass_threshold is not None:
        first_pass_threshold = check_similarity_threshold(first_pass_threshold,
                                                          "first_pass_threshold")
    if rerank_top is None and first_pass_threshold is None:
        raise ValueError("first_pass needs rerank_top=... (static neighbours per text) and/or "
                         "first_pass_threshold=... (a static similarity) to propose candidates")
    if top_k is not None:
        raise ValueError("top_k cannot be combined with first_pass: rerank_top already caps "
                         "the candidates per text")
    return first_pass_threshold


def static_candidates(static: torch.Tensor, rerank_top: int | None,
                      first_pass_threshold: float | None, method: str = "exact",
                      block_size: int = DEFAULT_BLOCK_SIZE, faiss_index: str = "auto",
                      recall_target: float = 0.95, show_progress: bool | None = None
                      ) -> np.ndarray:
    """``(m, 2)`` candidate pairs ``i < j`` from ``(n, static_dim)`` static embeddings,
    searched by ``method`` (``"exact"`` or ``"faiss"``)."""
    n = len(static)
    if n < 2:
        return np.zeros((0, 2), dtype=np.int64)
    # a cap without a floor first, then the floor: exact_pairs would warn about the pairs
    # above the floor that the cap leaves out, which here is the point
    floor = -1.0 if rerank_top is not None or first_pass_threshold is None \
        else first_pass_threshold
    if method == "exact":
        candidates, scores = exact_pairs(static, floor, rerank_top, block_size, show_progress)
    else:
        candidates, scores = faiss_pairs(static.numpy(), floor, rerank_top, faiss_index,
                                         recall_target, show_progress=show_progress)
    if rerank_top is not None and first_pass_threshold is not None:
        candidates = candidates[scores >= first_pass_threshold]
    return candidates


def rerank(model: SiamText, texts: list[str], candidates: np.ndarray, threshold: float,
           batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Transformer similarity of candidate pairs; those at or above ``threshold``, most
    similar first (``(k, 2)`` int64 pairs and ``(k,)`` float32 scores)."""
    if len(candidates) == 0:
        return np.zeros((0, 2), dtype=np.int64), np.zeros((0,), dtype=np.float32)
    used, local = np.unique(candidates, return_inverse=True)
    local = local.reshape(-1, 2)
    emb = model.encode([texts[i] for i in used.tolist()], batch_size=batch_size,
                       convert_to="torch", normalize=True)
    emb = F.normalize(emb.float(), p=2, dim=-1)
    scores = []
    with torch.inference_mode():
        for a in range(0, len(local), _PAIR_CHUNK):
            rows = torch.as_tensor(local[a : a + _PAIR_CHUNK], device=emb.device)
            scores.append((emb[rows[:, 0]] * emb[rows[:, 1]]).sum(dim=1).cpu())
    s = torch.cat(scores).numpy()
    keep = s >= threshold
    return _unique_sorted_pairs(candidates[keep, 0], candidates[keep, 1], s[keep],
                                len(texts))
