"""The logistic-regression head of :class:`IntentClassifier(mode="logistic")
<siamtext.classify.IntentClassifier>`.

A multinomial logistic regression (scikit-learn's ``LogisticRegression``, L2, lbfgs) on the
normalised embeddings of the stored examples. ``C`` is chosen by stratified k-fold
cross-validation over :data:`DEFAULT_CS` when not given; :func:`fit_head` then refits on every
example. The head is two tensors, ``coef`` ``(n_classes, dim)`` and ``intercept``
``(n_classes,)``, so it is stored in safetensors and scored with one matrix product, like the
prototypes: ``softmax(q @ coef.T + intercept)``.

``class_weight="balanced"`` (the default of :class:`~siamtext.classify.IntentClassifier`)
weighs each class's examples by ``n / (n_classes * n_class)``, so that a class added from 5
examples beside classes of 20 is not outvoted by its neighbours (Banking77, 10 classes added
from 5 examples to 67 of 20, zero-shot: 72.25% of the added classes' test rows against 52.75%
unweighted, at C=10; ``benchmarks/intent_heads.py``); on balanced data it is the same as no
weights.

A binary scikit-learn model has one row of weights ``w``; it is kept as the two rows
``[-w/2, w/2]`` (and the intercepts likewise), whose softmax is exactly its sigmoid. One class
gives a constant head.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

logger = logging.getLogger(__name__)

#: The grid cross-validation picks ``C`` from. The features are unit vectors, so useful values
#: are larger than for standardised features.
DEFAULT_CS: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0, 1000.0)
#: ``C`` for a head refitted before any cross-validation ran (``add_examples`` on an empty
#: classifier): the value cross-validation picks most often on sentence embeddings.
DEFAULT_C = 10.0
MAX_FOLDS = 5
_MAX_ITER = 1000
#: The accepted ``class_weight`` values.
CLASS_WEIGHTS: tuple[str | None, ...] = ("balanced", None)


@dataclass
class LogisticHead:
    """A fitted head: ``softmax(q @ coef.T + intercept)`` are the class probabilities.

    Attributes:
        coef: ``(n_classes, dim)`` float32 weights.
        intercept: ``(n_classes,)`` float32 biases.
        C: The inverse regularisation strength it was fitted with.
        info: How it was fitted: ``C``, ``cv_scores`` (mean fold accuracy per ``C``, when
            cross-validated), ``folds``, ``seconds``.
    """

    coef: torch.Tensor
    intercept: torch.Tensor
    C: float
    info: dict = field(default_factory=dict)

    def logits(self, q: torch.Tensor) -> torch.Tensor:
        """``(n, n_classes)`` logits of normalised queries ``q`` ``(n, dim)``."""
        return torch.addmm(self.intercept, q, self.coef.T)


def check_C(C: object, name: str = "C") -> None:
    """Refuse a ``C`` that is not ``None`` or a positive finite number."""
    if C is None:
        return
    if isinstance(C, bool) or not isinstance(C, (int, float)) or not 0 < C < float("inf"):
        raise ValueError(f"{name} must be a positive finite number (or None to choose it by "
                         f"cross-validation), got {C!r}")


def check_class_weight(class_weight: object) -> None:
    """Refuse a ``class_weight`` other than ``"balanced"`` or ``None``."""
    if class_weight not in CLASS_WEIGHTS:
        raise ValueError(f"class_weight must be 'balanced' or None, got {class_weight!r}")


def check_cv_classes(y: np.ndarray, classes: np.ndarray) -> int:
    """The number of folds for cross-validation on class indices ``y``.

    Raises:
        ValueError: If some class has fewer than 2 examples, naming them: cross-validation
            needs each class in at least two folds. Pass ``C`` to skip it.
    """
    counts = np.bincount(y, minlength=len(classes))
    small = np.flatnonzero(counts < 2)
    if len(small):
        names = [classes[i].item() if hasattr(classes[i], "item") else classes[i]
                 for i in small[:5]]
        raise ValueError(f"choosing C by cross-validation needs at least 2 examples per class; "
                         f"{len(small)} class(es) have 1, e.g. {names}. Add examples, or pass "
                         f"C=... (e.g. C={DEFAULT_C}) to fit without cross-validation")
    return int(min(MAX_FOLDS, counts.min()))


def fit_head(X: torch.Tensor, y: torch.Tensor, classes: np.ndarray, C: float | None = None,
             Cs: tuple[float, ...] = DEFAULT_CS, seed: int = 0,
             class_weight: str | None = "balanced") -> LogisticHead:
    """Fit a head on normalised embeddings ``X`` ``(n, dim)`` and class indices ``y`` ``(n,)``.

    Args:
        X: The stored examples' embeddings.
        y: Index into ``classes`` of each row; every class has a row.
        classes: The labels (only their number and, in errors, their names are used).
        C: Inverse L2 strength; ``None`` chooses it from ``Cs`` by stratified
            cross-validation (accuracy), which needs 2 examples per class.
        Cs: The grid for cross-validation.
        seed: Seed of the fold split.
        class_weight: ``"balanced"`` weighs each class's rows inversely to its size;
            ``None`` weighs every row alike.

    Returns:
        The head, refitted on all rows with the chosen ``C``.
    """
    start = time.perf_counter()
    n_classes = len(classes)
    dim = X.shape[1]
    device = X.device
    if n_classes == 1:
        head = LogisticHead(torch.zeros((1, dim), device=device), torch.zeros(1, device=device),
                            float(C if C is not None else DEFAULT_C))
        head.info = {"C": head.C, "seconds": 0.0, "constant": True}
        return head
    x = X.detach().cpu().numpy().astype(np.float32)  # lbfgs keeps float32: 1.5x faster
    t = y.detach().cpu().numpy()
    info: dict = {}
    if C is None:
        folds = check_cv_classes(t, classes)
        C, info["cv_scores"] = _cross_validate(x, t, Cs, folds, seed, class_weight)
        info["folds"] = folds
    model = _fit(x, t, float(C), class_weight)
    coef, intercept = model.coef_, model.intercept_
    if coef.shape[0] == 1:  # binary: one row w -> [-w/2, w/2], softmax == sigmoid
        coef = np.concatenate([-coef / 2, coef / 2])
        intercept = np.concatenate([-intercept / 2, intercept / 2])
    # contiguous, as a loaded head is: the same memory layout gives bit-identical scores
    head = LogisticHead(
        torch.as_tensor(np.ascontiguousarray(coef), dtype=torch.float32, device=device),
        torch.as_tensor(np.ascontiguousarray(intercept), dtype=torch.float32, device=device),
        float(C))
    info.update(C=float(C), class_weight=class_weight,
                seconds=round(time.perf_counter() - start, 3))
    head.info = info
    logger.info("logistic head: %d examples, %d classes, C=%g, fitted in %.2f s", len(t),
                n_classes, C, info["seconds"])
    return head


def _fit(x: np.ndarray, y: np.ndarray, C: float, class_weight: str | None) -> object:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=C, max_iter=_MAX_ITER, class_weight=class_weight)
    with warnings.catch_warnings():
        # at large C on separable few-shot data lbfgs stops at max_iter with a model that
        # already predicts every training row; the warning says nothing actionable
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(x, y)


def _cross_validate(x: np.ndarray, y: np.ndarray, Cs: tuple[float, ...], folds: int,
                    seed: int, class_weight: str | None) -> tuple[float, dict[str, float]]:
    """The ``C`` of best mean fold accuracy (of least log-loss on ties), and the accuracies."""
    from sklearn.model_selection import StratifiedKFold

    split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    accuracy: dict[float, list[float]] = {float(c): [] for c in Cs}
    log_loss: dict[float, list[float]] = {float(c): [] for c in Cs}
    for train, test in split.split(x, y):
        for c in Cs:
            proba = _fit(x[train], y[train], c, class_weight).predict_proba(x[test])
            accuracy[float(c)].append(float((proba.argmax(axis=1) == y[test]).mean()))
            log_loss[float(c)].append(float(-np.log(np.clip(
                proba[np.arange(len(test)), y[test]], 1e-15, None)).mean()))
    # few-shot folds tie on accuracy often; the log-loss breaks ties (a C that is too
    # small ties on accuracy but is unsure of everything, and of a new class's one example)
    chosen = max(accuracy, key=lambda c: (np.mean(accuracy[c]), -np.mean(log_loss[c])))
    return chosen, {f"{c:g}": round(float(np.mean(v)), 4) for c, v in accuracy.items()}


def tensors(head: LogisticHead) -> dict[str, torch.Tensor]:
    """The head's tensors for safetensors."""
    return {"head_coef": head.coef.detach().cpu().contiguous(),
            "head_intercept": head.intercept.detach().cpu().contiguous()}


def from_tensors(path: object, tensors: dict[str, torch.Tensor], n_classes: int, dim: int,
                 C: float, info: dict | None, device: torch.device) -> LogisticHead:
    """A head from stored tensors, checked against the stored classes (the file named)."""
    coef, intercept = tensors.get("head_coef"), tensors.get("head_intercept")
    if coef is None or intercept is None:
        raise ValueError(f"{path} is a logistic classifier but lacks the 'head_coef' or "
                         "'head_intercept' tensor")
    if tuple(coef.shape) != (n_classes, dim) or tuple(intercept.shape) != (n_classes,):
        raise ValueError(f"{path}: the logistic head has shapes {tuple(coef.shape)} and "
                         f"{tuple(intercept.shape)}, expected ({n_classes}, {dim}) and "
                         f"({n_classes},) for the stored classes and examples")
    if not (bool(torch.isfinite(coef).all()) and bool(torch.isfinite(intercept).all())):
        raise ValueError(f"{path}: the logistic head holds NaN or infinite values")
    return LogisticHead(coef.float().to(device), intercept.float().to(device), float(C),
                        dict(info or {}))
