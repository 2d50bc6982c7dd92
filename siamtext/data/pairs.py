"""Build training rows from class-labelled texts: pairs, triplets and (anchor, positive) rows.

Every builder takes parallel ``texts`` and ``labels`` (any hashable class label), is seeded,
and returns a ``datasets.Dataset`` whose columns are the collators' defaults.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING

import datasets
import numpy as np

from siamtext.validation import check_positive_int, check_texts

if TYPE_CHECKING:
    from siamtext.model import SiamText

logger = logging.getLogger(__name__)


def _group(texts: object, labels: Sequence[Hashable], *, need_negatives: bool,
           need_positives: bool) -> tuple[list[str], dict[Hashable, list[int]]]:
    texts = check_texts(texts, "texts")
    if len(texts) == 0:
        raise ValueError("texts is empty: building pairs needs labelled texts")
    if isinstance(labels, (str, bytes)) or not hasattr(labels, "__len__"):
        raise TypeError(f"labels must be a list of class labels, got {type(labels).__name__}")
    if len(labels) != len(texts):
        raise ValueError(f"labels has {len(labels)} entries but texts has {len(texts)}; give "
                         "one label per text")
    by_class: dict[Hashable, list[int]] = {}
    for i, label in enumerate(labels):
        if not isinstance(label, Hashable):
            raise TypeError(f"labels[{i}] must be hashable (a string or a number), got "
                            f"{type(label).__name__}: {label!r:.60}")
        if label != label:  # NaN: never equal to itself, so it would split into classes
            raise ValueError(f"labels[{i}] is {label!r}; give every text a real class label")
        by_class.setdefault(label, []).append(i)
    if need_negatives and len(by_class) < 2:
        raise ValueError(f"labels has a single class ({next(iter(by_class))!r}): negatives "
                         "need at least two classes")
    if need_positives and not any(len(v) >= 2 for v in by_class.values()):
        raise ValueError("every class has a single text: positives need at least one class "
                         "with two or more texts")
    return texts, by_class


def make_pairs(texts: Sequence[str], labels: Sequence[Hashable], max_pairs: int = 10_000,
               seed: int = 0) -> datasets.Dataset:
    """Balanced positive / negative pairs from class-labelled texts.

    Half the pairs join two texts of one class (label 1), half two texts of different
    classes (label 0). Anchors are drawn uniformly over texts, so large classes are not
    over-weighted beyond their share of the data; no pair appears twice. At most
    ``max_pairs`` rows, so thousands of classes do not explode into millions of pairs.

    Args:
        texts: The texts.
        labels: One class label per text.
        max_pairs: Most rows returned (positives and negatives together).
        seed: Random seed.

    Returns:
        A ``datasets.Dataset`` with columns ``sentence1``, ``sentence2``, ``label`` (0/1).

    Raises:
        ValueError: For empty or mismatched inputs, a single class, or no class with two
            texts.
    """
    check_positive_int(max_pairs, "max_pairs")
    texts, by_class = _group(texts, labels, need_negatives=True, need_positives=True)
    rng = random.Random(seed)
    n = len(texts)
    with_pos = [i for i in range(n) if len(by_class[labels[i]]) >= 2]
    n_pos_possible = sum(len(v) * (len(v) - 1) // 2 for v in by_class.values())
    n_pos = min(max_pairs // 2 + max_pairs % 2, n_pos_possible)
    n_neg = min(max_pairs - n_pos, n * (n - 1) // 2 - n_pos_possible)
    seen: set[tuple[int, int]] = set()
    rows: list[tuple[int, int, int]] = []

    def add(i: int, j: int, label: int) -> bool:
        key = (min(i, j), max(i, j))
        if i == j or key in seen:
            return False
        seen.add(key)
        rows.append((i, j, label))
        return True

    for target, label in ((n_pos, 1), (n_neg, 0)):
        made, tries = 0, 0
        while made < target and tries < 20 * target + 100:
            tries += 1
            i = rng.choice(with_pos) if label else rng.randrange(n)
            if label:
                j = rng.choice(by_class[labels[i]])
            else:
                j = rng.randrange(n)
                if labels[j] == labels[i]:
                    continue
            made += add(i, j, label)
    rng.shuffle(rows)
    return datasets.Dataset.from_dict({
        "sentence1": [texts[i] for i, _, _ in rows],
        "sentence2": [texts[j] for _, j, _ in rows],
        "label": [lab for _, _, lab in rows],
    })


def _anchor_positive_indices(labels: Sequence[Hashable], by_class: dict, rng: random.Random,
                             limit: int | None) -> tuple[list[int], list[int]]:
    """Shuffled anchors (texts of classes with two or more texts, at most ``limit``) and,
    for each, another text of its class."""
    anchors = [i for i in range(len(labels)) if len(by_class[labels[i]]) >= 2]
    rng.shuffle(anchors)
    if limit is not None:
        anchors = anchors[:limit]
    positives = []
    for i in anchors:
        j = i
        while j == i:
            j = rng.choice(by_class[labels[i]])
        positives.append(j)
    return anchors, positives


def make_triplets(texts: Sequence[str], labels: Sequence[Hashable],
                  max_triplets: int | None = None, seed: int = 0, model: SiamText | None = None,
                  batch_size: int = 64) -> datasets.Dataset:
    """(anchor, positive, negative) triplets from class-labelled texts.

    Every text of a class with two or more texts is an anchor once (in random order, up to
    ``max_triplets``); its positive is another text of its class. Its negative is a random
    text of another class, or, with ``model``, the hardest one: the text of another class
    that the current model embeds closest to the anchor.

    Args:
        texts: The texts.
        labels: One class label per text.
        max_triplets: Most rows returned (default: one per anchor).
        seed: Random seed.
        model: Mine hard negatives with this model's embeddings (cosine similarity).
        batch_size: Encoding batch size when mining.

    Returns:
        A ``datasets.Dataset`` with columns ``anchor``, ``positive``, ``negative``.

    Raises:
        ValueError: For empty or mismatched inputs, a single class (no negatives possible),
            or no class with two texts.
    """
    if max_triplets is not None:
        check_positive_int(max_triplets, "max_triplets")
    texts, by_class = _group(texts, labels, need_negatives=True, need_positives=True)
    rng = random.Random(seed)
    anchors, positives = _anchor_positive_indices(labels, by_class, rng, max_triplets)
    if model is None:
        negatives = []
        for i in anchors:
            j = rng.randrange(len(texts))
            while labels[j] == labels[i]:
                j = rng.randrange(len(texts))
            negatives.append(j)
    else:
        negatives = _hardest_negatives(model, texts, labels, anchors, batch_size)
    return datasets.Dataset.from_dict({
        "anchor": [texts[i] for i in anchors],
        "positive": [texts[j] for j in positives],
        "negative": [texts[k] for k in negatives],
    })


def _hardest_negatives(model: SiamText, texts: list[str], labels: Sequence[Hashable],
                       anchors: list[int], batch_size: int) -> list[int]:
    emb = model.encode(texts, batch_size=batch_size, normalize=True)
    ids = {label: k for k, label in enumerate(dict.fromkeys(labels))}
    label_ids = np.asarray([ids[label] for label in labels])
    out: list[int] = []
    for start in range(0, len(anchors), 1024):
        rows = anchors[start : start + 1024]
        sim = emb[rows] @ emb.T
        sim[label_ids[rows][:, None] == label_ids[None, :]] = -np.inf
        out.extend(int(j) for j in sim.argmax(axis=1))
    return out


def make_anchor_positives(texts: Sequence[str], labels: Sequence[Hashable], seed: int = 0,
                          max_rows: int | None = None) -> datasets.Dataset:
    """(anchor, positive, label) rows for in-batch-negative losses.

    Every text of a class with two or more texts is an anchor once; its positive is another
    text of its class. The ``label`` column keeps the class, so a class-aware sampler can
    keep two rows of one class out of the same batch (no false negatives).

    Args:
        texts: The texts.
        labels: One class label per text.
        seed: Random seed.
        max_rows: Most rows returned.

    Returns:
        A ``datasets.Dataset`` with columns ``anchor``, ``positive``, ``label``.

    Raises:
        ValueError: For empty or mismatched inputs, or no class with two texts.
    """
    if max_rows is not None:
        check_positive_int(max_rows, "max_rows")
    texts, by_class = _group(texts, labels, need_negatives=False, need_positives=True)
    rng = random.Random(seed)
    anchors, positives = _anchor_positive_indices(labels, by_class, rng, max_rows)
    return datasets.Dataset.from_dict({
        "anchor": [texts[i] for i in anchors],
        "positive": [texts[j] for j in positives],
        "label": [labels[i] for i in anchors],
    })
