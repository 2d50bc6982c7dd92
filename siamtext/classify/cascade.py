"""Cascades: a static first pass proposes, the transformer decides.

A :class:`~siamtext.static.StaticEncoder` embeds tens of thousands of texts a second; the
transformer a few hundred. In a cascade the static model does the wide, cheap part and the
transformer only the narrow part where the decision is made:

* Duplicates (:meth:`DuplicateDetector.find_duplicates
  <siamtext.classify.DuplicateDetector.find_duplicates>` with ``first_pass=``): the static
  model proposes candidate pairs (each text's ``rerank_top`` nearest by static cosine, or
  every pair at or above a static ``first_pass_threshold``, or both: the nearest among those
  above it); the transformer embeds only the texts in some candidate pair and keeps the
  candidates whose transformer similarity reaches the threshold. ``rerank_top`` alone makes
  every text a candidate of some pair, so the transformer still embeds the whole corpus (it
  saves the pair search, not the encoding); the static threshold is what leaves texts out.
* Intents (:class:`IntentClassifier(first_pass=..., rerank_top=...)
  <siamtext.classify.IntentClassifier>`): the static model shortlists the ``rerank_top`` best
  classes and the transformer decides among them. A shortlist alone still runs the
  transformer on every query, so a confidence gate skips it: when the static margin (best
  minus second-best static class score) is above ``first_pass_margin`` the static answer is
  final. :func:`fit_gate` fits that margin on validation data.

The static state of an intent classifier lives beside the transformer's: ``first_pass_examples_``
(``(n_examples, static_dim)``, one row per stored example) and ``first_pass_prototypes_``, on
the CPU.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from siamtext.classify.approximate import faiss_pairs
from siamtext.classify.search import DEFAULT_BLOCK_SIZE, _unique_sorted_pairs, exact_pairs
from siamtext.classify.threshold import check_similarity_threshold
from siamtext.static import StaticEncoder
from siamtext.validation import check_positive_int, check_texts

if TYPE_CHECKING:
    from siamtext.classify.dedup import DuplicateDetector, Duplicates
    from siamtext.classify.intent import IntentClassifier

logger = logging.getLogger(__name__)
FIRST_PASS_DIR = "first_pass"
_PAIR_CHUNK = 65536
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


def check_params(clf: IntentClassifier) -> None:
    """Check an intent classifier's ``first_pass``, ``rerank_top`` and ``first_pass_margin``."""
    check_first_pass(clf.first_pass, clf.rerank_top)
    if clf.first_pass_margin is not None:
        check_gate(clf.first_pass_margin)
        if clf.first_pass is None:
            raise ValueError(f"first_pass_margin={clf.first_pass_margin!r} needs a first_pass: "
                             "pass first_pass=model.distill_static()")


def check_gate(value: object, name: str = "first_pass_margin") -> float:
    """A static margin gate: any number but NaN (``-inf``: always trust the static answer,
    ``+inf``: never)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
        raise TypeError(f"{name} must be a number (or None), got {type(value).__name__}")
    if math.isnan(value):
        raise ValueError(f"{name} must be a number, got nan")
    return float(value)


def _texts(X: object, what: str, name: str = "X") -> list[str]:
    if isinstance(X, torch.Tensor) or isinstance(X, np.ndarray) and X.dtype.kind not in "UO":
        raise ValueError(f"{what} with a first_pass needs texts (the static model embeds them), "
                         "got precomputed embeddings")
    return check_texts(X.tolist() if isinstance(X, np.ndarray) else X, name)


# ---------------------------------------------------------------------- duplicates
def find_duplicates(
    detector: DuplicateDetector, corpus: object, threshold: float, *, first_pass: object,
    rerank_top: int | None, first_pass_threshold: float | None, top_k: int | None = None,
    method: str = "exact", block_size: int = DEFAULT_BLOCK_SIZE, faiss_index: str = "auto",
    recall_target: float = 0.95, show_progress: bool | None = None,
) -> Duplicates:
    """Duplicates by a cascade: static candidates, transformer decisions.

    A candidate pair ``(i, j)`` has ``j`` among the ``rerank_top`` static nearest neighbours
    of ``i`` (or ``i`` of ``j``), and a static similarity of at least
    ``first_pass_threshold``; either condition alone when only one is given. The transformer
    embeds only the texts of candidate pairs; a candidate is kept when its transformer
    similarity is at least ``threshold``. With ``rerank_top >= len(corpus) - 1``
    every pair is a candidate and the result is the exact search's. ``method``,
    ``block_size``, ``faiss_index`` and ``recall_target`` set the static search, as in
    :meth:`~siamtext.classify.DuplicateDetector.find_duplicates`.

    Returns:
        :class:`~siamtext.classify.dedup.Duplicates`, as without a first pass.
    """
    from siamtext.classify.dedup import Duplicates
    from siamtext.classify.search import connected_groups

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
    texts = _texts(corpus, "find_duplicates", "corpus")
    model = detector._require_model()
    n = len(texts)
    static = first_pass.encode(texts, convert_to="torch")
    # a cap without a floor first, then the floor: exact_pairs would warn about the pairs
    # above the floor that the cap leaves out, which here is the point
    floor = -1.0 if rerank_top is not None or first_pass_threshold is None \
        else first_pass_threshold
    if n < 2:
        candidates, static_scores = np.zeros((0, 2), dtype=np.int64), np.zeros(0)
    elif method == "exact":
        candidates, static_scores = exact_pairs(static, floor, rerank_top, block_size,
                                                show_progress)
    else:
        candidates, static_scores = faiss_pairs(static.numpy(), floor, rerank_top, faiss_index,
                                                recall_target, show_progress=show_progress)
    if rerank_top is not None and first_pass_threshold is not None:
        candidates = candidates[static_scores >= first_pass_threshold]
    pairs, scores = _rerank(model, texts, candidates, threshold, detector.batch_size)
    groups = connected_groups(pairs, n)
    logger.info("find_duplicates with a first pass: %d items, %d candidate pairs over %d texts, "
                "threshold %.4f: %d pairs in %d groups", n, len(candidates),
                len(np.unique(candidates)), threshold, len(pairs), len(groups))
    return Duplicates(pairs, scores, groups, n)


def _rerank(model: Any, texts: list[str], candidates: np.ndarray, threshold: float,
            batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Transformer similarity of candidate pairs; those at or above ``threshold``, sorted."""
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


# ---------------------------------------------------------------------- intents: state
def embed_examples(clf: IntentClassifier, X: object, append: bool) -> torch.Tensor | None:
    """Static embeddings of new examples (``None`` without a first pass); checks that
    appending them is possible, before the classifier changes."""
    if clf.first_pass is None:
        return None
    check_first_pass(clf.first_pass, clf.rerank_top)
    if append and not hasattr(clf, "first_pass_examples_"):
        raise ValueError("this IntentClassifier was fitted without its first_pass, so the "
                         "static embeddings of its examples are missing: call fit(texts, "
                         "labels) again")
    return clf.first_pass.encode(_texts(X, "fit"), convert_to="torch")


def store_examples(clf: IntentClassifier, static: torch.Tensor | None, append: bool = False,
                   keep: torch.Tensor | None = None) -> None:
    """Update the static state after the classifier's own: replace, append or filter rows
    so that they stay aligned with ``example_classes_``."""
    if keep is not None and hasattr(clf, "first_pass_examples_"):
        static, append = clf.first_pass_examples_[keep.cpu()], False
    elif static is None:
        return
    examples = torch.cat([clf.first_pass_examples_, static]) if append else static
    classes = clf.example_classes_.cpu()
    sums = torch.zeros((len(clf.classes_), examples.shape[1]))
    sums.index_add_(0, classes, examples)
    clf.first_pass_examples_ = examples
    clf.first_pass_prototypes_ = F.normalize(sums, p=2, dim=-1)


# ---------------------------------------------------------------------- intents: scoring
@dataclass(frozen=True)
class StaticQueries:
    """Static embeddings of queries ``(n, static_dim)``. A shortlist is made from them where
    the classifier scores, under its state lock, so it always matches the classes scored."""

    embeddings: torch.Tensor

    def __getitem__(self, rows: np.ndarray) -> StaticQueries:
        return StaticQueries(self.embeddings[torch.as_tensor(rows, dtype=torch.long)])


def _state_lock() -> Any:
    from siamtext.classify.intent import _STATE_LOCK

    return _STATE_LOCK


def static_queries(clf: IntentClassifier, X: object) -> StaticQueries:
    """Embed queries with the first pass (after checking it can score them)."""
    check_first_pass(clf.first_pass, clf.rerank_top)
    if not hasattr(clf, "first_pass_examples_"):
        raise ValueError("first_pass was set after fit, so the static embeddings of the "
                         "examples are missing: call fit(texts, labels) again")
    if clf.first_pass_examples_.shape[1] != clf.first_pass.embedding_dim:
        raise ValueError(f"first_pass embeds in {clf.first_pass.embedding_dim} dimensions, the "
                         f"stored static examples have {clf.first_pass_examples_.shape[1]}: "
                         "it is another static model; call fit again")
    return StaticQueries(clf.first_pass.encode(_texts(X, "prediction"), convert_to="torch"))


def static_answers(clf: IntentClassifier, X: object
                   ) -> tuple[np.ndarray, np.ndarray, torch.Tensor | None]:
    """The static model's view of each query.

    Class scores are cosine similarities to the static prototypes (``mode="prototype"``) or
    to each class's nearest static example (``mode="knn"``).

    Args:
        clf: A fitted :class:`~siamtext.classify.IntentClassifier` with a ``first_pass``.
        X: Texts, or their :class:`StaticQueries`.

    Returns:
        ``answer`` ``(n,)`` best class index, ``margin`` ``(n,)`` best minus second-best class
        score (``+inf`` with one class), and ``allowed`` ``(n, n_classes)`` bool: the
        ``rerank_top`` shortlist on the classifier's device (``None`` without ``rerank_top``).
    """
    queries = X if isinstance(X, StaticQueries) else static_queries(clf, X)
    with _state_lock():
        return _static_view(clf, queries.embeddings)


def _static_view(clf: IntentClassifier, q: torch.Tensor
                 ) -> tuple[np.ndarray, np.ndarray, torch.Tensor | None]:
    n_classes = len(clf.classes_)
    answers, margins, shortlists = [], [], []
    k = min(max(2, clf.rerank_top or 0), n_classes)
    with torch.inference_mode():
        for a in range(0, len(q), _QUERY_CHUNK):
            scores = _class_scores(clf, q[a : a + _QUERY_CHUNK])
            top_v, top_i = torch.topk(scores, k, dim=1)
            answers.append(top_i[:, 0])
            margins.append(top_v[:, 0] - top_v[:, 1] if k > 1
                           else torch.full((len(top_v),), math.inf))
            if clf.rerank_top is not None:
                allowed = torch.zeros_like(scores, dtype=torch.bool)
                allowed.scatter_(1, top_i[:, : clf.rerank_top], True)
                shortlists.append(allowed)
    if not len(q):
        return (np.zeros(0, dtype=np.int64), np.zeros(0),
                None if clf.rerank_top is None else torch.zeros((0, n_classes), dtype=torch.bool))
    allowed = torch.cat(shortlists).to(clf.device) if shortlists else None
    return torch.cat(answers).numpy(), torch.cat(margins).double().numpy(), allowed


def _class_scores(clf: IntentClassifier, q: torch.Tensor) -> torch.Tensor:
    if clf.mode == "prototype":
        return q @ clf.first_pass_prototypes_.T
    sim = q @ clf.first_pass_examples_.T
    out = torch.full((len(q), len(clf.classes_)), -math.inf)
    index = clf.example_classes_.cpu().expand(len(q), -1)
    return out.scatter_reduce_(1, index, sim, reduce="amax")


def shortlist(clf: IntentClassifier, X: object) -> StaticQueries | None:
    """What the transformer's scoring needs for the ``rerank_top`` shortlist: the static
    query embeddings, or ``None`` (every class allowed)."""
    if clf.first_pass is None or clf.rerank_top is None:
        return None
    return static_queries(clf, X)


def resolve_shortlist(clf: IntentClassifier, allowed: object) -> torch.Tensor | None:
    """The ``(n, n_classes)`` mask of a shortlist against the classifier's current classes
    (called where it scores, under its state lock)."""
    if isinstance(allowed, StaticQueries):
        return _static_view(clf, allowed.embeddings)[2]
    return allowed


def predict(clf: IntentClassifier, X: object) -> np.ndarray:
    """Labels by the cascade: the static answer where its margin clears the gate, else the
    transformer's among the shortlist (and the out-of-scope threshold on its similarity;
    answers the gate accepts are never rejected).

    The texts are embedded outside the classifier's state lock; the answers all come from
    the one state scored under it (a class added meanwhile may move a query past the gate
    that was checked before, never mix two states).
    """
    texts = _texts(X, "prediction")
    queries = static_queries(clf, texts)
    _, margin, _ = static_answers(clf, queries)
    accepted = _accepted(clf, margin)
    rest = np.flatnonzero(~accepted)
    emb = clf._embed([texts[i] for i in rest.tolist()]) if len(rest) else None
    with _state_lock():
        idx, best = np.zeros(len(texts), dtype=np.int64), np.full(len(texts), np.inf,
                                                                  dtype=np.float32)
        if emb is not None:
            sub = queries[rest] if clf.rerank_top is not None else None
            _, b, p = clf._scores(emb, proba=False, allowed=sub)
            idx[rest], best[rest] = p.cpu().numpy(), b.cpu().numpy()
        return clf._decide(*gated(clf, queries, idx, best, accepted))


def gated(clf: IntentClassifier, queries: StaticQueries, idx: np.ndarray, best: np.ndarray,
          accepted: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The transformer's class indices ``idx`` and best similarities ``best`` with the static
    answer put in where the gate accepts a query (its similarity ``+inf``: never rejected).

    Call it under the classifier's state lock. ``accepted``: which queries the gate took, when
    decided before (else from the static scores of this state).
    """
    answer, margin, _ = _static_view(clf, queries.embeddings)
    if accepted is None:
        accepted = _accepted(clf, margin)
    idx, best = idx.copy(), best.copy()
    idx[accepted], best[accepted] = answer[accepted], np.inf
    return idx, best


def _accepted(clf: IntentClassifier, margin: np.ndarray) -> np.ndarray:
    """Which static margins clear the gate (none without one)."""
    gate = clf.first_pass_gate
    return margin > gate if gate is not None else np.zeros(len(margin), dtype=bool)


# ---------------------------------------------------------------------- intents: the gate
def fit_gate(clf: IntentClassifier, X: object, y: object = None,
             max_disagreement: float = 0.005) -> IntentClassifier:
    """Fit ``first_pass_margin_``: the smallest static margin at which the answers it lets
    through disagree with the transformer's on at most ``max_disagreement`` of ``X``.

    The transformer's answer is the full decision (among the shortlist, with out-of-scope
    rejection), so ``X`` may hold out-of-scope examples. ``y`` is optional and only adds
    accuracies to ``first_pass_info_``. Never fit on the data you report on.
    """
    if isinstance(max_disagreement, bool) or not isinstance(
            max_disagreement, (int, float)) or not 0.0 <= max_disagreement < 1.0:
        raise ValueError(f"max_disagreement must be a number in [0, 1), got {max_disagreement!r}")
    if clf.first_pass is None:
        raise ValueError("fit_first_pass needs a first_pass: build the classifier with "
                         "IntentClassifier(model, first_pass=model.distill_static())")
    texts = _texts(X, "fit_first_pass")
    if not texts:
        raise ValueError("X must hold at least one validation example, got none")
    labels = None if y is None else clf._labels(y, len(texts))
    queries = static_queries(clf, texts)
    emb = clf._embed(texts)
    with _state_lock():
        answer, margin, allowed = _static_view(clf, queries.embeddings)
        _, best, pred = clf._scores(emb, proba=False, allowed=allowed)
        transformer = clf._decide(pred.cpu().numpy(), best.cpu().numpy()).tolist()
        static = clf.classes_[answer].tolist()
    disagree = np.array([s != t for s, t in zip(static, transformer)])
    gate = smallest_gate(margin, disagree, max_disagreement)
    accepted = margin > gate
    info: dict[str, Any] = {"max_disagreement": float(max_disagreement), "n": len(texts),
                            "disagreement": float(disagree[accepted].sum() / len(texts)),
                            "static_share": float(accepted.mean())}
    if labels is not None:
        final = [s if a else t for s, t, a in zip(static, transformer, accepted)]
        for name, guess in (("transformer", transformer), ("static", static),
                            ("cascade", final)):
            info[f"accuracy_{name}"] = float(np.mean([g == v for g, v in zip(guess, labels)]))
    clf.first_pass_margin_ = gate
    clf.first_pass_info_ = info
    return clf


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


# ---------------------------------------------------------------------- intents: storage
def _json_float(x: float | None) -> float | str | None:
    return x if x is None or math.isfinite(x) else ("inf" if x > 0 else "-inf")


def _from_json(x: float | str | None) -> float | None:
    return None if x is None else float(x)


def state(clf: IntentClassifier) -> tuple[dict, dict[str, torch.Tensor]]:
    """The JSON payload entry and the tensors to save (both empty without a first pass)."""
    if clf.first_pass is None:
        return {}, {}
    payload = {"rerank_top": clf.rerank_top,
               "first_pass_margin": _json_float(clf.first_pass_margin),
               "first_pass_margin_": _json_float(getattr(clf, "first_pass_margin_", None)),
               "first_pass_info_": getattr(clf, "first_pass_info_", None)}
    tensors = ({"first_pass_examples": clf.first_pass_examples_.contiguous()}
               if hasattr(clf, "first_pass_examples_") else {})
    return {"first_pass": payload}, tensors


def save(clf: IntentClassifier, folder: Path) -> None:
    if clf.first_pass is not None:
        clf.first_pass.save_pretrained(folder / FIRST_PASS_DIR)


def restore(clf: IntentClassifier, folder: str | Path, payload: dict,
            tensors: dict[str, torch.Tensor]) -> None:
    """Load the first pass saved beside a classifier (nothing when there is none)."""
    info = payload.get("first_pass")
    if info is None:
        return
    clf.first_pass = StaticEncoder.from_pretrained(Path(folder) / FIRST_PASS_DIR)
    clf.rerank_top = info["rerank_top"]
    clf.first_pass_margin = _from_json(info["first_pass_margin"])
    if info.get("first_pass_margin_") is not None:
        clf.first_pass_margin_ = _from_json(info["first_pass_margin_"])
        clf.first_pass_info_ = info.get("first_pass_info_")
    if "first_pass_examples" in tensors:
        store_examples(clf, tensors["first_pass_examples"].float())
