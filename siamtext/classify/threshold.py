"""Decide "same or different" by a threshold on similarity, fitted on held-out pairs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import NotFittedError

from siamtext.validation import check_choice, check_positive_int

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from siamtext.model import SiamText

Objective = Literal["f1", "accuracy", "precision_at_recall", "recall_at_precision"]
Calibration = Literal["platt", "isotonic"]
OBJECTIVES = ("f1", "accuracy", "precision_at_recall", "recall_at_precision")
CALIBRATIONS = ("platt", "isotonic")


def check_similarity_threshold(value: object, name: str = "threshold") -> float:
    """A cosine-similarity threshold: a number in [-1, 1].

    Raises:
        TypeError: If ``value`` is not a number.
        ValueError: If it lies outside [-1, 1], where no cosine similarity can reach it.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
        raise TypeError(f"{name} must be a number in [-1, 1], got {type(value).__name__}")
    value = float(value)
    if not -1.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in the cosine-similarity range [-1, 1], got {value}")
    return value


def check_binary_labels(y: object, name: str = "y") -> tuple[np.ndarray, np.ndarray]:
    """Return ``(classes, y01)``: the two sorted classes and ``y`` as 0/1 (1 = ``classes[1]``).

    Raises:
        ValueError: If ``y`` is not 1-D, or has one class or more than two.
    """
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D list of binary labels, got shape {arr.shape}")
    try:
        classes = np.unique(arr)
    except TypeError:  # mixed types such as None and 1 do not sort
        raise TypeError(f"{name} must hold binary labels of one type (1 = same/duplicate), "
                        f"got {sorted({type(v).__name__ for v in arr.tolist()})}") from None
    if len(classes) != 2:
        hint = " (a single class cannot set a threshold)" if len(classes) == 1 else ""
        raise ValueError(f"{name} must hold exactly two classes (binary labels, 1 = same/"
                         f"duplicate), got {len(classes)}: {classes[:10].tolist()}{hint}")
    return classes, (arr == classes[1]).astype(np.int64)


def sweep_thresholds(scores: np.ndarray, y01: np.ndarray) -> dict[str, np.ndarray]:
    """Confusion counts for every distinct decision ``score >= t``.

    The candidates are the lowest score (everything positive), the midpoints between
    consecutive distinct scores, and just above the highest (nothing positive). Tied scores
    share one decision, so ties cannot inflate a metric.

    Returns:
        ``threshold``, ``tp``, ``fp``, ``fn``, ``tn`` arrays of length ``unique + 1``.
    """
    uniq, inverse = np.unique(scores, return_inverse=True)
    pos = np.bincount(inverse, weights=y01, minlength=len(uniq))
    tot = np.bincount(inverse, minlength=len(uniq)).astype(np.float64)
    # positives predicted when threshold sits at candidate m: scores >= uniq[m]
    tp = np.concatenate([np.cumsum(pos[::-1])[::-1], [0.0]])
    pp = np.concatenate([np.cumsum(tot[::-1])[::-1], [0.0]])
    fp = pp - tp
    n_pos = float(y01.sum())
    fn = n_pos - tp
    tn = len(scores) - n_pos - fp
    mids = (uniq[:-1] + uniq[1:]) / 2.0
    above = np.nextafter(uniq[-1], np.inf)
    threshold = np.concatenate([[uniq[0]], mids, [above]])
    return {"threshold": threshold, "tp": tp, "fp": fp, "fn": fn, "tn": tn}


def best_threshold(
    scores: np.ndarray, y01: np.ndarray, objective: Objective = "f1", target: float | None = None
) -> tuple[float, float]:
    """The threshold that maximises ``objective`` on ``scores``/``y01``, and its value.

    ``precision_at_recall`` maximises precision among thresholds with recall >= ``target``;
    ``recall_at_precision`` maximises recall among those with precision >= ``target``. Among
    equal values the lowest threshold wins.

    Raises:
        ValueError: If no threshold reaches a ``recall_at_precision`` target.
    """
    c = sweep_thresholds(scores, y01)
    tp, fp, fn, tn = c["tp"], c["fp"], c["fn"], c["tn"]
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 1.0)
        recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
    if objective == "f1":
        value = 2 * tp / np.maximum(2 * tp + fp + fn, 1e-12)
    elif objective == "accuracy":
        value = (tp + tn) / len(scores)
    elif objective == "precision_at_recall":
        value = np.where(recall >= target, precision, -np.inf)
    else:
        value = np.where((precision >= target) & (tp > 0), recall, -np.inf)
        if not np.isfinite(value).any():
            raise ValueError(f"target={target} precision is not reached at any threshold "
                             f"(best precision on these pairs: {precision[tp > 0].max():.4f})")
    m = int(np.argmax(value))
    return float(c["threshold"][m]), float(value[m])


class ThresholdClassifier(ClassifierMixin, BaseEstimator):
    """Binary pair classifier: similarity at or above ``threshold_`` means "same".

    A scikit-learn estimator. ``fit`` learns the threshold from labelled held-out pairs by
    sweeping the midpoints between sorted distinct scores, and fits a calibration map (Platt
    sigmoid or isotonic) from score to probability on the same split. Fit it on a validation
    split, never on the pairs you report on. It works with ``cross_val_score``.

    ``X`` is either precomputed scores (``(n,)`` or ``(n, 1)``, larger = more similar) or,
    with an ``encoder``, a list of ``(text_a, text_b)`` pairs scored by cosine similarity.

    Args:
        encoder: A :class:`~siamtext.SiamText` to score text pairs; ``None`` for scores.
        objective: ``"f1"``, ``"accuracy"``, ``"precision_at_recall"`` or
            ``"recall_at_precision"``.
        target: The recall (or precision) the last two objectives must reach, in (0, 1].
        calibration: ``"platt"`` or ``"isotonic"`` for :meth:`predict_proba`.
        batch_size: Encoding batch size for text pairs.

    Attributes:
        threshold_: The fitted threshold on the score.
        best_score_: The objective's value at ``threshold_`` on the fitting data.
        classes_: The two labels; ``classes_[1]`` is the positive ("same") class.

    Examples:
        >>> clf = ThresholdClassifier().fit([0.1, 0.4, 0.8, 0.9], [0, 0, 1, 1])
        >>> round(clf.threshold_, 3), clf.predict([0.2, 0.85]).tolist()
        (0.6, [0, 1])
    """

    def __init__(
        self,
        encoder: SiamText | None = None,
        objective: Objective = "f1",
        target: float | None = None,
        calibration: Calibration = "platt",
        batch_size: int = 32,
    ) -> None:
        self.encoder = encoder
        self.objective = objective
        self.target = target
        self.calibration = calibration
        self.batch_size = batch_size

    # ------------------------------------------------------------------ scoring
    def similarity(self, X: object) -> np.ndarray:
        """Scores of ``X``: the scores themselves, or cosine similarities of text pairs."""
        return pair_scores(X, self.encoder, self.batch_size)

    # ------------------------------------------------------------------ fit
    def fit(self, X: object, y: object) -> ThresholdClassifier:
        """Learn ``threshold_`` and the calibration from held-out pairs.

        Args:
            X: Scores or text pairs (see the class docstring).
            y: Binary labels, one per pair (1 = same/duplicate).

        Returns:
            self.

        Raises:
            ValueError: For labels that are not binary, lengths that differ, a bad
                ``objective``/``target``/``calibration``, or an unreachable precision target.
        """
        check_choice(self.objective, OBJECTIVES, "objective")
        check_choice(self.calibration, CALIBRATIONS, "calibration")
        check_positive_int(self.batch_size, "batch_size")
        if self.objective in ("precision_at_recall", "recall_at_precision"):
            t = self.target
            if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 < t <= 1.0:
                raise ValueError(f"target must be a number in (0, 1] for objective="
                                 f"{self.objective!r}, got {t!r}")
        classes, y01 = check_binary_labels(y)
        scores = self.similarity(X)
        if len(scores) != len(y01):
            raise ValueError(f"X and y must have the same length, got {len(scores)} and {len(y01)}")
        threshold, value = best_threshold(scores, y01, self.objective, self.target)
        calib = fit_calibration(scores, y01, self.calibration)
        self.classes_ = classes
        self.threshold_ = threshold
        self.best_score_ = value
        self.calibration_ = calib
        return self

    # ------------------------------------------------------------------ predict
    def _check_fitted(self) -> None:
        if not hasattr(self, "threshold_"):
            raise NotFittedError("This ThresholdClassifier is not fitted yet; call fit(X, y) "
                                 "on held-out labelled pairs first.")

    def decision_function(self, X: object) -> np.ndarray:
        """``score - threshold_``: positive means "same". Shape ``(n,)``."""
        self._check_fitted()
        return self.similarity(X) - self.threshold_

    def predict(self, X: object) -> np.ndarray:
        """Labels: ``classes_[1]`` where the score is at least ``threshold_``."""
        self._check_fitted()
        return self.classes_[(self.similarity(X) >= self.threshold_).astype(np.int64)]

    def predict_proba(self, X: object) -> np.ndarray:
        """Calibrated probabilities ``(n, 2)``: columns follow ``classes_``."""
        self._check_fitted()
        p = apply_calibration(self.similarity(X), self.calibration_)
        return np.stack([1.0 - p, p], axis=1)

    # ------------------------------------------------------------------ plot
    def plot(self, X: object, y: object, **kwargs: object) -> Figure:
        """Similarity histograms by label with ``threshold_``, and the precision-recall curve
        with the threshold's operating point, on labelled pairs (held-out ones: ``fit`` keeps
        no scores). Needs ``pip install 'siamtext[plot]'``.

        Args:
            X: Scores or text pairs, as for :meth:`fit`.
            y: Their labels, both of ``classes_`` present.
            **kwargs: Passed to :func:`siamtext.plot.threshold_figure` (``bins``, ``title``,
                ``figsize``, ``dpi``).

        Returns:
            A matplotlib ``Figure``.
        """
        from siamtext.plot import binary_labels, require_matplotlib, threshold_figure

        self._check_fitted()
        require_matplotlib("ThresholdClassifier.plot()")
        binary_labels(y, self.classes_, "y")  # before any encoding
        return threshold_figure(self.similarity(X), y, self.threshold_, classes=self.classes_,
                                **kwargs)


# ---------------------------------------------------------------------- helpers
def pair_scores(X: object, encoder: SiamText | None, batch_size: int = 32) -> np.ndarray:
    """Scores from precomputed numbers, or cosine similarities of ``(a, b)`` text pairs."""
    if encoder is None:
        try:
            arr = np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise TypeError("X must be numeric scores of shape (n,) or (n, 1) when no encoder "
                            f"is attached; got {type(X).__name__}. Pass encoder=SiamText(...) "
                            "to score (text, text) pairs.") from err
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 1:
            raise ValueError(f"X must be scores of shape (n,) or (n, 1), got shape {arr.shape}")
        if not np.isfinite(arr).all():
            raise ValueError("X contains NaN or infinite scores")
        return arr
    a, b = split_pairs(X)
    return encode_pair_scores(encoder, a, b, batch_size)


def split_pairs(X: object, name: str = "X") -> tuple[list[str], list[str]]:
    """``[(a, b), ...]`` -> ``([a...], [b...])`` with type checks."""
    if isinstance(X, (str, bytes)) or not isinstance(X, (Sequence, np.ndarray)):
        raise TypeError(f"{name} must be a list of (text, text) pairs, got {type(X).__name__}")
    a, b = [], []
    for i, pair in enumerate(X):
        if (not isinstance(pair, (tuple, list, np.ndarray)) or len(pair) != 2
                or not all(isinstance(t, str) for t in pair)):
            raise TypeError(f"{name}[{i}] must be a (text, text) pair, got {pair!r:.80}")
        a.append(pair[0])
        b.append(pair[1])
    return a, b


def encode_pair_scores(
    encoder: SiamText, a: list[str], b: list[str], batch_size: int = 32
) -> np.ndarray:
    """Cosine similarity of ``a[i]`` and ``b[i]``; each distinct text is encoded once."""
    if len(a) != len(b):
        raise ValueError(f"the two sides must have the same length, got {len(a)} and {len(b)}")
    if not a:
        return np.zeros((0,), dtype=np.float64)
    unique = list(dict.fromkeys(a + b))
    where = {t: i for i, t in enumerate(unique)}
    emb = np.asarray(encoder.encode(unique, batch_size=batch_size, normalize=True))
    ia = np.fromiter((where[t] for t in a), dtype=np.int64, count=len(a))
    ib = np.fromiter((where[t] for t in b), dtype=np.int64, count=len(b))
    return np.einsum("ij,ij->i", emb[ia], emb[ib]).astype(np.float64)


def fit_calibration(scores: np.ndarray, y01: np.ndarray, method: Calibration) -> dict:
    """A JSON-serialisable, non-decreasing map from score to P(same).

    ``"platt"``: ``1 / (1 + exp(-(a * s + b)))`` fitted on Platt's (1999) smoothed targets.
    ``"isotonic"``: a piecewise-linear non-decreasing fit (``IsotonicRegression``).
    """
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
        iso.fit(scores, y01)
        return {"method": "isotonic", "x": iso.X_thresholds_.tolist(),
                "y": iso.y_thresholds_.tolist()}
    from scipy.optimize import minimize

    n_pos = float(y01.sum())
    n_neg = len(y01) - n_pos
    t = np.where(y01 == 1, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = w[0] * scores + w[1]
        log_p = -np.logaddexp(0.0, -z)
        log_q = -np.logaddexp(0.0, z)
        p = np.exp(log_p)
        grad_z = p - t
        return float(-(t * log_p + (1 - t) * log_q).sum()), np.array(
            [(grad_z * scores).sum(), grad_z.sum()])

    res = minimize(loss, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
    a = max(float(res.x[0]), 0.0)  # similarity never lowers P(same)
    return {"method": "platt", "a": a, "b": float(res.x[1])}


def apply_calibration(scores: np.ndarray, calib: dict) -> np.ndarray:
    """P(same) for each score under a map from :func:`fit_calibration`."""
    if calib["method"] == "isotonic":
        return np.interp(scores, calib["x"], calib["y"])
    return 1.0 / (1.0 + np.exp(-(calib["a"] * scores + calib["b"])))
