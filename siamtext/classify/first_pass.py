"""The static first pass of an intent cascade: class scores, shortlist and confidence gate.

A :class:`~siamtext.static.StaticEncoder` scores a query against the static embeddings of the
stored examples (:class:`~siamtext.classify.examples.StaticExamples`): by cosine to the static
prototypes (``mode="prototype"``) or to each class's nearest static example (otherwise). From
those scores come the static answer (the best class), its margin (best minus second-best
score) and the ``rerank_top`` shortlist the transformer then decides among. A gate on the
margin (:func:`accepted`) lets the static answer stand alone; :func:`smallest_gate` fits it.

Everything here is a function of a :class:`~siamtext.classify.examples.ClassState` and
tensors: the estimator (:class:`~siamtext.classify.IntentClassifier`) composes them, and
:mod:`siamtext.classify.cascade` describes the whole cascade.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from siamtext.classify.examples import ClassState
from siamtext.static import StaticEncoder
from siamtext.validation import check_positive_int, check_texts

_QUERY_CHUNK = 1024


# ---------------------------------------------------------------------- checks
def check_first_pass(first_pass: object, rerank_top: object) -> None:
    """Check a ``first_pass`` / ``rerank_top`` pair at the public boundary.

    Raises:
        ValueError: ``rerank_top`` without a ``first_pass``, or not a positive integer; a
            :class:`StaticEncoder` that has lost its vectors.
        TypeError: A ``first_pass`` that is not a :class:`StaticEncoder`.
    """
    if rerank_top is not None:
        check_positive_int(rerank_top, "rerank_top")
        if first_pass is None:
            raise ValueError(f"rerank_top={rerank_top!r} needs a first_pass: pass "
                             "first_pass=model.distill_static() (or StaticEncoder.from_pretrained"
                             "(folder))")
    if first_pass is None:
        return
    if not isinstance(first_pass, StaticEncoder):
        raise TypeError(f"first_pass must be a siamtext.static.StaticEncoder (from "
                        f"model.distill_static()), got {type(first_pass).__name__}")
    if getattr(first_pass, "static_model", None) is None:
        raise ValueError("first_pass has no static model (its vectors are missing): load it "
                         "again with StaticEncoder.from_pretrained(folder)")


def check_params(first_pass: object, rerank_top: object, first_pass_margin: object) -> None:
    """Check an intent classifier's ``first_pass``, ``rerank_top`` and ``first_pass_margin``."""
    check_first_pass(first_pass, rerank_top)
    if first_pass_margin is not None:
        check_gate(first_pass_margin)
        if first_pass is None:
            raise ValueError(f"first_pass_margin={first_pass_margin!r} needs a first_pass: "
                             "pass first_pass=model.distill_static()")


def check_gate(value: object, name: str = "first_pass_margin") -> float:
    """A static margin gate: any number but NaN (``-inf``: always trust the static answer,
    ``+inf``: never)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
        raise TypeError(f"{name} must be a number (or None), got {type(value).__name__}")
    if math.isnan(value):
        raise ValueError(f"{name} must be a number, got nan")
    return float(value)


def texts_of(X: object, what: str, name: str = "X") -> list[str]:
    """``X`` as texts; precomputed embeddings are refused (the static model embeds texts)."""
    if isinstance(X, torch.Tensor) or isinstance(X, np.ndarray) and X.dtype.kind not in "UO":
        raise ValueError(f"{what} with a first_pass needs texts (the static model embeds them), "
                         "got precomputed embeddings")
    return check_texts(X.tolist() if isinstance(X, np.ndarray) else X, name)


def embed(first_pass: StaticEncoder, texts: list[str]) -> torch.Tensor:
    """``(n, static_dim)`` static embeddings on the CPU."""
    return first_pass.encode(texts, convert_to="torch").float().cpu()


# ---------------------------------------------------------------------- queries
@dataclass(frozen=True)
class StaticQueries:
    """Static embeddings of queries ``(n, static_dim)``. A shortlist is made from them where
    the classifier scores, against the snapshot it scores, so it always matches the classes
    scored (even when the classes changed since the queries were embedded)."""

    embeddings: torch.Tensor

    def __getitem__(self, rows: np.ndarray) -> StaticQueries:
        return StaticQueries(self.embeddings[torch.as_tensor(rows, dtype=torch.long)])


def check_state(state: ClassState, first_pass: StaticEncoder) -> None:
    """Refuse a snapshot that has no static embeddings, or those of another static model."""
    if state.static is None:
        raise ValueError("first_pass was set after fit, so the static embeddings of the "
                         "examples are missing: call fit(texts, labels) again")
    if state.static.examples.shape[1] != first_pass.embedding_dim:
        raise ValueError(f"first_pass embeds in {first_pass.embedding_dim} dimensions, the "
                         f"stored static examples have {state.static.examples.shape[1]}: "
                         "it is another static model; call fit again")


# ---------------------------------------------------------------------- scores
def class_scores(state: ClassState, q: torch.Tensor, mode: str) -> torch.Tensor:
    """``(n, n_classes)`` static class scores of static queries ``q``: cosine to the static
    prototypes (``mode="prototype"``), else to each class's nearest static example."""
    static = state.static
    if mode == "prototype":
        return q @ static.prototypes.T
    sim = q @ static.examples.T
    out = torch.full((len(q), len(state.classes)), -math.inf)
    index = state.example_classes.cpu().expand(len(q), -1)
    return out.scatter_reduce_(1, index, sim, reduce="amax")


def static_view(state: ClassState, q: torch.Tensor, mode: str, rerank_top: int | None
                ) -> tuple[np.ndarray, np.ndarray, torch.Tensor | None]:
    """The static model's view of each query.

    Args:
        state: The snapshot scored (with static embeddings).
        q: ``(n, static_dim)`` static query embeddings.
        mode: The classifier's mode (:func:`class_scores`).
        rerank_top: Shortlist size, or ``None`` for none.

    Returns:
        ``answer`` ``(n,)`` best class index, ``margin`` ``(n,)`` best minus second-best class
        score (``+inf`` with one class), and ``allowed`` ``(n, n_classes)`` bool: the
        ``rerank_top`` shortlist on the examples' device (``None`` without ``rerank_top``).
    """
    n_classes = len(state.classes)
    answers, margins, shortlists = [], [], []
    k = min(max(2, rerank_top or 0), n_classes)
    with torch.inference_mode():
        for a in range(0, len(q), _QUERY_CHUNK):
            scores = class_scores(state, q[a : a + _QUERY_CHUNK], mode)
            top_v, top_i = torch.topk(scores, k, dim=1)
            answers.append(top_i[:, 0])
            margins.append(top_v[:, 0] - top_v[:, 1] if k > 1
                           else torch.full((len(top_v),), math.inf))
            if rerank_top is not None:
                allowed = torch.zeros_like(scores, dtype=torch.bool)
                allowed.scatter_(1, top_i[:, :rerank_top], True)
                shortlists.append(allowed)
    if not len(q):
        return (np.zeros(0, dtype=np.int64), np.zeros(0),
                None if rerank_top is None else torch.zeros((0, n_classes), dtype=torch.bool))
    device = state.examples.device
    allowed = torch.cat(shortlists).to(device) if shortlists else None
    return torch.cat(answers).numpy(), torch.cat(margins).double().numpy(), allowed


def resolve_shortlist(state: ClassState, allowed: object, mode: str,
                      rerank_top: int | None) -> torch.Tensor | None:
    """The ``(n, n_classes)`` mask of a shortlist against ``state``: static queries are
    shortlisted here; a mask (or ``None``) is returned as given."""
    if isinstance(allowed, StaticQueries):
        return static_view(state, allowed.embeddings, mode, rerank_top)[2]
    return allowed


# ---------------------------------------------------------------------- the gate
def accepted(margin: np.ndarray, gate: float | None) -> np.ndarray:
    """Which static margins clear the gate (none without one)."""
    return margin > gate if gate is not None else np.zeros(len(margin), dtype=bool)


def gated(state: ClassState, queries: StaticQueries, idx: np.ndarray, best: np.ndarray,
          mode: str, gate: float | None, accepted_rows: np.ndarray | None = None
          ) -> tuple[np.ndarray, np.ndarray]:
    """The transformer's class indices ``idx`` and best similarities ``best`` with the static
    answer put in where the gate accepts a query (its similarity ``+inf``: never rejected).

    Args:
        state: The snapshot ``idx`` indexes into.
        queries: The static embeddings of the same queries.
        idx: ``(n,)`` the transformer's class indices.
        best: ``(n,)`` its best similarities.
        mode: The classifier's mode.
        gate: The margin gate in use (``None``: never).
        accepted_rows: Which queries the gate took, when decided before (else from the static
            scores of ``state``).
    """
    answer, margin, _ = static_view(state, queries.embeddings, mode, None)
    if accepted_rows is None:
        accepted_rows = accepted(margin, gate)
    idx, best = idx.copy(), best.copy()
    idx[accepted_rows], best[accepted_rows] = answer[accepted_rows], np.inf
    return idx, best


def smallest_gate(margin: np.ndarray, disagree: np.ndarray, max_disagreement: float) -> float:
    """The smallest gate ``t`` (``-inf`` or one of the margins) such that the queries with
    ``margin > t`` hold at most ``floor(max_disagreement * n)`` disagreements."""
    n = len(margin)
    budget = math.floor(max_disagreement * n + 1e-9)
    order = np.argsort(margin, kind="stable")
    m, d = margin[order], disagree[order].astype(np.int64)
    suffix = np.concatenate([np.cumsum(d[::-1])[::-1], [0]])  # disagreements in m[i:]
    if suffix[0] <= budget:
        return -math.inf
    last = np.flatnonzero(np.append(m[1:] != m[:-1], True))  # last index of each value
    ok = last[suffix[last + 1] <= budget]
    return float(m[ok[0]])


def fit_margin(margin: np.ndarray, static: list, transformer: list, labels: list | None,
               max_disagreement: float) -> tuple[float, dict]:
    """The gate of :func:`smallest_gate` for these validation answers, and its report.

    Args:
        margin: ``(n,)`` static margins.
        static: The static answers (labels).
        transformer: The transformer's full decisions (labels, rejection included).
        labels: The true labels, or ``None`` (then no accuracies are reported).
        max_disagreement: Share of queries the gate may answer unlike the transformer.

    Returns:
        ``(gate, info)``: ``info`` holds ``max_disagreement``, ``n``, ``disagreement``,
        ``static_share`` and, with labels, ``accuracy_transformer`` / ``_static`` /
        ``_cascade``.
    """
    n = len(margin)
    disagree = np.array([s != t for s, t in zip(static, transformer)])
    gate = smallest_gate(margin, disagree, max_disagreement)
    took = margin > gate
    info: dict = {"max_disagreement": float(max_disagreement), "n": n,
                  "disagreement": float(disagree[took].sum() / n),
                  "static_share": float(took.mean())}
    if labels is not None:
        final = [s if a else t for s, t, a in zip(static, transformer, took)]
        for name, guess in (("transformer", transformer), ("static", static),
                            ("cascade", final)):
            info[f"accuracy_{name}"] = float(np.mean([g == v for g, v in zip(guess, labels)]))
    return gate, info
