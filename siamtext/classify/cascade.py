"""Cascades: a static first pass proposes, the transformer decides.

A :class:`~siamtext.static.StaticEncoder` embeds tens of thousands of texts a second; the
transformer a few hundred. In a cascade the static model does the wide, cheap part and the
transformer only the narrow part where the decision is made:

* Duplicates (:meth:`DuplicateDetector.find_duplicates
  <siamtext.classify.DuplicateDetector.find_duplicates>` with ``first_pass=``): the static
  model proposes candidate pairs (each text's ``rerank_top`` nearest by static cosine, or
  every pair at or above a static ``first_pass_threshold``, or both: the nearest among those
  above it); the transformer embeds only the texts in some candidate pair and keeps the
  candidates whose transformer similarity reaches the threshold
  (:mod:`siamtext.classify.candidates`).
* Intents (:class:`IntentClassifier(first_pass=..., rerank_top=...)
  <siamtext.classify.IntentClassifier>`): the static model shortlists the ``rerank_top`` best
  classes and the transformer decides among them. A shortlist alone still runs the
  transformer on every query, so a confidence gate skips it: when the static margin (best
  minus second-best static class score) is above ``first_pass_margin`` the static answer is
  final. :meth:`~siamtext.classify.IntentClassifier.fit_first_pass` fits that margin on
  validation data (:mod:`siamtext.classify.first_pass`).

Where the parts live, bottom to top (each imports only those below it):
:mod:`~siamtext.classify.examples` (the stored classes, with the static embeddings of the
examples beside the transformer's), :mod:`~siamtext.classify.first_pass` (static scores,
shortlist, gate) and :mod:`~siamtext.classify.candidates` (static candidate pairs, rerank),
then the estimators (:mod:`~siamtext.classify.intent`, :mod:`~siamtext.classify.dedup`), then
this module: functions over a fitted estimator, for benchmarks and for looking inside a
cascade. Nothing below imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from siamtext.classify.first_pass import (
    StaticQueries,
    check_first_pass,
    check_gate,
    smallest_gate,
    static_view,
)
from siamtext.classify.search import DEFAULT_BLOCK_SIZE

if TYPE_CHECKING:
    from siamtext.classify.dedup import DuplicateDetector, Duplicates
    from siamtext.classify.intent import IntentClassifier

__all__ = ["StaticQueries", "check_first_pass", "check_gate", "find_duplicates", "fit_gate",
           "predict", "shortlist", "smallest_gate", "static_answers", "static_queries"]


def find_duplicates(
    detector: DuplicateDetector, corpus: object, threshold: float, *, first_pass: object,
    rerank_top: int | None, first_pass_threshold: float | None, top_k: int | None = None,
    method: str = "exact", block_size: int = DEFAULT_BLOCK_SIZE, faiss_index: str = "auto",
    recall_target: float = 0.95, show_progress: bool | None = None,
) -> Duplicates:
    """Duplicates by a cascade: static candidates, transformer decisions (the same as
    ``detector.find_duplicates(corpus, threshold, first_pass=..., ...)``)."""
    return detector.find_duplicates(
        corpus, threshold, top_k=top_k, method=method, block_size=block_size,
        faiss_index=faiss_index, recall_target=recall_target, show_progress=show_progress,
        first_pass=first_pass, rerank_top=rerank_top,
        first_pass_threshold=first_pass_threshold)


def static_queries(clf: IntentClassifier, X: object) -> StaticQueries:
    """Embed queries with the classifier's first pass (after checking it can score them)."""
    return clf._static_queries(X)


def shortlist(clf: IntentClassifier, X: object) -> StaticQueries | None:
    """What the transformer's scoring needs for the ``rerank_top`` shortlist: the static
    query embeddings (shortlisted against the snapshot scored), or ``None``."""
    return clf._shortlist(X)


def static_answers(clf: IntentClassifier, X: object
                   ) -> tuple[np.ndarray, np.ndarray, torch.Tensor | None]:
    """The static model's view of each query.

    Class scores are cosine similarities to the static prototypes (``mode="prototype"``) or
    to each class's nearest static example (otherwise).

    Args:
        clf: A fitted :class:`~siamtext.classify.IntentClassifier` with a ``first_pass``.
        X: Texts, or their :class:`StaticQueries`.

    Returns:
        ``answer`` ``(n,)`` best class index, ``margin`` ``(n,)`` best minus second-best class
        score (``+inf`` with one class), and ``allowed`` ``(n, n_classes)`` bool: the
        ``rerank_top`` shortlist (``None`` without ``rerank_top``).
    """
    queries = X if isinstance(X, StaticQueries) else clf._static_queries(X)
    return static_view(clf._state(), queries.embeddings, clf.mode, clf.rerank_top)


def predict(clf: IntentClassifier, X: object) -> np.ndarray:
    """Labels by the cascade (``clf.predict(X)`` with a ``first_pass``): the static answer
    where its margin clears the gate, else the transformer's among the shortlist."""
    return clf.predict(X)


def fit_gate(clf: IntentClassifier, X: object, y: object = None,
             max_disagreement: float = 0.005) -> IntentClassifier:
    """Fit ``first_pass_margin_`` (``clf.fit_first_pass(X, y, max_disagreement=...)``)."""
    return clf.fit_first_pass(X, y, max_disagreement=max_disagreement)

