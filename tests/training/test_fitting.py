"""fit end to end on the tiny model: the loss falls, classes separate, every siamtext loss
trains; bad arguments and losses are rejected."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from siamtext import SiamText
from siamtext.model_card import ModelCardData
from siamtext.training import TrainingArguments, fit, make_loss

from .toys import ToyLabelledLoss, ToyPairLoss, separation, toy_rows


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


def test_bad_data_is_rejected_before_training(model: SiamText) -> None:
    before = model.transformer.embeddings.word_embeddings.weight.clone()
    data = {"sentence1": ["a", "b"], "sentence2": ["c", "d"], "label": [1, 2]}
    with pytest.raises(ValueError, match=r"train_dataset\['label'\] must be 0 or 1"):
        fit(model, data, ToyPairLoss(model))
    with pytest.raises(ValueError, match=r"eval_dataset is missing column\(s\) \['label'\]"):
        fit(model, {**data, "label": [1, 0]}, ToyPairLoss(model),
            eval_dataset={"sentence1": ["a"], "sentence2": ["b"]})
    assert torch.equal(before, model.transformer.embeddings.word_embeddings.weight)


def test_make_loss_by_name_and_params(model: SiamText) -> None:
    losses = pytest.importorskip("siamtext.losses")
    loss = make_loss(model, "CoSENTLoss", {"scale": 10.0})
    assert isinstance(loss, losses.CoSENTLoss) and loss.model is model
    with pytest.raises(ValueError, match="loss_params cannot be used with a loss instance"):
        make_loss(model, loss, {"scale": 1.0})


def test_loss_class_needs_no_model() -> None:
    from siamtext.training.fitting import loss_class

    losses = pytest.importorskip("siamtext.losses")
    assert loss_class("SupervisedContrastiveLoss") is losses.SupervisedContrastiveLoss
    assert loss_class("SupervisedContrastiveLoss").samples_per_class == 2
    assert loss_class(losses.BatchHardTripletLoss).samples_per_class == 4
    with pytest.raises(ValueError, match="loss must be one of .*got 'NoSuchLoss'"):
        loss_class("NoSuchLoss")
    with pytest.raises(TypeError, match="got int"):
        loss_class(3)


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
    "MultipleNegativesRankingLoss", "SupervisedContrastiveLoss"])
def test_every_siamtext_loss_trains_through_fit(tiny_bert_dir: Path, name: str) -> None:
    losses = pytest.importorskip("siamtext.losses")
    model = SiamText(tiny_bert_dir, device="cpu")
    fmt = getattr(losses, name).input_format
    fit(model, REAL_LOSS_ROWS[fmt], name, batch_size=4, samples_per_class=2,
        learning_rate=1e-3, show_progress=False)
    assert model.card_data.training["loss"] == name
    assert math.isfinite(model.card_data.training["train_loss"])


def test_in_batch_negatives_train_on_fewer_classes_than_rows_in_a_batch(
        tiny_bert_dir: Path) -> None:
    """60 demo intents of 3 classes, batches of 24: the sampler draws batches with repeated
    classes and some of one class only (their masked loss is 0); training goes on (it raised
    'all 2 rows have the same label' mid-epoch before)."""
    from siamtext import make_anchor_positives
    from siamtext.demo import load_demo_intents

    texts, labels = load_demo_intents()
    rows = make_anchor_positives(texts[:60], labels[:60])
    model = SiamText(tiny_bert_dir, device="cpu")
    fit(model, rows, "MultipleNegativesRankingLoss", batch_size=24, show_progress=False)
    assert math.isfinite(model.card_data.training["train_loss"])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    one_class = rows.map(lambda r: {"label": 0})
    with pytest.raises(ValueError, match="single class 0: masking same-class rows"):
        fit(model, one_class, "MultipleNegativesRankingLoss", batch_size=24,
            show_progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
