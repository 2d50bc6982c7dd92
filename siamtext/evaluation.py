"""Evaluation: STS correlation, pair classification and intent accuracy.

The metric functions take embeddings (numpy arrays or tensors) so they can be reused on
precomputed vectors; the evaluator classes take texts, embed them with a model and call the
functions. An evaluator is a callable ``evaluator(model) -> dict[str, float]`` with a
``primary_metric`` key, so the trainer can run it during training and keep the best
checkpoint by it.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from scipy.stats import pearsonr, spearmanr
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.model_selection import StratifiedKFold, cross_val_score

from siamtext.validation import check_choice, check_positive_int, check_texts

if TYPE_CHECKING:
    from siamtext.model import SiamText

ArrayLike = np.ndarray | torch.Tensor | Sequence[Sequence[float]]


def _array(x: ArrayLike, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty (n, dim) array, got shape {arr.shape}")
    return arr


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)


def paired_cosine(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """Cosine similarity of row ``i`` of ``a`` with row ``i`` of ``b``: ``(n,)``."""
    a, b = _array(a, "a"), _array(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {a.shape} and {b.shape}")
    return np.sum(_normalise(a) * _normalise(b), axis=1)


# ---------------------------------------------------------------------- STS
def sts_correlation(emb1: ArrayLike, emb2: ArrayLike, scores: Sequence[float]) -> dict[str, float]:
    """Spearman and Pearson correlation (x100) of cosine similarity with gold scores.

    Args:
        emb1: ``(n, dim)`` embeddings of the first sentences.
        emb2: ``(n, dim)`` embeddings of the second sentences.
        scores: ``n`` gold similarity scores (any scale).

    Returns:
        ``{"spearman": ..., "pearson": ...}`` in percent.
    """
    sims = paired_cosine(emb1, emb2)
    gold = np.asarray(scores, dtype=np.float64)
    if gold.shape != (len(sims),):
        raise ValueError(f"scores must have {len(sims)} values, got shape {gold.shape}")
    if not np.all(np.isfinite(gold)):
        raise ValueError("scores contain NaN or infinite values")
    return {"spearman": 100.0 * float(spearmanr(sims, gold)[0]),
            "pearson": 100.0 * float(pearsonr(sims, gold)[0])}


# ---------------------------------------------------------------------- pair classification
def _binary(labels: Sequence[int], n: int, name: str) -> np.ndarray:
    y = np.asarray(labels)
    if y.shape != (n,):
        raise ValueError(f"{name} must have {n} values, got shape {y.shape}")
    bad = set(np.unique(y).tolist()) - {0, 1}
    if bad:
        raise ValueError(f"{name} must be 0 or 1, got other values {sorted(bad)[:10]}")
    return y.astype(int)


def best_threshold(similarities: Sequence[float], labels: Sequence[int],
                   metric: Literal["accuracy", "f1"] = "accuracy") -> float:
    """The similarity threshold (predict 1 when ``sim >= t``) that maximises ``metric``.

    Fit this on a split that is not the one you report on.

    Returns:
        The threshold, halfway between two neighbouring similarities.
    """
    check_choice(metric, ("accuracy", "f1"), "metric")
    s = np.asarray(similarities, dtype=np.float64)
    y = _binary(labels, len(s), "labels")
    order = np.argsort(-s)
    s, y = s[order], y[order]
    tp = np.cumsum(y)  # predicting the first k+1 as positive
    fp = np.cumsum(1 - y)
    pos = y.sum()
    if metric == "accuracy":
        score = tp + (len(y) - pos - fp)
    else:
        score = np.where(tp > 0, 2 * tp / (tp + fp + pos), 0.0)
    # only cut between distinct values
    valid = np.append(s[1:] < s[:-1], True)
    score = np.where(valid, score, -np.inf)
    k = int(np.argmax(score))
    if metric == "accuracy" and score[k] < len(y) - pos:  # predicting all negative is better
        return float(s[0] + 1e-6)
    return float(s[k] if k == len(s) - 1 else (s[k] + s[k + 1]) / 2)


def pair_classification(fit_similarities: Sequence[float], fit_labels: Sequence[int],
                        similarities: Sequence[float], labels: Sequence[int]) -> dict[str, float]:
    """Accuracy, F1 and average precision of ``sim >= threshold`` on a reported split.

    The accuracy and F1 thresholds are fitted on ``fit_*`` (a separate split), never on the
    reported one; average precision needs no threshold.

    Returns:
        ``accuracy``, ``f1``, ``average_precision`` (percent) and the two thresholds.
    """
    acc_t = best_threshold(fit_similarities, fit_labels, "accuracy")
    f1_t = best_threshold(fit_similarities, fit_labels, "f1")
    s = np.asarray(similarities, dtype=np.float64)
    y = _binary(labels, len(s), "labels")
    pred_f1 = s >= f1_t
    tp = int(np.sum(pred_f1 & (y == 1)))
    f1 = 2 * tp / max(1, int(pred_f1.sum()) + int(y.sum()))
    return {
        "accuracy": 100.0 * float(np.mean((s >= acc_t) == (y == 1))),
        "f1": 100.0 * f1,
        "average_precision": 100.0 * float(average_precision_score(y, s)) if y.any() else 0.0,
        "accuracy_threshold": acc_t,
        "f1_threshold": f1_t,
    }


# ---------------------------------------------------------------------- intents
def intent_accuracy(train_embeddings: ArrayLike, train_labels: Sequence[Hashable],
                    test_embeddings: ArrayLike, test_labels: Sequence[Hashable],
                    method: Literal["prototype", "knn", "logistic"] = "prototype",
                    k: int = 1) -> float:
    """Accuracy (percent) of intent prediction from embeddings.

    ``"prototype"``: the class whose mean (normalised) training embedding is closest.
    ``"knn"``: majority vote of the ``k`` nearest training texts (ties go to the class of
    the nearest among the tied).
    ``"logistic"``: a multinomial logistic regression on the normalised training
    embeddings (MTEB's classification protocol, SetFit's head). Its L2 strength ``C`` is
    chosen among ``LOGISTIC_CS`` by stratified cross-validation on the training embeddings
    alone (never on the test set); with a class of a single example there is nothing to
    cross-validate and scikit-learn's default ``C=1`` is used. On unit vectors ``C=1``
    often underfits, since confident logits need large weights.

    Returns:
        Accuracy in percent.
    """
    check_choice(method, ("prototype", "knn", "logistic"), "method")
    check_positive_int(k, "k")
    train = _normalise(_array(train_embeddings, "train_embeddings"))
    test = _normalise(_array(test_embeddings, "test_embeddings"))
    if len(train_labels) != len(train) or len(test_labels) != len(test):
        raise ValueError(f"labels do not match embeddings: {len(train_labels)} train labels for "
                         f"{len(train)} rows, {len(test_labels)} test labels for {len(test)} rows")
    classes = list(dict.fromkeys(train_labels))
    index = {c: i for i, c in enumerate(classes)}
    y_train = np.asarray([index[c] for c in train_labels])
    if method == "logistic":
        if len(classes) < 2:
            raise ValueError(f"method='logistic' needs at least two classes, got {classes}")
        pred = _logistic_head(train, y_train).predict(test)
    elif method == "prototype":
        protos = np.zeros((len(classes), train.shape[1]), dtype=np.float32)
        np.add.at(protos, y_train, train)
        pred = np.argmax(test @ _normalise(protos).T, axis=1)
    else:
        pred = np.empty(len(test), dtype=int)
        kk = min(k, len(train))
        for start in range(0, len(test), 1024):
            sim = test[start : start + 1024] @ train.T
            top = np.argsort(-sim, axis=1)[:, :kk]
            for r, row in enumerate(top):
                votes = np.bincount(y_train[row], minlength=len(classes))
                best = np.flatnonzero(votes == votes.max())
                pred[start + r] = next(y_train[j] for j in row if y_train[j] in best)
    gold = np.asarray([index.get(c, -1) for c in test_labels])
    return 100.0 * float(np.mean(pred == gold))


#: L2 strengths tried by ``intent_accuracy(method="logistic")``.
LOGISTIC_CS = (0.1, 1.0, 10.0, 100.0)


def _logistic_head(x: np.ndarray, y: np.ndarray) -> LogisticRegression:
    """A logistic regression on ``x``, its ``C`` picked by stratified CV on ``x`` itself."""
    smallest = int(np.bincount(y).min())
    c = 1.0
    if smallest >= 2:
        folds = StratifiedKFold(n_splits=min(5, smallest), shuffle=True, random_state=0)
        scores = [cross_val_score(LogisticRegression(C=c, max_iter=1000), x, y, cv=folds).mean()
                  for c in LOGISTIC_CS]
        c = LOGISTIC_CS[int(np.argmax(scores))]
    return LogisticRegression(C=c, max_iter=1000).fit(x, y)


# ---------------------------------------------------------------------- evaluators
class STSEvaluator:
    """Spearman / Pearson of a model's cosine similarities against gold scores.

    Args:
        sentences1: First sentences.
        sentences2: Second sentences.
        scores: Gold scores.
        name: Prefix of the metric names.
        batch_size: Encoding batch size.
    """

    def __init__(self, sentences1: Sequence[str], sentences2: Sequence[str],
                 scores: Sequence[float], name: str = "sts", batch_size: int = 64) -> None:
        self.sentences1 = check_texts(sentences1, "sentences1")
        self.sentences2 = check_texts(sentences2, "sentences2")
        if not (len(self.sentences1) == len(self.sentences2) == len(scores)) or not scores:
            raise ValueError(f"sentences1, sentences2 and scores must have the same non-zero "
                             f"length, got {len(self.sentences1)}, {len(self.sentences2)}, "
                             f"{len(scores)}")
        self.scores = list(scores)
        self.name = name
        self.batch_size = batch_size
        self.primary_metric = f"{name}_spearman"

    def __call__(self, model: SiamText) -> dict[str, float]:
        e1 = model.encode(self.sentences1, batch_size=self.batch_size)
        e2 = model.encode(self.sentences2, batch_size=self.batch_size)
        return {f"{self.name}_{k}": v for k, v in sts_correlation(e1, e2, self.scores).items()}


class PairClassificationEvaluator:
    """Accuracy / F1 / AP of duplicate detection, thresholds fitted on a separate split.

    Args:
        fit_pairs: ``(sentences1, sentences2, labels)`` used only to fit the thresholds.
        eval_pairs: ``(sentences1, sentences2, labels)`` reported on.
        name: Prefix of the metric names.
        batch_size: Encoding batch size.
    """

    def __init__(self, fit_pairs: tuple[Sequence[str], Sequence[str], Sequence[int]],
                 eval_pairs: tuple[Sequence[str], Sequence[str], Sequence[int]],
                 name: str = "pairs", batch_size: int = 64) -> None:
        self.fit_pairs = fit_pairs
        self.eval_pairs = eval_pairs
        self.name = name
        self.batch_size = batch_size
        self.primary_metric = f"{name}_average_precision"

    def _sims(self, model: SiamText, pairs: tuple) -> np.ndarray:
        a = model.encode(check_texts(pairs[0], "sentences1"), batch_size=self.batch_size)
        b = model.encode(check_texts(pairs[1], "sentences2"), batch_size=self.batch_size)
        return paired_cosine(a, b)

    def __call__(self, model: SiamText) -> dict[str, float]:
        metrics = pair_classification(self._sims(model, self.fit_pairs), self.fit_pairs[2],
                                      self._sims(model, self.eval_pairs), self.eval_pairs[2])
        return {f"{self.name}_{k}": v for k, v in metrics.items()}


class IntentEvaluator:
    """Intent accuracy by nearest prototype and by k-NN over labelled reference texts.

    Args:
        train_texts: Labelled reference texts (prototypes and neighbours come from these).
        train_labels: Their intents.
        test_texts: Texts to classify.
        test_labels: Their gold intents.
        k: Neighbours for k-NN.
        name: Prefix of the metric names.
        batch_size: Encoding batch size.
    """

    def __init__(self, train_texts: Sequence[str], train_labels: Sequence[Hashable],
                 test_texts: Sequence[str], test_labels: Sequence[Hashable], k: int = 1,
                 name: str = "intent", batch_size: int = 64) -> None:
        self.train_texts = check_texts(train_texts, "train_texts")
        self.test_texts = check_texts(test_texts, "test_texts")
        if len(self.train_texts) != len(train_labels) or len(self.test_texts) != len(test_labels):
            raise ValueError("texts and labels must have the same length")
        if not self.train_texts or not self.test_texts:
            raise ValueError("train_texts and test_texts must not be empty")
        self.train_labels = list(train_labels)
        self.test_labels = list(test_labels)
        self.k = check_positive_int(k, "k")
        self.name = name
        self.batch_size = batch_size
        self.primary_metric = f"{name}_prototype_accuracy"

    def __call__(self, model: SiamText) -> dict[str, float]:
        train = model.encode(self.train_texts, batch_size=self.batch_size)
        test = model.encode(self.test_texts, batch_size=self.batch_size)
        args = (train, self.train_labels, test, self.test_labels)
        return {
            f"{self.name}_prototype_accuracy": intent_accuracy(*args, method="prototype"),
            f"{self.name}_knn_accuracy": intent_accuracy(*args, method="knn", k=self.k),
        }
