"""SiamTextTrainer: evaluation, batching limits, argument type, gradient accumulation and
activation checkpointing."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

from siamtext import SiamText
from siamtext.training import SiamTextTrainer, fit
from siamtext.training.arguments import CHECKPOINTING_ARGUMENT

from .toys import ToyLabelledLoss, separation, toy_rows


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


def test_batch_smaller_than_p_times_k_is_rejected(model: SiamText) -> None:
    texts, labels = toy_rows()
    with pytest.raises(ValueError, match=r"batch_size=8 is smaller than .* 4 x 4 = 16"):
        fit(model, {"text": texts, "label": labels}, ToyLabelledLoss(model), batch_size=8,
            classes_per_batch=4)


def test_more_classes_per_batch_than_classes_is_rejected(model: SiamText) -> None:
    texts, labels = toy_rows()
    with pytest.raises(ValueError, match=r"classes_per_batch=4 but the data has only 2"):
        fit(model, {"text": texts, "label": labels}, ToyLabelledLoss(model), batch_size=16)


def test_trainer_rejects_plain_transformers_arguments(model: SiamText) -> None:
    import transformers

    with pytest.raises(TypeError, match="args must be siamtext.training.TrainingArguments"):
        SiamTextTrainer(model, transformers.TrainingArguments(output_dir="x"),
                        {"text": ["a"], "label": [0]}, ToyLabelledLoss(model))


def test_gradient_accumulation_and_checkpointing_run(tiny_bert_dir: Path) -> None:
    model = SiamText(tiny_bert_dir, device="cpu")
    texts, labels = toy_rows()
    before = model.transformer.embeddings.word_embeddings.weight.clone()
    rows = {"text": texts[:8] + texts[-8:], "label": labels[:8] + labels[-8:]}
    fit(model, rows, ToyLabelledLoss(model), batch_size=4, samples_per_class=2,
        gradient_accumulation_steps=2, learning_rate=1e-3, show_progress=False,
        **{CHECKPOINTING_ARGUMENT: True})  # the name this transformers has
    tower = model.transformer
    assert getattr(tower, "is_activation_checkpointing", None) or tower.is_gradient_checkpointing
    assert model.card_data.training["gradient_accumulation_steps"] == 2
    assert model.card_data.training["steps"] == 2  # 4 batches of 4, 2 per optimizer step
    assert not torch.equal(before, model.transformer.embeddings.word_embeddings.weight)


@pytest.mark.parametrize(("loss", "given", "expected"), [
    ("BatchHardTripletLoss", None, 4),
    ("SupervisedContrastiveLoss", None, 2),
    ("SupervisedContrastiveLoss", 3, 3),
])
def test_class_balanced_batches_take_k_from_the_loss_unless_given(
        tiny_bert_dir: Path, loss: str, given: int | None, expected: int) -> None:
    from siamtext.training import TrainingArguments, make_loss

    model = SiamText(tiny_bert_dir, device="cpu")
    texts, labels = toy_rows()
    rows = {"text": texts, "label": labels}
    args = TrainingArguments(per_device_train_batch_size=2 * expected,
                             samples_per_class=given, use_cpu=True)
    trainer = SiamTextTrainer(model, args, rows, make_loss(model, loss))
    batches = list(trainer.get_train_dataloader().batch_sampler)
    assert batches
    for batch in batches:  # P = 2 classes of K rows each
        counts = sorted(Counter(labels[i] for i in batch).values())
        assert counts == [expected, expected], counts
    fit(model, rows, loss, batch_size=2 * expected, samples_per_class=given,
        show_progress=False)
    assert model.card_data.training["samples_per_class"] == expected
