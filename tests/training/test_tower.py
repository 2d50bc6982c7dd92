"""SubBatchedTower: sub-batched embedding gives the same embeddings and gradients."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from siamtext import SiamText


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
