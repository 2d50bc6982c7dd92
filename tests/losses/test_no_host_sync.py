"""No loss reads a value back to the host while it scores a batch.

A GPU training step that calls ``.item()``, ``bool(tensor)``, boolean indexing or
``torch.unique`` inside the loss waits for the device every step. Tensors on the ``meta``
device have shapes but no values, so any such read raises there: running every loss on meta
embeddings and labels proves, on a CPU-only machine, that the GPU path never synchronises
inside the loss.
"""

from __future__ import annotations

import pytest
import torch

from siamtext import losses

ROWS, DIM = 8, 16


def _embeddings(count: int) -> list[torch.Tensor]:
    return [torch.empty(ROWS, DIM, device="meta", requires_grad=True) for _ in range(count)]


CLASS_IDS = torch.empty(ROWS, dtype=torch.long, device="meta")
SCORES = torch.empty(ROWS, device="meta")

CASES = {
    "MultipleNegativesRankingLoss": (3, None),
    "SupervisedContrastiveLoss": (1, CLASS_IDS),
    "PrototypicalLoss": (1, CLASS_IDS),
    "BatchHardTripletLoss": (1, CLASS_IDS),
    "BatchSemiHardTripletLoss": (1, CLASS_IDS),
    "BatchAllTripletLoss": (1, CLASS_IDS),
    "CoSENTLoss": (2, SCORES),
    "ContrastiveLoss": (2, SCORES),
    "OnlineContrastiveLoss": (2, SCORES),
    "TripletLoss": (3, None),
    "CachedMultipleNegativesRankingLoss": (3, None),
    "CachedSupervisedContrastiveLoss": (1, CLASS_IDS),
}


def test_every_loss_is_covered():
    assert {cls.__name__ for cls in losses.LOSSES.values()} == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_scoring_a_batch_reads_nothing_back(name: str, tiny_model) -> None:
    count, labels = CASES[name]
    loss = getattr(losses, name)(tiny_model)
    value = loss.compute_loss_from_embeddings(_embeddings(count), labels)
    assert value.shape == () and value.device.type == "meta"
    value.backward()  # the backward pass reads nothing back either


def test_in_batch_class_masks_read_nothing_back(tiny_model) -> None:
    loss = losses.MultipleNegativesRankingLoss(tiny_model)
    loss.compute_loss_from_embeddings(_embeddings(2), CLASS_IDS).backward()


def test_a_read_would_be_caught() -> None:
    """The premise: meta tensors refuse every read the losses must avoid."""
    mask = torch.empty(ROWS, dtype=torch.bool, device="meta")
    with pytest.raises(RuntimeError):
        bool(mask.any())
    with pytest.raises((NotImplementedError, RuntimeError)):
        torch.empty(ROWS, device="meta")[mask]
    with pytest.raises((NotImplementedError, RuntimeError)):
        torch.unique(CLASS_IDS)
