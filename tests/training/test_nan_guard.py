"""NaN and inf in training: stop naming the step and the last good checkpoint, or skip the
step when asked; never save NaN weights."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from siamtext import SiamText
from siamtext.finite import non_finite
from siamtext.training import NonFiniteError, TrainingArguments, fit
from siamtext.training.guard import NonFiniteGuard

from .toys import ToyLabelledLoss, toy_rows


class LossGoesNaN(ToyLabelledLoss):
    """The toy loss, NaN (and so are its gradients) at the given training steps (1-based)."""

    def __init__(self, model: SiamText, bad_steps: set[int]) -> None:
        super().__init__(model)
        self.bad_steps, self.calls = bad_steps, 0

    def forward(self, features, labels):
        loss = super().forward(features, labels)
        if self.model.training:
            self.calls += 1
            if self.calls in self.bad_steps:
                return loss * float("nan")
        return loss


def data() -> dict[str, list]:
    texts, labels = toy_rows()
    return {"text": texts, "label": labels}  # 40 rows: 5 steps of 8


COMMON = dict(batch_size=8, learning_rate=1e-3, show_progress=False, seed=1)


def test_nan_loss_stops_naming_the_step_and_the_last_checkpoint(model, tmp_path: Path) -> None:
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(NonFiniteError, match=r"loss is NaN or inf at step 3") as info:
        fit(model, data(), LossGoesNaN(model, {3}), output_dir=str(tmp_path),
            save_strategy="steps", save_steps=2, **COMMON)
    assert str(tmp_path / "checkpoint-2") in str(info.value)
    assert "nan_policy='skip'" in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2"]
    assert not non_finite(model.state_dict().items())  # stopped before the update
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_nan_gradient_stops_before_any_checkpoint(model, tmp_path: Path) -> None:
    weight = model.transformer.embeddings.word_embeddings.weight
    calls = []

    def poison(grad: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return grad * float("inf") if len(calls) == 2 else grad

    weight.register_hook(poison)
    with pytest.raises(NonFiniteError, match=r"gradient norm is NaN or inf at step 2.*no "
                                             r"checkpoint was saved"):
        fit(model, data(), ToyLabelledLoss(model), output_dir=str(tmp_path),
            save_strategy="steps", save_steps=3, sub_batch_size=0, **COMMON)
    assert not non_finite(model.state_dict().items())


def test_skip_policy_drops_the_update_and_counts_it(model, tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="siamtext.training.guard"):
        fit(model, data(), LossGoesNaN(model, {2, 4}), output_dir=str(tmp_path),
            save_strategy="steps", save_steps=2, nan_policy="skip", **COMMON)
    assert model.card_data.training["skipped_steps"] == 2
    assert "step 2: the loss is NaN or inf; skipped" in caplog.text
    assert not non_finite(model.state_dict().items())
    reloaded = SiamText(tmp_path / "checkpoint-4", device="cpu")  # checkpoints load
    assert not non_finite(reloaded.state_dict().items())


def test_a_skipped_step_leaves_weights_and_optimizer_unchanged(tiny_bert_dir: Path) -> None:
    """Steps 1-2 then a NaN step 3 under skip equal steps 1-2 alone (max_steps=2)."""
    runs = {}
    for name, bad, steps in (("skipped", {3}, 3), ("stopped", set(), 2)):
        model = SiamText(tiny_bert_dir, device="cpu")
        fit(model, data(), LossGoesNaN(model, bad), nan_policy="skip", max_steps=steps,
            warmup_ratio=0.0, lr_scheduler_type="constant", **COMMON)
        runs[name] = model.state_dict()
    for key, value in runs["stopped"].items():
        assert torch.equal(value, runs["skipped"][key]), key


def test_deferred_check_flags_the_first_bad_step() -> None:
    """On a GPU the flags stay on the device until a log or save reads them."""
    guard = NonFiniteGuard("raise", torch.device("cuda"))  # only decides to defer
    guard.observe_loss(torch.tensor(0.5))
    assert guard.allow_update(torch.tensor(1.0), 1, None)
    guard.check(None)  # nothing flagged
    guard.observe_loss(torch.tensor(0.5))
    assert guard.allow_update(torch.tensor(float("inf")), 2, "ckpt-1")  # deferred
    guard.observe_loss(torch.tensor(float("nan")))
    assert guard.allow_update(torch.tensor(1.0), 3, "ckpt-1")
    with pytest.raises(NonFiniteError, match=r"gradient norm is NaN or inf at step 2.*ckpt-1"):
        guard.check("ckpt-1")


def test_nan_policy_is_checked() -> None:
    with pytest.raises(ValueError, match="nan_policy"):
        TrainingArguments(nan_policy="ignore")
