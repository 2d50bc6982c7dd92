"""The demo: the main job of siamtext on the bundled model and data, in under a minute.

The data is written for the project and ships with the package: 320 short utterances over
16 intents (``resources/demo_intents.csv``) and 60 user questions with paraphrase groups
(``resources/demo_questions.txt``).
"""

from __future__ import annotations

import csv
import random
import time
from collections.abc import Callable
from importlib import resources

from siamtext.evaluation import intent_accuracy
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


def run_demo(model: SiamText | None = None, print_fn: Callable[[str], None] = print,
             fine_tune: bool = True, seed: int = 0) -> dict:
    """Encode the demo intents, report accuracy, show scored pairs, then fine-tune.

    Args:
        model: The encoder (default: the bundled all-MiniLM-L6-v2). Fine-tuning changes it.
        print_fn: Where the report goes.
        fine_tune: Also fine-tune on the demo train split and report accuracy after.
        seed: Seed of the fine-tuning run.

    Returns:
        The figures printed, for tests.
    """
    model = model if model is not None else SiamText()
    texts, labels = load_demo_intents()
    train, test = split_per_class(texts, labels)
    train_x, train_y = [texts[i] for i in train], [labels[i] for i in train]
    test_x, test_y = [texts[i] for i in test], [labels[i] for i in test]

    def accuracy() -> tuple[float, float]:
        a, b = model.encode(train_x), model.encode(test_x)
        return (intent_accuracy(a, train_y, b, test_y, "knn", k=1),
                intent_accuracy(a, train_y, b, test_y, "prototype"))

    print_fn(f"Model: {model.model_name_or_path} ({model.embedding_dim}-d, {model.device})")
    print_fn(f"Intents: {len(set(labels))} classes, {len(train)} examples, {len(test)} queries")
    before = accuracy()
    print_fn(f"Intent accuracy, zero-shot: 1-NN {before[0]:.1f}%, prototype {before[1]:.1f}%")

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
    figures: dict = {"accuracy_before": before, "pair_scores": scores}

    if fine_tune:
        from siamtext.data import make_anchor_positives
        from siamtext.training import fit

        rows = make_anchor_positives(train_x, train_y, seed=seed)
        start = time.perf_counter()
        fit(model, rows, "MultipleNegativesRankingLoss", epochs=1, batch_size=16,
            learning_rate=5e-5, show_progress=False, seed=seed)
        after = accuracy()
        print_fn(f"\nFine-tuned on {len(rows)} (anchor, positive) pairs with in-batch negatives "
                 f"in {time.perf_counter() - start:.0f} s")
        print_fn(f"Intent accuracy, fine-tuned: 1-NN {after[0]:.1f}%, prototype {after[1]:.1f}%")
        figures["accuracy_after"] = after
    return figures
