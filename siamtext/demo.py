"""The demo: the main jobs of siamtext on the bundled model and data, in about a minute.

Encode intents and score pairs, fine-tune, find duplicate questions, and add an intent from
two examples without retraining.

The data is written for the project and ships with the package: 320 short utterances over
16 intents (``resources/demo_intents.csv``) and 60 user questions with paraphrase groups
(``resources/demo_questions.txt``), read by :mod:`siamtext.samples` (its loaders are
re-exported here).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from siamtext.evaluation import intent_accuracy
from siamtext.model import SiamText
from siamtext.samples import (  # also re-exported: siamtext.demo.load_demo_*
    load_demo_intents,
    load_demo_question_groups,
    load_demo_questions,
)


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
    figures.update(demo_duplicates(model, print_fn))
    figures.update(demo_new_intent(model, train_x, train_y, test_x, test_y, print_fn))
    return figures


DEMO_DUPLICATE_THRESHOLD = 0.75


def demo_duplicates(model: SiamText, print_fn: Callable[[str], None] = print) -> dict:
    """Find the paraphrase groups among the demo questions; compare with the answer key."""
    from siamtext.classify import DuplicateDetector

    questions = load_demo_questions()
    true_pairs = {(a, b) for group in load_demo_question_groups()
                  for a in group for b in group if a < b}
    found = DuplicateDetector(model, threshold=DEMO_DUPLICATE_THRESHOLD).find_duplicates(
        questions, show_progress=False)
    got = {tuple(pair) for pair in found.pairs.tolist()}
    precision = len(got & true_pairs) / max(len(got), 1)
    recall = len(got & true_pairs) / max(len(true_pairs), 1)
    print_fn(f"\nDuplicates among {len(questions)} questions (cosine >= "
             f"{DEMO_DUPLICATE_THRESHOLD}): {len(got)} pairs in {len(found.groups)} groups; "
             f"precision {precision:.0%}, recall {recall:.0%} against the answer key")
    for group in found.groups[:4]:
        print_fn("  - " + " | ".join(questions[i] for i in group))
    return {"duplicate_pairs": len(got), "duplicate_precision": precision,
            "duplicate_recall": recall}


def demo_new_intent(model: SiamText, train_x: list[str], train_y: list[str],
                    test_x: list[str], test_y: list[str],
                    print_fn: Callable[[str], None] = print) -> dict:
    """Fit an IntentClassifier, then add a new intent from two examples, no retraining."""
    from siamtext.classify import IntentClassifier

    clf = IntentClassifier(model).fit(train_x, train_y)
    accuracy = clf.score(test_x, test_y)
    clf.add_examples(["what's the euro to dollar exchange rate?",
                      "how many yen do I get for one pound"], "exchange_rate")
    queries = ["convert 100 dollars into euros", "what is today's rate for GBP to USD",
               "I lost my card"]
    predicted = [str(p) for p in clf.predict(queries)]
    print_fn(f"\nIntentClassifier (prototypes): {accuracy:.1%} on the held-out utterances. "
             "New intent 'exchange_rate' added from 2 examples, no retraining:")
    for query, label in zip(queries, predicted):
        print_fn(f"  {query!r} -> {label}")
    return {"intent_accuracy": accuracy, "new_intent_predictions": predicted}
