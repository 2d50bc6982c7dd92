"""Fixtures for the loss tests: a trainable tiny model and helpers that train it."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import torch

from siamtext import SiamText
from siamtext.losses.base import SiamLoss


@pytest.fixture
def fresh_model(tiny_bert_dir: Path) -> SiamText:
    """A tiny BERT SiamText of its own (tests may train it), dropout off for determinism."""
    torch.manual_seed(0)
    model = SiamText(tiny_bert_dir, device="cpu").eval()
    assert model.tokenizer.tokenize("card") != ["[UNK]"]
    return model


def _features(model: SiamText, columns: Sequence[Sequence[str]]) -> list[dict[str, torch.Tensor]]:
    return [model.tokenize(list(texts)) for texts in columns]


@pytest.fixture
def backward_grads() -> Callable[..., float]:
    """``run(loss, columns, labels)``: one forward/backward through ``loss.model``; asserts
    that the gradients exist, are finite and are not all zero; returns the loss value."""

    def run(loss: SiamLoss, columns: Sequence[Sequence[str]], labels: torch.Tensor | None) -> float:
        model = loss.model
        model.zero_grad()
        value = loss(_features(model, columns), labels)
        assert value.ndim == 0 and math.isfinite(value.item())
        value.backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert grads, "no parameter received a gradient"
        assert all(torch.isfinite(g).all() for g in grads)
        assert sum(float(g.abs().sum()) for g in grads) > 0
        return value.item()

    return run


@pytest.fixture
def train_steps() -> Callable[..., tuple[float, float]]:
    """``run(loss, columns, labels, steps, lr)``: AdamW steps on one toy batch; returns the
    loss before and after."""

    def run(loss: SiamLoss, columns: Sequence[Sequence[str]], labels: torch.Tensor | None,
            steps: int = 8, lr: float = 1e-3) -> tuple[float, float]:
        model = loss.model
        features = _features(model, columns)
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
        with torch.no_grad():
            before = loss(features, labels).item()
        for _ in range(steps):
            optimizer.zero_grad()
            loss(features, labels).backward()
            optimizer.step()
        with torch.no_grad():
            after = loss(features, labels).item()
        return before, after

    return run


@pytest.fixture
def toy_classes() -> tuple[list[str], list[str]]:
    """Two toy intents of four texts each: (card lost, password)."""
    card_lost = ["I lost my card", "my card was stolen", "can't find my credit card",
                 "please block my lost card"]
    password = ["I forgot my password", "reset my password please",
                "how do I change my password", "my password does not work"]
    return card_lost, password
