"""The demo: the main job of siamtext on the bundled model and data, in under a minute.

The data is written for the project and ships with the package: 320 short utterances over
16 intents (``resources/demo_intents.csv``) and 60 user questions with paraphrase groups
(``resources/demo_questions.txt``).
"""

from __future__ import annotations

import csv
import random
from collections.abc import Callable
from importlib import resources

import numpy as np

from siamtext.model import SiamText


def load_demo_intents() -> tuple[list[str], list[str]]:
    """The demo intent data: (texts, labels), 20 utterances for each of 16 intents."""
    path = resources.files("siamtext") / "resources" / "demo_intents.csv"
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def load_demo_questions() -> list[str]:
    """60 user questions, about half of them in paraphrase groups."""
    path = resources.files("siamtext") / "resources" / "demo_questions.txt"
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def split_per_class(texts: list[str], labels: list[str], test_share: float = 0.25,
                    seed: int = 0) -> tuple[list[int], list[int]]:
    """Indices of a stratified train/test split: ``test_share`` of each class is held out."""
    by_class: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(label, []).append(i)
    rng = random.Random(seed)
    train, test = [], []
    for indices in by_class.values():
        indices = indices[:]
        rng.shuffle(indices)
        cut = max(1, round(len(indices) * test_share))
        test += indices[:cut]
        train += indices[cut:]
    return sorted(train), sorted(test)


def nearest_neighbour_accuracy(train_emb: np.ndarray, train_labels: list[str],
                               test_emb: np.ndarray, test_labels: list[str]) -> float:
    """Share of test rows whose most similar train row (cosine, unit vectors) has their label."""
    nearest = (test_emb @ train_emb.T).argmax(axis=1)
    return float(np.mean([train_labels[j] == y for j, y in zip(nearest, test_labels)]))


def run_demo(model: SiamText | None = None, print_fn: Callable[[str], None] = print) -> dict:
    """Encode the demo intents, report 1-NN accuracy and show similar/dissimilar pairs.

    Returns:
        The figures printed, for tests.
    """
    model = model if model is not None else SiamText()
    texts, labels = load_demo_intents()
    train, test = split_per_class(texts, labels)
    emb = model.encode(texts)
    accuracy = nearest_neighbour_accuracy(emb[train], [labels[i] for i in train],
                                          emb[test], [labels[i] for i in test])
    print_fn(f"Model: {model.model_name_or_path} ({model.embedding_dim}-d, {model.device})")
    print_fn(f"Intents: {len(set(labels))} classes, {len(train)} examples, {len(test)} queries")
    print_fn(f"Nearest-neighbour intent accuracy: {accuracy:.1%}")

    pairs = [
        ("How do I reset my password?", "I forgot my password, what now"),
        ("my card never arrived", "still waiting for the card you sent"),
        ("How do I reset my password?", "will it rain tomorrow"),
        ("play some music", "cancel my subscription please"),
    ]
    scores = [float(model.similarity(a, b)[0, 0]) for a, b in pairs]
    print_fn("\nSimilarity of a few pairs (cosine):")
    for (a, b), score in zip(pairs, scores):
        print_fn(f"  {score:+.3f}  {a!r} vs {b!r}")
    return {"accuracy": accuracy, "pair_scores": scores}
