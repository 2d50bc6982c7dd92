"""Figures of results: each function takes arrays or results and returns a matplotlib ``Figure``.

The functions use matplotlib's object-oriented API (``Figure`` and ``fig.subplots``, never
pyplot's global state or ``plt.show()``), so they work with the Agg backend, off the main
thread and in notebooks alike; save one with ``fig.savefig("out.png")``. matplotlib is
imported inside them: ``pip install 'siamtext[plot]'`` installs it, and ``import siamtext``
never imports this module. The estimators' ``plot()`` methods are thin calls into it.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from siamtext.extras import require

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_NOT_METRICS = ("_runtime", "_samples_per_second", "_steps_per_second")


def require_matplotlib(feature: str) -> None:
    """Raise ``ImportError`` naming ``pip install 'siamtext[plot]'`` if matplotlib is missing."""
    require("matplotlib.figure", "plot", feature)


def _figure(feature: str, figsize: tuple[float, float], dpi: float,
            ncols: int = 1) -> tuple[Figure, list[Axes]]:
    figure_cls = require("matplotlib.figure", "plot", feature).Figure
    fig = figure_cls(figsize=figsize, dpi=dpi, layout="constrained")
    return fig, list(fig.subplots(1, ncols, squeeze=False)[0])


def _scores(values: object, name: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be numbers, got {type(values).__name__}") from err
    if arr.ndim != 1 or len(arr) == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def binary_labels(labels: object, classes: Sequence | None = None,
                  name: str = "labels") -> np.ndarray:
    """``labels`` as 0/1, 1 for ``classes[1]`` (default: the larger of the two values present).

    Raises:
        ValueError: If ``labels`` is not 1-D, holds a value outside ``classes``, or lacks one
            of the two classes (a plot by label needs both).
    """
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D list of binary labels, got shape {arr.shape}")
    present = np.unique(arr)
    if classes is None:
        classes = present.tolist()
    classes = list(classes)
    extra = [v for v in present.tolist() if v not in classes]
    if len(classes) != 2 or extra or len(present) != 2:
        raise ValueError(f"{name} must hold both classes {classes} (1 = same/duplicate), got "
                         f"values {present[:10].tolist()}")
    return (arr == classes[1]).astype(np.int64)


def operating_point(scores: np.ndarray, y01: np.ndarray, threshold: float) -> tuple[float, float]:
    """Precision and recall of ``score >= threshold`` (precision 1 when nothing is positive)."""
    pred = scores >= threshold
    tp = int(np.sum(pred & (y01 == 1)))
    fp = int(np.sum(pred & (y01 == 0)))
    return (tp / (tp + fp) if tp + fp else 1.0), tp / max(int(y01.sum()), 1)


# ---------------------------------------------------------------------- pair decisions
def threshold_figure(scores: object, labels: object, threshold: float, *,
                     classes: Sequence | None = None, bins: int = 30, title: str | None = None,
                     figsize: tuple[float, float] = (10.0, 4.0), dpi: float = 100) -> Figure:
    """Similarity histograms of positive and negative pairs with the threshold, and the
    precision-recall curve with the threshold's operating point.

    Args:
        scores: ``(n,)`` similarities (larger = more similar).
        labels: ``(n,)`` binary labels; both classes must be present.
        threshold: The decision threshold (``score >= threshold`` is positive).
        classes: The two labels, negative then positive (default: the sorted values found).
        bins: Histogram bins, shared by both classes.
        title: A title over both panels.
        figsize, dpi: Size in inches and pixels per inch.

    Returns:
        A figure with two axes: histograms (the threshold line has ``gid="threshold"``) and
        the precision-recall curve (the operating point has ``gid="operating_point"``).
    """
    from sklearn.metrics import average_precision_score, precision_recall_curve

    s = _scores(scores, "scores")
    y01 = binary_labels(labels, classes)
    if len(y01) != len(s):
        raise ValueError(f"scores and labels must have the same length, got {len(s)} and "
                         f"{len(y01)}")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating)) \
            or not math.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    fig, (hist, pr) = _figure("threshold_figure", figsize, dpi, ncols=2)
    edges = np.histogram_bin_edges(np.append(s, threshold), bins=bins)
    for value, name, color in ((0, "different", "tab:blue"), (1, "same", "tab:orange")):
        part = s[y01 == value]
        hist.hist(part, bins=edges, alpha=0.55, color=color, label=f"{name} (n={len(part)})")
    hist.axvline(threshold, color="black", linestyle="--", gid="threshold",
                 label=f"threshold {threshold:.3f}")
    hist.set(xlabel="similarity", ylabel="pairs", title="Similarity by label")
    hist.legend()
    precision, recall, _ = precision_recall_curve(y01, s)
    ap = average_precision_score(y01, s)
    pr.plot(recall, precision, drawstyle="steps-post", color="tab:green",
            label=f"AP = {100 * ap:.1f}")
    p, r = operating_point(s, y01, threshold)
    pr.plot([r], [p], "o", color="black", markersize=8, gid="operating_point",
            label=f"threshold: precision {p:.3f}, recall {r:.3f}")
    pr.set(xlabel="recall", ylabel="precision", title="Precision-recall",
           xlim=(0.0, 1.02), ylim=(0.0, 1.02))
    pr.legend(loc="lower left")
    if title:
        fig.suptitle(title)
    return fig


def sts_figure(similarities: object, gold: object, *, title: str | None = None,
               figsize: tuple[float, float] = (5.0, 5.0), dpi: float = 100) -> Figure:
    """Predicted similarity against the gold score, one point per pair, with Spearman's rho.

    Args:
        similarities: ``(n,)`` predicted (cosine) similarities.
        gold: ``(n,)`` gold scores (any scale).
        title, figsize, dpi: Title, size in inches and pixels per inch.
    """
    from scipy.stats import spearmanr

    s, g = _scores(similarities, "similarities"), _scores(gold, "gold")
    if len(s) != len(g):
        raise ValueError(f"similarities and gold must have the same length, got {len(s)} and "
                         f"{len(g)}")
    fig, (ax,) = _figure("sts_figure", figsize, dpi)
    ax.scatter(g, s, s=12, alpha=0.6)
    rho = 100.0 * float(spearmanr(s, g)[0]) if len(s) > 1 else float("nan")
    ax.set(xlabel="gold score", ylabel="predicted similarity",
           title=title or f"STS: Spearman {rho:.1f} (n={len(s)})")
    return fig


# ---------------------------------------------------------------------- intents
def confusion_pairs(gold: Sequence[Hashable], predicted: Sequence[Hashable]
                    ) -> tuple[list[tuple[Hashable, Hashable]], np.ndarray]:
    """Off-diagonal ``(true, predicted)`` pairs and their counts, most frequent first.

    Directions are counted apart: ``("a", "b")`` (an ``a`` taken for ``b``) and ``("b", "a")``
    are two pairs. Ties are ordered by the labels' text. A rejected input counts under the
    classifier's ``unknown_label``.

    Returns:
        ``pairs`` and ``counts`` ``(m,)`` int64, for every pair that occurs.
    """
    gold, predicted = list(gold), np.asarray(predicted, dtype=object).tolist()
    if len(gold) != len(predicted):
        raise ValueError(f"gold and predicted must have the same length, got {len(gold)} and "
                         f"{len(predicted)}")
    counts = Counter((g, p) for g, p in zip(gold, predicted) if g != p)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0][0]), str(kv[0][1])))
    return [k for k, _ in ranked], np.array([v for _, v in ranked], dtype=np.int64)


def confusion_pairs_figure(pairs: Sequence[tuple[Hashable, Hashable]], counts: object, *,
                           top: int = 20, title: str | None = None,
                           figsize: tuple[float, float] | None = None,
                           dpi: float = 100) -> Figure:
    """The ``top`` most confused ``true -> predicted`` pairs as horizontal bars, largest on top.

    Args:
        pairs: ``(true, predicted)`` label pairs, most frequent first (:func:`confusion_pairs`).
        counts: Their counts.
        top: How many pairs to show.
        title: Title (default says how many of how many pairs are shown).
        figsize: Size in inches (default: 7 wide, 0.3 inch per bar).
        dpi: Pixels per inch.
    """
    from siamtext.validation import check_positive_int

    check_positive_int(top, "top")
    counts = np.asarray(counts, dtype=np.int64).reshape(-1)
    if len(counts) != len(pairs):
        raise ValueError(f"pairs and counts must have the same length, got {len(pairs)} and "
                         f"{len(counts)}")
    shown, values = list(pairs)[:top], counts[:top]
    fig, (ax,) = _figure("confusion_pairs_figure",
                         figsize or (7.0, max(2.5, 1.0 + 0.3 * len(shown))), dpi)
    if shown:
        ax.barh(np.arange(len(shown)), values, color="tab:red", gid="confusions")
        ax.set_yticks(np.arange(len(shown)), [f"{t} \u2192 {p}" for t, p in shown])
        ax.invert_yaxis()
    else:
        ax.text(0.5, 0.5, "no confusions", ha="center", va="center", transform=ax.transAxes)
        ax.set_yticks([])
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="inputs (true \u2192 predicted)", title=title or (
        f"Most confused intents: {len(shown)} of {len(pairs)} pairs, "
        f"{int(values.sum())} of {int(counts.sum())} errors"))
    return fig


# ---------------------------------------------------------------------- benchmarks
def accuracy_by_shots_figure(results: Mapping[str, Mapping[int | str, float | Sequence[float]]],
                             *, title: str = "Accuracy by examples per class",
                             ylabel: str = "accuracy (%)",
                             figsize: tuple[float, float] = (6.0, 4.0),
                             dpi: float = 100) -> Figure:
    """Accuracy against shots (examples per class), one line per method.

    Args:
        results: ``{method: {shots: accuracy}}``; an accuracy may be a list (one per seed):
            the line goes through the mean and a band spans min to max. Shots may be
            strings (JSON keys).
        title, ylabel, figsize, dpi: Title, y label, size in inches and pixels per inch.
    """
    if not isinstance(results, Mapping) or not results:
        raise ValueError(f"results must be a non-empty {{method: {{shots: accuracy}}}} mapping, "
                         f"got {type(results).__name__}")
    fig, (ax,) = _figure("accuracy_by_shots_figure", figsize, dpi)
    all_shots: set[int] = set()
    for method, by_shots in results.items():
        if not isinstance(by_shots, Mapping) or not by_shots:
            raise ValueError(f"results[{method!r}] must be a non-empty {{shots: accuracy}} "
                             f"mapping, got {by_shots!r:.80}")
        shots = sorted(int(k) for k in by_shots)
        values = [np.atleast_1d(np.asarray(by_shots[k if k in by_shots else str(k)], float))
                  for k in shots]
        mean = [float(v.mean()) for v in values]
        (line,) = ax.plot(shots, mean, marker="o", label=str(method))
        if any(len(v) > 1 for v in values):
            ax.fill_between(shots, [v.min() for v in values], [v.max() for v in values],
                            color=line.get_color(), alpha=0.15)
        all_shots.update(shots)
    if min(all_shots) > 0 and max(all_shots) >= 4 * min(all_shots):
        ax.set_xscale("log", base=2)
    ticks = sorted(all_shots)
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.set(xlabel="examples per class (shots)", ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


# ---------------------------------------------------------------------- training
def find_trainer_state(output_dir: str | Path) -> Path:
    """The most advanced ``trainer_state.json`` of a training output folder: its own or that
    of a ``checkpoint-N`` inside it (a checkpoint folder itself works too).

    Raises:
        FileNotFoundError: If there is none.
    """
    folder = Path(output_dir)
    found = [folder / "trainer_state.json"] if (folder / "trainer_state.json").is_file() else []
    if folder.is_dir():
        found += [p / "trainer_state.json" for p in folder.iterdir()
                  if _CHECKPOINT.match(p.name) and (p / "trainer_state.json").is_file()]
    if not found:
        raise FileNotFoundError(f"no trainer_state.json in {folder} or in a checkpoint-N "
                                "folder inside it; train with output_dir=... (checkpoints "
                                "are saved there every epoch)")

    def step(path: Path) -> int:
        return int(json.loads(path.read_text(encoding="utf-8")).get("global_step", 0))

    return max(found, key=step)


def training_curves(output_dir: str | Path, *, figsize: tuple[float, float] = (10.0, 4.0),
                    dpi: float = 100) -> Figure:
    """Training loss (and eval loss) and every evaluation metric against the step, from
    ``log_history`` in the trainer's ``trainer_state.json`` (:func:`find_trainer_state`).

    Log the loss often enough to see a curve: ``fit(..., logging_steps=10)``.

    Raises:
        FileNotFoundError: If no ``trainer_state.json`` is found.
        ValueError: If its log holds no loss and no evaluation metric.
    """
    require_matplotlib("training_curves")
    path = find_trainer_state(output_dir)
    history = json.loads(path.read_text(encoding="utf-8")).get("log_history", [])
    series: dict[str, list[tuple[int, float]]] = {}
    for row in history:
        if "step" not in row:
            continue
        for key, value in row.items():
            wanted = key == "loss" or (key.startswith("eval_") and not key.endswith(_NOT_METRICS))
            if wanted and isinstance(value, (int, float)) and math.isfinite(value):
                series.setdefault(key, []).append((int(row["step"]), float(value)))
    if not series:
        raise ValueError(f"{path} logs no loss and no evaluation metric; train with a smaller "
                         "logging_steps or with an eval_dataset / evaluator")
    losses = [k for k in ("loss", "eval_loss") if k in series]
    metrics = sorted(k for k in series if k not in losses)
    panels = [p for p in ((losses, "Loss", "loss"), (metrics, "Evaluation", "metric")) if p[0]]
    fig, axes = _figure("training_curves", figsize, dpi, ncols=len(panels))
    for ax, (keys, title, ylabel) in zip(axes, panels):
        for key in keys:
            steps, values = zip(*series[key])
            ax.plot(steps, values, marker="o" if len(steps) < 20 else None, markersize=3,
                    label="train loss" if key == "loss" else key)
        ax.set(xlabel="step", ylabel=ylabel, title=title)
        ax.legend()
    fig.suptitle(f"Training log: {path.parent.name}/{path.name}")
    return fig
