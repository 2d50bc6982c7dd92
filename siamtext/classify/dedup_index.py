"""Duplicates online: new texts checked against a :class:`siamtext.index.Index`, then stored.

A live site keeps its questions in a collection. Before a new question is posted,
:meth:`~OnlineDuplicates.check` returns the stored items at or above the detector's threshold
(each a :class:`~siamtext.index.Hit` with its id, score, text and metadata), from the
collection's search (exact below its ANN size, approximate above it); :meth:`~OnlineDuplicates.add`
then stores it, durable when it returns. :meth:`DuplicateDetector.find_duplicates()
<siamtext.classify.DuplicateDetector.find_duplicates>` over the whole collection runs the
corpus search (exact tiles or faiss) on its stored vectors, with nothing re-embedded, and
gives item ids (:func:`find_in_index`).

Examples:
    >>> det = DuplicateDetector(SiamText(), threshold=0.85, index="questions.idx")
    >>> det.add(["How do I reset my password?", "Where is my parcel?"])
    [0, 1]
    >>> [h.id for h in det.check("I forgot my password")]
    [0]
    >>> det.find_duplicates().groups
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from siamtext.classify.approximate import faiss_pairs
from siamtext.classify.attach import open_index
from siamtext.classify.duplicates import Duplicates
from siamtext.classify.search import DEFAULT_BLOCK_SIZE, connected_groups, exact_pairs
from siamtext.classify.threshold import check_similarity_threshold
from siamtext.validation import check_positive_int

if TYPE_CHECKING:
    from collections.abc import Sequence

    from siamtext.index import Hit, Index

#: One SELECT for every row: a read is one consistent view of the collection.
_ALL = 1 << 62
_OPEN_LOCK = threading.Lock()


def is_index(obj: object) -> bool:
    """Whether ``obj`` is an open :class:`siamtext.index.Index` (without importing it for
    callers that never use one)."""
    from siamtext.index import Index

    return isinstance(obj, Index)


def stored_vectors(index: Index) -> tuple[np.ndarray, np.ndarray]:
    """Every item's id ``(n,)`` int64 and vector ``(n, dim)`` float32, in id order."""
    items = list(index.items(with_embeddings=True, batch_size=_ALL))
    ids = np.asarray([it.id for it in items], dtype=np.int64)
    if not items:
        return ids, np.zeros((0, index.dim), dtype=np.float32)
    return ids, np.stack([it.embedding for it in items])


def find_in_index(index: Index, threshold: float, top_k: int | None = None,
                  method: str = "exact", block_size: int = DEFAULT_BLOCK_SIZE,
                  faiss_index: str = "auto", recall_target: float = 0.95,
                  show_progress: bool | None = None, device: torch.device | None = None
                  ) -> Duplicates:
    """Every duplicate pair among a collection's items, as item ids.

    The stored vectors are searched as a corpus is (:func:`~siamtext.classify.search.
    exact_pairs` or :func:`~siamtext.classify.approximate.faiss_pairs`, same arguments), and
    the positions mapped back to ids: ``pairs`` ``(m, 2)`` holds ids ``i < j``, ``groups``
    lists of ids, ``ids`` the items searched.
    """
    ids, vectors = stored_vectors(index)
    n = len(ids)
    if method == "exact":
        emb = torch.from_numpy(vectors).to(device or torch.device("cpu"))
        pairs, scores = exact_pairs(emb, threshold, top_k, block_size, show_progress)
    else:
        pairs, scores = faiss_pairs(vectors, threshold, top_k, faiss_index, recall_target,
                                    show_progress=show_progress)
    groups = connected_groups(pairs, n)
    return Duplicates(ids[pairs].reshape(-1, 2), scores, [ids[g].tolist() for g in groups], n,
                      ids=ids)


class OnlineDuplicates:
    """The collection side of :class:`~siamtext.classify.DuplicateDetector` (a mixin): the
    ``index`` it names, checked against and added to."""

    def _collection(self, dim: int | None = None) -> Index:
        """The open collection (a path is opened on first use, and created on the first
        :meth:`add` when nothing is there)."""
        index = self.__dict__.get("index_")
        if index is not None:
            return index
        if self.index is None:
            raise ValueError("this DuplicateDetector has no index: build it with "
                             "DuplicateDetector(model, threshold, index=PATH or Index)")
        with _OPEN_LOCK:  # two threads' first use open it once
            index = self.__dict__.get("index_")
            if index is None:
                index, owned = open_index(self.index, self.model, dim)
                self.__dict__["_index_owned"] = owned
                self.index_ = index
        return index

    def check(self, texts: str | Sequence[str] | object, *, k: int = 10,
              threshold: float | None = None) -> list[Hit] | list[list[Hit]]:
        """The stored items each new text duplicates: those at or above the threshold, most
        similar first, at most ``k`` per text.

        Args:
            texts: A text, a list of texts, or ``(dim,)`` / ``(m, dim)`` vectors (for a
                collection filled with vectors).
            k: Most hits per text.
            threshold: Overrides :attr:`decision_threshold` for this call.

        Returns:
            For one text (or one vector) its :class:`~siamtext.index.Hit` list, else one list
            per text; an empty list is "no duplicate stored".

        Raises:
            ValueError: Without an index, for a bad ``k`` / ``threshold``, or vectors of the
                wrong dimension (named by the collection).
        """
        threshold = (self.decision_threshold if threshold is None
                     else check_similarity_threshold(threshold))
        check_positive_int(k, "k")
        return self._collection().search(texts, k=k, threshold=threshold)

    def add(self, texts: Sequence[str] | None = None, *, embeddings: object = None,
            ids: Sequence[int] | None = None, labels: Any = None,
            metadata: Sequence[dict | None] | None = None,
            show_progress: bool | None = None) -> list[int]:
        """Store texts (or vectors) in the collection, in one durable transaction
        (:meth:`siamtext.index.Index.add`: the same arguments); they are checked against as
        soon as this returns.

        Returns:
            The ids given to them, in input order.
        """
        dim = None
        if embeddings is not None:
            dim = int(np.shape(embeddings)[-1]) if np.ndim(embeddings) else None
        elif self.model is not None:
            dim = self.model.embedding_dim
        return self._collection(dim).add(texts, embeddings=embeddings, ids=ids, labels=labels,
                                         metadata=metadata, show_progress=show_progress)

    def close(self) -> None:
        """Release the collection (when this detector opened it)."""
        index = self.__dict__.pop("index_", None)
        if index is not None and self.__dict__.pop("_index_owned", False):
            index.close()

    def __enter__(self) -> OnlineDuplicates:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

