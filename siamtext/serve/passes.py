"""How a merged batch becomes forward passes: sorted by length, split where padding would grow.

Pure functions over token id lists (no model, no threads), used by
:class:`~siamtext.serve.batcher.Batcher`. The texts of one merged batch come from different
requests in arrival order, so their lengths are mixed; padding them all to the longest would
spend most of a pass on padding. :func:`plan_passes` sorts them longest first and cuts a pass
where the texts become much shorter than its longest (:data:`SPLIT_BELOW`), or where its padded
tokens would pass the token budget; :func:`split_passes` then halves the largest passes until
each of several threads has one.
"""

from __future__ import annotations

from collections.abc import Sequence

#: A forward pass ends before a text shorter than this share of its longest one...
#: Measured with ``benchmarks/serve_load.py``, 64 clients of one Banking77 text, 20 s points,
#: 2 cores (Intel Xeon, AVX-512 VNNI): ONNX int8 567.2 texts/s at 0.6, 604.8 at 0.75, 612.0
#: at 0.85 and 594.6 at 0.9; torch 302.3 at 0.6 and 304.8 at 0.85 (its passes cost more than
#: their padding either way).
SPLIT_BELOW = 0.85
#: ...once it holds this many texts (fewer: not worth another pass).
SPLIT_AFTER = 4


def plan_passes(flat: Sequence[Sequence[int]], max_tokens: int) -> list[list[int]]:
    """Forward passes over ``flat`` (token ids, one list per text): lists of indices into
    ``flat``, longest texts first, each pass at most ``max_tokens`` padded tokens (a text
    longer than that alone) and cut by :func:`same_length_run`. Every index appears once."""
    order = sorted(range(len(flat)), key=lambda i: -len(flat[i]))
    passes = []
    start = 0
    while start < len(order):
        longest = max(len(flat[order[start]]), 1)
        size = max(1, min(len(order) - start, max_tokens // longest))
        size = same_length_run(flat, order, start, size)
        passes.append(order[start : start + size])
        start += size
    return passes


def same_length_run(flat: Sequence[Sequence[int]], order: list[int], start: int,
                    size: int) -> int:
    """How many of the length-sorted texts from ``start`` (at most ``size``) go in one forward
    pass: merged requests have mixed lengths, and padding 32 Banking77 texts to their longest
    cost 90 ms where passes split at 0.6 of the longest cost 65 (all-MiniLM-L6-v2, torch,
    2 cores)."""
    cut = SPLIT_BELOW * len(flat[order[start]])
    for n in range(SPLIT_AFTER, size):
        if len(flat[order[start + n]]) < cut:
            return n
    return size


def split_passes(passes: list[list[int]], workers: int,
                 flat: Sequence[Sequence[int]]) -> list[list[int]]:
    """``passes`` with the largest halved until there are at least ``workers`` of them (none
    below one text), largest padded work first, so that ``workers`` threads finish together."""
    passes = list(passes)
    while len(passes) < workers:
        big = max(range(len(passes)), key=lambda i: len(passes[i]))
        if len(passes[big]) < 2:
            break
        half = (len(passes[big]) + 1) // 2
        passes[big : big + 1] = [passes[big][:half], passes[big][half:]]
    return sorted(passes, key=lambda p: -len(p) * len(flat[p[0]]))
