"""How each :class:`~siamtext.classify.intent.IntentClassifier` mode scores queries.

Each function takes one chunk of normalised query embeddings ``q`` ``(n, dim)`` and the
stored state it needs, and returns ``(proba, best, pred)``: the class probabilities
``(n, n_classes)`` (``None`` when ``proba=False``), the best cosine similarity ``(n,)`` that
rejection thresholds, and the predicted class index ``(n,)``. An optional ``ok``
``(n, n_classes)`` bool mask limits each query to the classes it marks (a cascade's
shortlist); a query must have at least one class marked.

The matrix product of queries and stored vectors runs on all threads; the small work after
it runs inside :func:`~siamtext.classify.search.single_thread`. Chunking queries and holding
the classifier's state lock are the caller's job.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch

from siamtext.classify.search import single_thread

if TYPE_CHECKING:
    from siamtext.classify.logistic import LogisticHead

Mode = Literal["prototype", "knn", "logistic"]
#: ``(proba or None, best, pred)`` of one chunk of queries.
Scores = tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]


def prototype_scores(q: torch.Tensor, prototypes: torch.Tensor, temperature: float,
                     proba: bool = True, ok: torch.Tensor | None = None) -> Scores:
    """Score queries against one normalised prototype per class.

    ``best`` is the cosine similarity to the nearest prototype, ``pred`` its class, and the
    probabilities are ``softmax((sim - best) / temperature)`` over the classes.

    Args:
        q: ``(n, dim)`` normalised query embeddings.
        prototypes: ``(n_classes, dim)`` normalised class means.
        temperature: Softmax temperature, positive.
        proba: Whether to compute the probabilities.
        ok: ``(n, n_classes)`` bool mask of the classes each query may get, or ``None``.

    Returns:
        ``proba`` ``(n, n_classes)`` or ``None``, ``best`` ``(n,)``, ``pred`` ``(n,)``.
    """
    sim = q @ prototypes.T
    if ok is not None:
        sim = sim.masked_fill(~ok, float("-inf"))
    with single_thread(sim.device):
        best, pred = sim.max(dim=1)
        p = torch.softmax((sim - best[:, None]) / temperature, dim=1) if proba else None
    return p, best, pred


def logistic_scores(q: torch.Tensor, head: LogisticHead, examples: torch.Tensor,
                    example_classes: torch.Tensor, proba: bool = True,
                    ok: torch.Tensor | None = None) -> Scores:
    """Score queries with a logistic-regression head.

    ``pred`` is the class of the largest logit and the probabilities are the softmax of the
    logits; ``best`` is the cosine similarity to the nearest stored example (of an allowed
    class), so that rejection means the same in every mode.

    Args:
        q: ``(n, dim)`` normalised query embeddings.
        head: The fitted :class:`~siamtext.classify.logistic.LogisticHead`.
        examples: ``(n_examples, dim)`` normalised example embeddings.
        example_classes: ``(n_examples,)`` class index of each example.
        proba: Whether to compute the probabilities.
        ok: ``(n, n_classes)`` bool mask of the classes each query may get, or ``None``.

    Returns:
        ``proba`` ``(n, n_classes)`` or ``None``, ``best`` ``(n,)``, ``pred`` ``(n,)``.
    """
    logits = head.logits(q)
    sim = q @ examples.T
    if ok is not None:
        logits = logits.masked_fill(~ok, float("-inf"))
        sim = sim.masked_fill(~ok[:, example_classes], float("-inf"))
    with single_thread(sim.device):
        best, pred = sim.max(dim=1).values, logits.argmax(dim=1)
        p = torch.softmax(logits, dim=1) if proba else None
    return p, best, pred


def knn_scores(q: torch.Tensor, examples: torch.Tensor, example_classes: torch.Tensor,
               n_classes: int, n_neighbors: int, temperature: float, proba: bool = True,
               ok: torch.Tensor | None = None) -> Scores:
    """Score queries by a weighted vote of their nearest stored examples.

    The ``k = min(n_neighbors, n_examples)`` most similar examples ``top`` ``(n, k)`` vote
    for their classes with weights ``softmax((top - top[:, :1]) / temperature)``; the summed
    votes are the probabilities, ``pred`` the class with most, and ``best`` the similarity
    to the nearest example.

    Args:
        q: ``(n, dim)`` normalised query embeddings.
        examples: ``(n_examples, dim)`` normalised example embeddings.
        example_classes: ``(n_examples,)`` class index of each example.
        n_classes: Number of classes (columns of the votes).
        n_neighbors: How many nearest examples vote.
        temperature: Softmax temperature of the vote weights, positive.
        proba: Whether to return the votes as probabilities.
        ok: ``(n, n_classes)`` bool mask of the classes each query may get, or ``None``.

    Returns:
        ``proba`` ``(n, n_classes)`` or ``None``, ``best`` ``(n,)``, ``pred`` ``(n,)``.
    """
    sim = q @ examples.T
    if ok is not None:
        sim = sim.masked_fill(~ok[:, example_classes], float("-inf"))
    k = min(n_neighbors, sim.shape[1])
    top_v, top_i = torch.topk(sim, k, dim=1)
    with single_thread(sim.device):
        weights = torch.softmax((top_v - top_v[:, :1]) / temperature, dim=1)
        votes = torch.zeros((q.shape[0], n_classes), device=q.device)
        votes.scatter_add_(1, example_classes[top_i], weights)
        best, pred = top_v[:, 0], votes.argmax(dim=1)
    return (votes if proba else None), best, pred


def score(mode: Mode, q: torch.Tensor, *, n_classes: int, prototypes: torch.Tensor,
          examples: torch.Tensor, example_classes: torch.Tensor, head: LogisticHead | None,
          n_neighbors: int, temperature: float, proba: bool = True,
          ok: torch.Tensor | None = None) -> Scores:
    """Score queries the way ``mode`` does (:func:`prototype_scores`,
    :func:`logistic_scores` or :func:`knn_scores`).

    ``mode`` is not checked here (the estimator checks it when fitted): any mode other than
    ``"prototype"`` and ``"logistic"`` scores as ``"knn"``.

    Args:
        mode: ``"prototype"``, ``"logistic"`` or ``"knn"``.
        q: ``(n, dim)`` normalised query embeddings.
        n_classes: Number of classes.
        prototypes: ``(n_classes, dim)`` normalised class means.
        examples: ``(n_examples, dim)`` normalised example embeddings.
        example_classes: ``(n_examples,)`` class index of each example.
        head: The logistic head (needed in logistic mode only).
        n_neighbors: k-NN mode: how many nearest examples vote.
        temperature: Softmax temperature (prototype and k-NN modes).
        proba: Whether to compute the probabilities.
        ok: ``(n, n_classes)`` bool mask of the classes each query may get, or ``None``.

    Returns:
        ``proba`` ``(n, n_classes)`` or ``None``, ``best`` ``(n,)``, ``pred`` ``(n,)``.
    """
    if mode == "prototype":
        return prototype_scores(q, prototypes, temperature, proba, ok)
    if mode == "logistic":
        return logistic_scores(q, head, examples, example_classes, proba, ok)
    return knn_scores(q, examples, example_classes, n_classes, n_neighbors, temperature,
                      proba, ok)
