"""End-to-end training on the tiny model: the loss falls, classes separate, resume is exact."""

from __future__ import annotations

import csv
import math
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from siamtext import SiamText
from siamtext.model_card import ModelCardData
from siamtext.training import (
    SiamTextTrainer,
    TrainingArguments,
    check_data,
    fit,
    make_loss,
    resolve_columns,
)


class ToyLabelledLoss(nn.Module):
    """Minimal loss on (text, label) rows: same class -> cosine 1, other class -> cosine <= 0."""

    input_format: ClassVar[str] = "labelled"

    def __init__(self, model: SiamText) -> None:
        super().__init__()
        self.model = model

    def forward(self, features: list[dict[str, Tensor]], labels: Tensor | None) -> Tensor:
        emb = torch.nn.functional.normalize(self.model(**features[0]), dim=-1)
        sim = emb @ emb.T
        same = labels[:, None] == labels[None, :]
        return torch.where(same, 1 - sim, torch.relu(sim)).mean()

    def get_config_dict(self) -> dict[str, Any]:
        return {"toy": True}


class ToyPairLoss(ToyLabelledLoss):
    input_format: ClassVar[str] = "pair"

    def forward(self, features: list[dict[str, Tensor]], labels: Tensor | None) -> Tensor:
        a, b = (torch.nn.functional.normalize(self.model(**f), dim=-1) for f in features)
        sim = (a * b).sum(-1)
        return torch.where(labels == 1, 1 - sim, torch.relu(sim)).mean()


def toy_rows() -> tuple[list[str], list[str]]:
    path = resources.files("siamtext") / "resources" / "demo_intents.csv"
    with path.open(encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["label"] in ("weather", "book_table")]
    return [r["text"] for r in rows], [r["label"] for r in rows]


def separation(model: SiamText, texts: list[str], labels: list[str]) -> float:
    emb = model.encode(texts)
    sim = emb @ emb.T
    same = np.equal.outer(labels, labels)
    off = ~np.eye(len(texts), dtype=bool)
    return float(sim[same & off].mean() - sim[~same].mean())


def test_training_lowers_loss_and_separates_two_classes(tiny_bert_dir: Path) -> None:
    model = SiamText(tiny_bert_dir, device="cpu")
    texts, labels = toy_rows()
    data = {"text": texts, "label": labels}
    before = separation(model, texts, labels)
    loss = ToyLabelledLoss(model)
    with torch.no_grad():
        start = float(loss([model.tokenize(texts)], torch.tensor([labels[0] == x for x in labels])))
    fit(model, data, loss, epochs=4, batch_size=8, learning_rate=2e-3, show_progress=False,
        logging_steps=1000)
    with torch.no_grad():
        end = float(loss([model.tokenize(texts)], torch.tensor([labels[0] == x for x in labels])))
    after = separation(model, texts, labels)
    assert end < start - 0.05
    assert after > before + 0.15
    assert not model.training
    card = model.card_data
    assert isinstance(card, ModelCardData)
    assert card.training["loss"] == "ToyLabelledLoss"
    assert card.training["loss_config"] == {"toy": True}
    assert card.training["rows"] == len(texts)
    assert card.training["batch_size"] == 8
    assert card.training["batch_sampler"] == "class_balanced"


def test_evaluator_runs_and_fills_eval_metrics(tiny_bert_dir: Path) -> None:
    model = SiamText(tiny_bert_dir, device="cpu")
    texts, labels = toy_rows()
    calls = []

    def evaluator(m: SiamText) -> dict[str, float]:
        calls.append(1)
        return {"separation": separation(m, texts, labels)}

    fit(model, {"text": texts, "label": labels}, ToyLabelledLoss(model), evaluator=evaluator,
        epochs=2, batch_size=8, learning_rate=1e-3, show_progress=False)
    assert len(calls) >= 2  # once per epoch, and once at the end
    assert set(model.card_data.eval_metrics) == {"eval_separation"}


def _pairs() -> dict[str, list]:
    texts, labels = toy_rows()
    n = len(texts)
    s1 = [texts[i] for i in range(n)]
    s2 = [texts[(i + 3) % n] for i in range(n)]
    y = [int(labels[i] == labels[(i + 3) % n]) for i in range(n)]
    return {"q1": s1, "q2": s2, "dup": y}


def test_checkpoint_and_resume_give_the_same_weights(tiny_bert_dir: Path, tmp_path: Path) -> None:
    data = _pairs()
    columns = {"sentence1": "q1", "sentence2": "q2", "label": "dup"}
    common = dict(epochs=2, batch_size=8, learning_rate=1e-3, columns=columns,
                  show_progress=False, save_steps=3, save_strategy="steps", seed=7)

    full = SiamText(tiny_bert_dir, device="cpu")
    fit(full, data, ToyPairLoss(full), output_dir=str(tmp_path / "full"), **common)
    checkpoints = sorted(p.name for p in (tmp_path / "full").glob("checkpoint-*"))
    assert "checkpoint-3" in checkpoints
    # a checkpoint is a loadable SiamText folder
    reloaded = SiamText(tmp_path / "full" / "checkpoint-3", device="cpu")
    assert reloaded.embedding_dim == full.embedding_dim

    resumed = SiamText(tiny_bert_dir, device="cpu")
    fit(resumed, data, ToyPairLoss(resumed), output_dir=str(tmp_path / "resumed"),
        resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-3"), **common)
    for (name, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items(),
                                 strict=True):
        torch.testing.assert_close(a, b, msg=f"weights differ at {name}")

    fresh = SiamText(tiny_bert_dir, device="cpu")
    assert not torch.equal(fresh.transformer.embeddings.word_embeddings.weight,
                           full.transformer.embeddings.word_embeddings.weight)


def test_best_checkpoint_is_kept_by_metric(tiny_bert_dir: Path, tmp_path: Path) -> None:
    model = SiamText(tiny_bert_dir, device="cpu")
    texts, labels = toy_rows()
    scores = iter([1.0, 5.0, 2.0, 0.0, 0.0])
    fit(model, {"text": texts, "label": labels}, ToyLabelledLoss(model),
        evaluator=lambda m: {"score": next(scores)}, epochs=3, batch_size=8,
        learning_rate=1e-3, output_dir=str(tmp_path), metric_for_best_model="eval_score",
        show_progress=False)
    assert model.card_data.eval_metrics["eval_score"] == 0.0  # final evaluation ran
    state = (tmp_path / "checkpoint-10" / "trainer_state.json").read_text()
    assert '"best_metric": 5.0' in state


# ---------------------------------------------------------------------- bad input
@pytest.fixture()
def model(tiny_bert_dir: Path) -> SiamText:
    return SiamText(tiny_bert_dir, device="cpu")


def test_contrastive_labels_outside_0_1_are_rejected(model: SiamText) -> None:
    data = {"sentence1": ["a", "b"], "sentence2": ["c", "d"], "label": [1, 2]}
    with pytest.raises(ValueError, match=r"must be 0 or 1 .*\[2\]"):
        fit(model, data, ToyPairLoss(model))


def test_nan_scores_are_rejected(model: SiamText) -> None:
    class ScoreLoss(ToyPairLoss):
        input_format: ClassVar[str] = "pair_score"

    data = {"sentence1": ["a", "b"], "sentence2": ["c", "d"], "label": [0.5, float("nan")]}
    with pytest.raises(ValueError, match=r"\['label'\]\[1\] is nan; scores must be finite"):
        fit(model, data, ScoreLoss(model))


def test_single_class_is_rejected_for_triplet_mining(model: SiamText) -> None:
    data = {"text": ["a", "b", "c"], "label": ["x", "x", "x"]}
    with pytest.raises(ValueError, match="single class 'x'.*at least two classes"):
        fit(model, data, ToyLabelledLoss(model))


def test_one_row_per_class_is_rejected_for_triplet_mining(model: SiamText) -> None:
    data = {"text": ["a", "b", "c"], "label": ["x", "y", "z"]}
    with pytest.raises(ValueError, match="every class has one row"):
        fit(model, data, ToyLabelledLoss(model))


def test_empty_dataset_is_rejected(model: SiamText) -> None:
    with pytest.raises(ValueError, match="train_dataset is empty"):
        fit(model, {"text": [], "label": []}, ToyLabelledLoss(model))


def test_missing_columns_are_named(model: SiamText) -> None:
    data = {"question1": ["a"], "question2": ["b"], "label": [1]}
    with pytest.raises(ValueError, match=r"missing column\(s\) \['sentence1', 'sentence2'\]; "
                                         r"it has columns \['question1', 'question2', 'label'\]"):
        fit(model, data, ToyPairLoss(model))


def test_batch_smaller_than_p_times_k_is_rejected(model: SiamText) -> None:
    texts, labels = toy_rows()
    with pytest.raises(ValueError, match=r"batch_size=8 is smaller than .* 4 x 4 = 16"):
        fit(model, {"text": texts, "label": labels}, ToyLabelledLoss(model), batch_size=8,
            classes_per_batch=4)


def test_more_classes_per_batch_than_classes_is_rejected(model: SiamText) -> None:
    texts, labels = toy_rows()
    with pytest.raises(ValueError, match=r"classes_per_batch=4 but the data has only 2"):
        fit(model, {"text": texts, "label": labels}, ToyLabelledLoss(model), batch_size=16)


def test_bad_fit_arguments_are_rejected(model: SiamText) -> None:
    data = {"text": ["a", "b"], "label": [0, 1]}
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        fit(model, data, ToyLabelledLoss(model), batch_size=0)
    with pytest.raises(ValueError, match="epochs must be a positive number"):
        fit(model, data, ToyLabelledLoss(model), epochs=0)
    with pytest.raises(ValueError, match="loss must be one of .*got 'NoSuchLoss'"):
        fit(model, data, "NoSuchLoss")
    with pytest.raises(ValueError, match="batch_sampler must be one of"):
        TrainingArguments(batch_sampler="nope")


def test_make_loss_by_name_and_params(model: SiamText) -> None:
    losses = pytest.importorskip("siamtext.losses")
    loss = make_loss(model, "CoSENTLoss", {"scale": 10.0})
    assert isinstance(loss, losses.CoSENTLoss) and loss.model is model
    with pytest.raises(ValueError, match="loss_params cannot be used with a loss instance"):
        make_loss(model, loss, {"scale": 1.0})


def test_resolve_columns_maps_names_and_finds_negatives(model: SiamText) -> None:
    class InBatch(ToyLabelledLoss):
        input_format: ClassVar[str] = "anchor_positive"

    data = {"q": ["a"], "positive": ["b"], "negative": ["c"], "label": [0]}
    spec = resolve_columns(InBatch(model), data, {"anchor": "q"})
    assert spec.text_columns == ["q", "positive", "negative"]
    assert spec.label_column == "label"
    check_data(data, spec, "anchor_positive")


def test_trainer_rejects_plain_transformers_arguments(model: SiamText) -> None:
    import transformers

    with pytest.raises(TypeError, match="args must be siamtext.training.TrainingArguments"):
        SiamTextTrainer(model, transformers.TrainingArguments(output_dir="x"),
                        {"text": ["a"], "label": [0]}, ToyLabelledLoss(model))


def test_sub_batched_tower_gives_the_same_embeddings_and_gradients(tiny_bert_dir: Path) -> None:
    from siamtext.training import SubBatchedTower

    model = SiamText(tiny_bert_dir, device="cpu").eval()
    texts = ["a", "a much longer text about the weather tomorrow morning", "book a table",
             "hi", "what is the weather like in paris this weekend", "thanks"]
    batch = model.tokenize(texts)
    whole = model(**batch)
    whole.sum().backward()
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad()
    tower = SubBatchedTower(model, 2)
    parts = tower(**batch)
    parts.sum().backward()
    torch.testing.assert_close(parts, whole, atol=1e-5, rtol=1e-5)
    for g, p in zip(grads, (p for p in model.parameters() if p.grad is not None), strict=True):
        torch.testing.assert_close(p.grad, g, atol=1e-5, rtol=1e-4)
    assert tower.embedding_dim == model.embedding_dim  # other attributes pass through
    with pytest.raises(ValueError, match="size must be a positive integer"):
        SubBatchedTower(model, 0)


def test_gradient_accumulation_and_checkpointing_run(tiny_bert_dir: Path) -> None:
    model = SiamText(tiny_bert_dir, device="cpu")
    texts, labels = toy_rows()
    before = model.transformer.embeddings.word_embeddings.weight.clone()
    rows = {"text": texts[:8] + texts[-8:], "label": labels[:8] + labels[-8:]}
    fit(model, rows, ToyLabelledLoss(model), batch_size=4, samples_per_class=2,
        gradient_accumulation_steps=2, activation_checkpointing=True, learning_rate=1e-3,
        show_progress=False)
    assert model.transformer.is_activation_checkpointing
    assert model.card_data.training["gradient_accumulation_steps"] == 2
    assert model.card_data.training["steps"] == 2  # 4 batches of 4, 2 per optimizer step
    assert not torch.equal(before, model.transformer.embeddings.word_embeddings.weight)


REAL_LOSS_ROWS = {
    "pair": {"sentence1": ["will it rain", "play a song", "is it sunny", "next track"],
             "sentence2": ["rain tomorrow?", "weather today", "sunny or not", "skip song"],
             "label": [1, 0, 1, 1]},
    "pair_score": {"sentence1": ["will it rain", "play a song", "is it sunny"],
                   "sentence2": ["rain tomorrow?", "weather today", "sunny or not"],
                   "label": [0.9, 0.1, 0.7]},
    "triplet": {"anchor": ["will it rain", "play a song"], "positive": ["rain?", "a song"],
                "negative": ["play jazz", "sunny day"]},
    "labelled": {"text": ["will it rain", "is it sunny", "play a song", "next track"],
                 "label": ["w", "w", "m", "m"]},
    "anchor_positive": {"anchor": ["will it rain", "play a song"],
                        "positive": ["rain tomorrow?", "put on a song"]},
}


@pytest.mark.parametrize("name", [
    "ContrastiveLoss", "OnlineContrastiveLoss", "CoSENTLoss", "TripletLoss",
    "BatchHardTripletLoss", "BatchSemiHardTripletLoss", "BatchAllTripletLoss",
    "MultipleNegativesRankingLoss"])
def test_every_siamtext_loss_trains_through_fit(tiny_bert_dir: Path, name: str) -> None:
    losses = pytest.importorskip("siamtext.losses")
    model = SiamText(tiny_bert_dir, device="cpu")
    fmt = getattr(losses, name).input_format
    fit(model, REAL_LOSS_ROWS[fmt], name, batch_size=4, samples_per_class=2,
        learning_rate=1e-3, show_progress=False)
    assert model.card_data.training["loss"] == name
    assert math.isfinite(model.card_data.training["train_loss"])
