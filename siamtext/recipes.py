"""Few-shot recipes: how to fine-tune the tower on a handful of examples per intent.

A :class:`Recipe` is a loss, its settings and a training budget. :func:`select_recipe` picks
one for *your* data the way it should be picked: it carves a validation split out of the
training shots (stratified, a quarter of each class by default), trains every candidate on
the rest, scores each with every :class:`~siamtext.classify.IntentClassifier` mode on the
validation split, and keeps the best (recipe, mode). It is never shown any other data, so a
test set cannot leak into the choice. :func:`fit_fewshot` then trains the chosen recipe on
all the shots and returns the model and a fitted classifier.

:data:`FEWSHOT_RECIPES` are the candidates ``benchmarks/intent_quality.py`` measured on
Banking77 8-shot; see README ("Few-shot intent recipes") for the figures behind them.

Examples:
    >>> model, clf, choice = fit_fewshot(SiamText(), texts, labels)
    >>> choice.recipe.name, choice.mode
    ('supcon', 'logistic')
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from siamtext.validation import check_texts

if TYPE_CHECKING:
    from siamtext.classify.intent import IntentClassifier
    from siamtext.model import SiamText

logger = logging.getLogger(__name__)

MODES: tuple[str, ...] = ("prototype", "knn", "logistic")


@dataclass(frozen=True)
class Recipe:
    """A fine-tuning recipe for labelled ``(text, label)`` rows.

    Args:
        name: A short name for tables and model cards.
        loss: A loss name for :func:`siamtext.training.fit` (a ``"labelled"`` loss such as
            ``"SupervisedContrastiveLoss"``, or ``"MultipleNegativesRankingLoss"``, trained
            on (anchor, positive) pairs of the same class, made fresh each epoch, with
            same-class rows masked out of the negatives); ``None`` means no fine-tuning.
        loss_params: Keyword arguments of the loss.
        epochs: Passes over the shots.
        learning_rate: Peak AdamW learning rate.
        batch_size: Rows per batch.
        samples_per_class: K of the P x K batches of a ``"labelled"`` loss; ``None`` takes
            the loss's own (2 for supervised contrastive, 4 for the others).
        hard_negatives: ``MultipleNegativesRankingLoss`` only: give each (anchor, positive)
            pair a third text, the text of another class that the model, before this
            training, embeds nearest the anchor (its own nearest confusable neighbour).
    """

    name: str
    loss: str | None
    loss_params: dict[str, Any] = field(default_factory=dict)
    epochs: int = 8
    learning_rate: float = 5e-5
    batch_size: int = 32
    samples_per_class: int | None = None
    hard_negatives: bool = False

    def __post_init__(self) -> None:
        if self.hard_negatives and self.loss != "MultipleNegativesRankingLoss":
            raise ValueError(f"hard_negatives needs loss='MultipleNegativesRankingLoss', got "
                             f"{self.loss!r}")

    def train(self, model: SiamText, texts: Sequence[str], labels: Sequence[object], *,
              seed: int = 0, show_progress: bool | None = False) -> SiamText:
        """Fine-tune ``model`` in place on ``(texts, labels)`` and return it."""
        if self.loss is None:
            return model
        from siamtext.training import fit
        from siamtext.training.fitting import loss_class

        batch_size, extra = self.batch_size, {}
        if self.loss == "MultipleNegativesRankingLoss":
            rows = _anchor_positive_rows(texts, labels, self.epochs, seed)
            if self.hard_negatives:
                rows["negative"] = _hardest_other_class(model, texts, labels, rows)
            epochs = 1  # each epoch's pairs are already in the rows, drawn afresh
        else:
            rows, epochs = {"text": list(texts), "label": list(labels)}, self.epochs
            # P x K batches hold P distinct classes: with fewer classes, a smaller batch
            k = self.samples_per_class or getattr(loss_class(self.loss), "samples_per_class", 1)
            batch_size = min(batch_size, k * len(set(labels)))
            if self.samples_per_class is not None:
                extra["samples_per_class"] = self.samples_per_class
        return fit(model, rows, self.loss, loss_params=self.loss_params, epochs=epochs,
                   batch_size=batch_size, learning_rate=self.learning_rate,
                   warmup_ratio=0.1, seed=seed, show_progress=show_progress,
                   logging_steps=10_000, **extra)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: The candidates :func:`select_recipe` tries by default, cheapest first (ties go to it).
#: ``benchmarks/intent_recipe_grid.py`` (Banking77 8-shot, scored on other *training* rows)
#: kept these two losses at 8 epochs and 5e-5: a learning rate of 1e-4, 16 epochs and
#: in-batch negatives with same-class masking (twice the cost: two texts a row) did no better.
FEWSHOT_RECIPES: tuple[Recipe, ...] = (
    Recipe("none", None, epochs=0),
    Recipe("supcon", "SupervisedContrastiveLoss", {"scale": 20.0}, epochs=8,
           learning_rate=5e-5),
    Recipe("batch_hard", "BatchHardTripletLoss", {"margin": 0.1}, epochs=8,
           learning_rate=5e-5),
)


@dataclass
class RecipeChoice:
    """What :func:`select_recipe` chose and why.

    Attributes:
        recipe: The chosen recipe.
        mode: The classifier mode that scored best with it.
        scores: ``{recipe name: {mode: validation accuracy in %}}`` for every candidate.
        seconds: ``{recipe name: training seconds}``.
        validation_indices: Which of the given rows were held out for validation.
    """

    recipe: Recipe
    mode: str
    scores: dict[str, dict[str, float]]
    seconds: dict[str, float]
    validation_indices: list[int]

    def to_dict(self) -> dict[str, Any]:
        return {"recipe": self.recipe.to_dict(), "mode": self.mode, "scores": self.scores,
                "seconds": self.seconds, "validation_size": len(self.validation_indices)}


def validation_split(labels: Sequence[object], fraction: float = 0.25, seed: int = 0
                     ) -> tuple[list[int], list[int]]:
    """Stratified ``(train, validation)`` row indices: ``round(fraction * n)`` rows of each
    class of ``n >= 2`` rows (at least 1, and never all of them) go to validation; a class
    with one row stays in training.

    Raises:
        ValueError: If ``fraction`` is not in (0, 1), or no class has 2 rows.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not (
            0 < fraction < 1):
        raise ValueError(f"validation_fraction must be in (0, 1), got {fraction!r}")
    rng = np.random.default_rng(seed)
    by_class: dict[object, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(label, []).append(i)
    train, held = [], []
    for rows in by_class.values():
        rows = [rows[i] for i in rng.permutation(len(rows))]
        k = 0 if len(rows) < 2 else min(len(rows) - 1, max(1, round(fraction * len(rows))))
        held += rows[:k]
        train += rows[k:]
    if not held:
        raise ValueError("selecting a recipe needs a validation split carved from the "
                         "training rows, so some class needs at least 2 examples; every class "
                         "has 1")
    return sorted(train), sorted(held)


def select_recipe(model: SiamText, texts: Sequence[str], labels: Sequence[object], *,
                  candidates: Sequence[Recipe] = FEWSHOT_RECIPES,
                  modes: Sequence[str] = MODES, validation_fraction: float = 0.25,
                  seed: int = 0, show_progress: bool | None = False) -> RecipeChoice:
    """Choose a recipe and classifier mode on a validation split of the training rows.

    Each candidate trains a copy of ``model`` (``model`` itself is left as it is) on the
    rows outside the validation split; an :class:`IntentClassifier` of each mode stores
    those same rows and is scored on the validation rows. The best accuracy wins; ties go
    to the earlier candidate and mode (cheaper first in :data:`FEWSHOT_RECIPES`).

    Args:
        model: The base model.
        texts: Training texts.
        labels: Their labels (at least 2 classes, some with 2 examples or more).
        candidates: The recipes to try.
        modes: The classifier modes to try.
        validation_fraction: Share of each class held out for validation.
        seed: Seed of the split and of training.
        show_progress: Training progress bars.

    Returns:
        The :class:`RecipeChoice`.
    """
    texts, labels = _check_rows(texts, labels)
    if not candidates:
        raise ValueError("candidates must hold at least one Recipe, got none")
    for recipe in candidates:
        if not isinstance(recipe, Recipe):
            raise TypeError(f"candidates must be Recipe objects, got {type(recipe).__name__}")
    for mode in modes:
        if mode not in MODES:
            raise ValueError(f"modes must be among {MODES}, got {mode!r}")
    train, held = validation_split(labels, validation_fraction, seed)
    tx, ty = [texts[i] for i in train], [labels[i] for i in train]
    vx, vy = [texts[i] for i in held], np.asarray([labels[i] for i in held], dtype=object)
    scores: dict[str, dict[str, float]] = {}
    seconds: dict[str, float] = {}
    best: tuple[float, int, int] | None = None
    for r, recipe in enumerate(candidates):
        start = time.perf_counter()
        tuned = recipe.train(copy.deepcopy(model), tx, ty, seed=seed,
                             show_progress=show_progress)
        seconds[recipe.name] = round(time.perf_counter() - start, 1)
        stored, queries = tuned.encode(tx), tuned.encode(vx)
        scores[recipe.name] = {}
        for m, mode in enumerate(modes):
            clf = _classifier(tuned, mode).fit(stored, ty)
            acc = float((clf.predict(queries).astype(object) == vy).mean() * 100)
            scores[recipe.name][mode] = round(acc, 2)
            if best is None or acc > best[0] + 1e-9:
                best = (acc, r, m)
        logger.info("recipe %s: validation accuracy %s (trained in %.1f s)", recipe.name,
                    scores[recipe.name], seconds[recipe.name])
        del tuned
    assert best is not None
    return RecipeChoice(candidates[best[1]], modes[best[2]], scores, seconds, held)


def fit_fewshot(model: SiamText, texts: Sequence[str], labels: Sequence[object], *,
                candidates: Sequence[Recipe] = FEWSHOT_RECIPES,
                modes: Sequence[str] = MODES, validation_fraction: float = 0.25,
                seed: int = 0, show_progress: bool | None = False,
                ) -> tuple[SiamText, IntentClassifier, RecipeChoice]:
    """Choose a recipe (:func:`select_recipe`), train it on every row, fit a classifier.

    ``model`` is trained in place with the chosen recipe on all of ``texts``; the returned
    :class:`IntentClassifier` (the chosen mode) stores them. Fit its out-of-scope threshold
    with ``clf.fit_threshold(...)`` on data of your own.

    Returns:
        ``(model, classifier, choice)``.
    """
    choice = select_recipe(model, texts, labels, candidates=candidates, modes=modes,
                           validation_fraction=validation_fraction, seed=seed,
                           show_progress=show_progress)
    texts, labels = list(texts), list(labels)
    choice.recipe.train(model, texts, labels, seed=seed, show_progress=show_progress)
    model.card_data.training = {**(model.card_data.training or {}),
                                "recipe": choice.to_dict()}
    clf = _classifier(model, choice.mode).fit(texts, labels)
    return model, clf, choice


def _classifier(model: SiamText, mode: str) -> IntentClassifier:
    from siamtext.classify.intent import IntentClassifier

    return IntentClassifier(model, mode=mode)


def _check_rows(texts: Sequence[str], labels: Sequence[object]
                ) -> tuple[list[str], list[object]]:
    texts = check_texts(texts, "texts")
    labels = list(labels)
    if not texts:
        raise ValueError("texts must hold at least one example, got none")
    if len(labels) != len(texts):
        raise ValueError(f"texts and labels must have the same length, got {len(texts)} and "
                         f"{len(labels)}")
    if len(set(labels)) < 2:
        raise ValueError(f"a few-shot recipe needs at least 2 classes, got "
                         f"{len(set(labels))}")
    return texts, labels


def _anchor_positive_rows(texts: Sequence[str], labels: Sequence[object], epochs: int,
                          seed: int) -> dict[str, list]:
    """``epochs`` rounds of (anchor, positive, label) pairs, drawn afresh each round."""
    from siamtext.data import make_anchor_positives

    rows: dict[str, list] = {"anchor": [], "positive": [], "label": []}
    for r in range(epochs):
        part = make_anchor_positives(list(texts), list(labels), seed=seed * 1000 + r).to_dict()
        for key in rows:
            rows[key] += part[key]
    return rows


def _hardest_other_class(model: SiamText, texts: Sequence[str], labels: Sequence[object],
                         rows: dict[str, list]) -> list[str]:
    """For each (anchor, label) row, the text of another class that ``model`` embeds nearest
    the anchor (cosine similarity), mined once per distinct (text, label) row."""
    from siamtext.data.pairs import _hardest_negatives

    texts, labels = list(texts), list(labels)
    index = {(t, y): i for i, (t, y) in enumerate(zip(texts, labels, strict=True))}
    anchors = sorted(set(index.values()))
    nearest = dict(zip(anchors, _hardest_negatives(model, texts, labels, anchors, 128),
                       strict=True))
    return [texts[nearest[index[a, y]]] for a, y in zip(rows["anchor"], rows["label"],
                                                         strict=True)]
