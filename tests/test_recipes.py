"""Few-shot recipes: the validation split, selection on it alone, and the final fit."""

from __future__ import annotations

import csv
from importlib import resources

import numpy as np
import pytest
import torch

from siamtext import SiamText
from siamtext.classify import IntentClassifier
from siamtext.recipes import FEWSHOT_RECIPES, Recipe, fit_fewshot, select_recipe, validation_split

CHEAP = (Recipe("none", None, epochs=0),
         Recipe("supcon", "SupervisedContrastiveLoss", {"scale": 20.0}, epochs=1,
                learning_rate=1e-3, batch_size=8))


def demo_rows(per_class: int = 6, classes: int = 5) -> tuple[list[str], list[str]]:
    path = resources.files("siamtext") / "resources" / "demo_intents.csv"
    with path.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    keep = sorted({r["label"] for r in rows})[:classes]
    x, y = [], []
    for label in keep:
        texts = [r["text"] for r in rows if r["label"] == label][:per_class]
        x += texts
        y += [label] * len(texts)
    return x, y


@pytest.fixture
def fresh_model(tiny_bert_dir):
    return SiamText(tiny_bert_dir, device="cpu")


def test_validation_split_by_hand():
    labels = ["a"] * 8 + ["b"] * 4 + ["c"]
    train, held = validation_split(labels, 0.25, seed=0)
    assert sorted(train + held) == list(range(13)) and not set(train) & set(held)
    held_labels = [labels[i] for i in held]
    assert held_labels.count("a") == 2 and held_labels.count("b") == 1  # round(0.25 n)
    assert "c" not in held_labels  # one row: it stays in training
    assert validation_split(labels, 0.25, seed=0) == (train, held)
    assert validation_split(["a", "a"], 0.9)[1] != [0, 1]  # never every row of a class


@pytest.mark.parametrize("kwargs,match", [
    ({"labels": ["a", "b", "c"]}, "some class needs at least 2"),
    ({"fraction": 0}, r"validation_fraction must be in \(0, 1\)"),
    ({"fraction": 1.0}, r"validation_fraction must be in \(0, 1\)"),
])
def test_validation_split_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        validation_split(kwargs.get("labels", ["a", "a", "b", "b"]), kwargs.get("fraction", 0.5))


def test_select_recipe_scores_every_candidate_on_training_rows_only(fresh_model, monkeypatch):
    x, y = demo_rows()
    seen: list[str] = []
    encode = SiamText.encode

    def spy(self, sentences, *args, **kwargs):
        seen.extend([sentences] if isinstance(sentences, str) else sentences)
        return encode(self, sentences, *args, **kwargs)

    monkeypatch.setattr(SiamText, "encode", spy)
    before = {k: v.clone() for k, v in fresh_model.state_dict().items()}
    choice = select_recipe(fresh_model, x, y, candidates=CHEAP, seed=0)
    assert set(choice.scores) == {"none", "supcon"}
    assert all(set(s) == {"prototype", "knn", "logistic"} for s in choice.scores.values())
    best = max(v for s in choice.scores.values() for v in s.values())
    assert choice.scores[choice.recipe.name][choice.mode] == best
    assert len(choice.validation_indices) == 5 * 2  # round(0.25 * 6) of each of 5 classes
    assert set(seen) <= set(x)  # nothing but the given rows is ever embedded
    after = fresh_model.state_dict()  # candidates train copies
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert choice.to_dict()["recipe"]["name"] == choice.recipe.name


def test_the_test_split_cannot_move_the_choice(tiny_bert_dir):
    """Shuffled test labels: the same recipe, the same model, the same test predictions."""
    x, y = demo_rows()
    test_x, test_y = demo_rows(per_class=9)
    test_x, test_y = test_x[5:], test_y[5:]
    shuffled = list(np.random.default_rng(0).permutation(test_y))
    outcomes = []
    for labels in (test_y, shuffled):
        model, clf, choice = fit_fewshot(SiamText(tiny_bert_dir, device="cpu"), x, y,
                                         candidates=CHEAP, seed=0)
        outcomes.append((choice.recipe.name, choice.mode, clf.predict(test_x).tolist(),
                         float((clf.predict(test_x) == np.asarray(labels)).mean())))
    assert outcomes[0][:3] == outcomes[1][:3]


def test_fit_fewshot_trains_the_chosen_recipe_on_every_row(fresh_model):
    x, y = demo_rows()
    only = (CHEAP[1],)
    model, clf, choice = fit_fewshot(fresh_model, x, y, candidates=only, modes=("knn",))
    assert model is fresh_model and choice.recipe is only[0] and choice.mode == "knn"
    assert isinstance(clf, IntentClassifier) and clf.mode == "knn" and len(clf.examples_) == 30
    assert model.card_data.training["recipe"]["recipe"]["name"] == "supcon"
    assert model.card_data.training["rows_seen"] >= len(x)  # trained on all 30, not 20


def test_mnrl_recipe_trains_on_same_class_pairs(fresh_model):
    x, y = demo_rows(per_class=4, classes=4)
    recipe = Recipe("mnrl", "MultipleNegativesRankingLoss", {"scale": 20.0}, epochs=2,
                    batch_size=4)
    recipe.train(fresh_model, x, y)
    assert fresh_model.card_data.training["loss"] == "MultipleNegativesRankingLoss"


@pytest.mark.parametrize("texts,labels,kwargs,error,match", [
    ([], [], {}, ValueError, "at least one example"),
    (["a", "b"], ["x"], {}, ValueError, "same length"),
    (["a", "b"], ["x", "x"], {}, ValueError, "at least 2 classes"),
    (["a", 3], ["x", "y"], {}, TypeError, "texts"),
    (["a", "b", "c"], ["x", "y", "z"], {}, ValueError, "at least 2"),
    (["a", "b"], ["x", "y"], {"candidates": ()}, ValueError, "at least one Recipe"),
    (["a", "b"], ["x", "y"], {"candidates": ("supcon",)}, TypeError, "Recipe objects"),
    (["a", "b"], ["x", "y"], {"modes": ("svm",)}, ValueError, "modes must be among"),
])
def test_bad_input(fresh_model, texts, labels, kwargs, error, match):
    with pytest.raises(error, match=match):
        select_recipe(fresh_model, texts, labels, **kwargs)


def test_default_candidates_start_with_no_tuning():
    assert FEWSHOT_RECIPES[0].loss is None and FEWSHOT_RECIPES[0].epochs == 0
    assert len({r.name for r in FEWSHOT_RECIPES}) == len(FEWSHOT_RECIPES)


def test_batches_shrink_to_the_classes_there_are(fresh_model):
    x, y = demo_rows(per_class=4, classes=3)  # a batch of 32 would need 16 classes x 2
    Recipe("supcon", "SupervisedContrastiveLoss", epochs=1, batch_size=32).train(fresh_model, x, y)
    assert fresh_model.card_data.training["batch_size"] == 6


def test_samples_per_class_reaches_the_sampler_and_sizes_the_batch(fresh_model):
    x, y = demo_rows(per_class=4, classes=3)
    Recipe("proto", "PrototypicalLoss", epochs=1, batch_size=32,
           samples_per_class=2).train(fresh_model, x, y)
    training = fresh_model.card_data.training
    assert training["loss"] == "PrototypicalLoss"
    assert training["samples_per_class"] == 2 and training["batch_size"] == 6  # 3 classes x 2


class _FixedEncoder:
    """A stand-in model whose embeddings are given by hand."""

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        self.vectors = vectors

    def encode(self, texts, batch_size=32, normalize=True):
        out = np.asarray([self.vectors[t] for t in texts], dtype=np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_hard_negative_is_the_nearest_text_of_another_class():
    from siamtext.recipes import _hardest_other_class

    # a and b are class x; c (near a) and d (near b) are class y
    model = _FixedEncoder({"a": [1, 0], "b": [0, 1], "c": [0.9, 0.1], "d": [0.2, 0.8]})
    rows = {"anchor": ["a", "b", "c", "d"], "positive": ["b", "a", "d", "c"],
            "label": ["x", "x", "y", "y"]}
    assert _hardest_other_class(model, ["a", "b", "c", "d"], ["x", "x", "y", "y"], rows) == [
        "c", "d", "a", "b"]


def test_mnrl_recipe_with_hard_negatives_trains_on_triplets(fresh_model):
    x, y = demo_rows(per_class=4, classes=4)
    recipe = Recipe("mnrl_hard", "MultipleNegativesRankingLoss", {"scale": 20.0}, epochs=1,
                    batch_size=4, hard_negatives=True)
    before = [p.detach().clone() for p in fresh_model.parameters()]
    recipe.train(fresh_model, x, y)
    assert fresh_model.card_data.training["loss"] == "MultipleNegativesRankingLoss"
    assert any(not torch.equal(a, b) for a, b in zip(before, fresh_model.parameters()))


def test_hard_negatives_need_in_batch_negatives():
    with pytest.raises(ValueError, match="hard_negatives needs loss='MultipleNegatives"):
        Recipe("x", "SupervisedContrastiveLoss", hard_negatives=True)
