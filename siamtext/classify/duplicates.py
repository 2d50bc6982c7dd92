"""The duplicates found in a corpus, or in a collection: pairs, scores and groups."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Duplicates:
    """The duplicates found in a corpus.

    Attributes:
        pairs: ``(m, 2)`` int64 pairs ``i < j``, most similar first: indices into the corpus,
            or item ids for a search over a :class:`siamtext.index.Index`.
        scores: ``(m,)`` float32 cosine similarities of the pairs.
        groups: Connected components of the pairs (size >= 2), each a sorted list of
            indices (item ids for a collection).
        n: Size of the corpus.
        ids: For a collection: ``(n,)`` the item ids searched, in id order (position ``p`` of
            the search is item ``ids[p]``); ``None`` for a corpus.
    """

    pairs: np.ndarray
    scores: np.ndarray
    groups: list[list[int]] = field(default_factory=list)
    n: int = 0
    ids: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.pairs)

    def records(self, texts: Sequence[str] | Mapping[int, str] | None = None) -> list[dict]:
        """One dict per pair: ``i``, ``j``, ``score`` (and ``text_i``/``text_j``).

        Args:
            texts: The corpus (a list, by index), or for a collection a mapping of item id to
                text.
        """
        out = []
        for (i, j), s in zip(self.pairs.tolist(), self.scores.tolist()):
            row = {"i": i, "j": j, "score": round(s, 6)}
            if texts is not None:
                row.update(text_i=texts[i], text_j=texts[j])
            out.append(row)
        return out
