"""OnlineContrastiveLoss: hard-pair selection and values computed by hand."""

from __future__ import annotations

import json

import pytest
import torch

from siamtext.losses.contrastive import ContrastiveLoss
from siamtext.losses.online_contrastive import OnlineContrastiveLoss, hard_pair_mask

# Every first vector is (1, 0); the second ones give cosine distances D = 1 - cos:
#   (0.8, 0.6) -> D = 0.2    (0, 1) -> D = 1.0    (0.6, 0.8) -> D = 0.4    (1, 0) -> D = 0
A = torch.tensor([[1.0, 0.0]] * 4)
B = torch.tensor([[0.8, 0.6], [0.0, 1.0], [0.6, 0.8], [0.0, 1.0]])
# distances of the rows of (A, B):            0.2          1.0          0.4          1.0
LABELS = torch.tensor([1, 1, 0, 0])


def test_hard_pair_mask_by_hand():
    distances = torch.tensor([0.2, 1.0, 0.4, 1.0])
    similar = LABELS.bool()
    # Smallest negative distance 0.4: positives above it are hard -> row 1 (1.0), not row 0.
    # Largest positive distance 1.0: negatives strictly below it are hard -> row 2 (0.4);
    # row 3 (1.0) ties with it and is easy.
    assert hard_pair_mask(distances, similar).tolist() == [False, True, True, False]


def test_one_sided_batches_use_the_mean():
    distances = torch.tensor([0.2, 1.0, 0.4, 1.0])  # mean 0.65
    # No negatives: positives above the mean positive distance are hard.
    assert hard_pair_mask(distances, torch.ones(4, dtype=torch.bool)).tolist() == [
        False, True, False, True]
    # No positives: negatives below the mean negative distance are hard.
    assert hard_pair_mask(distances, torch.zeros(4, dtype=torch.bool)).tolist() == [
        True, False, True, False]


def test_loss_by_hand(tiny_model):
    loss = OnlineContrastiveLoss(tiny_model, distance="cosine", margin=0.5)
    # hard pairs: row 1 positive, 1.0^2 / 2 = 0.5; row 2 negative, (0.5 - 0.4)^2 / 2 = 0.005.
    value = loss.compute_loss_from_embeddings([A, B], LABELS)
    assert value.item() == pytest.approx(0.505 / 4, abs=1e-6)
    summed = OnlineContrastiveLoss(tiny_model, margin=0.5, size_average=False)
    assert summed.compute_loss_from_embeddings([A, B], LABELS).item() == pytest.approx(0.505)
    # The full contrastive loss adds the easy pairs: row 0 pays 0.2^2/2 = 0.02, row 3 nothing.
    full = ContrastiveLoss(tiny_model, margin=0.5, size_average=False)
    assert full.compute_loss_from_embeddings([A, B], LABELS).item() == pytest.approx(0.525)


def test_one_sided_batches_by_hand(tiny_model):
    loss = OnlineContrastiveLoss(tiny_model, margin=0.5, size_average=False)
    # All similar: distances 0.2, 1.0, 0.4, 1.0, mean 0.65; hard rows 1 and 3: 0.5 + 0.5.
    assert loss.compute_loss_from_embeddings([A, B], torch.ones(4)).item() == pytest.approx(1.0)
    # All dissimilar: hard rows 0 and 2: (0.5 - 0.2)^2/2 + (0.5 - 0.4)^2/2 = 0.045 + 0.005.
    assert loss.compute_loss_from_embeddings([A, B], torch.zeros(4)).item() == pytest.approx(
        0.05, abs=1e-6)


def test_no_hard_pair_gives_zero_with_gradient(tiny_model):
    # Positive at D = 0.2, negative at D = 1.0: nothing is hard.
    a = A[:2].clone().requires_grad_(True)
    b = torch.tensor([[0.8, 0.6], [0.0, 1.0]])
    value = OnlineContrastiveLoss(tiny_model).compute_loss_from_embeddings(
        [a, b], torch.tensor([1, 0]))
    assert value.item() == 0.0
    value.backward()
    assert torch.equal(a.grad, torch.zeros_like(a))


def test_margin_edges(tiny_model):
    # Row 2 is a hard negative at D = 0.4: a margin of exactly 0.4 costs nothing, 0.3 neither,
    # 0.6 costs (0.6 - 0.4)^2 / 2 = 0.02. Row 1 (hard positive) always pays 0.5.
    def total(margin: float) -> float:
        loss = OnlineContrastiveLoss(tiny_model, margin=margin, size_average=False)
        return loss.compute_loss_from_embeddings([A, B], LABELS).item()

    assert total(0.4) == pytest.approx(0.5, abs=1e-6)
    assert total(0.3) == pytest.approx(0.5, abs=1e-6)
    assert total(0.6) == pytest.approx(0.52, abs=1e-6)


def test_bad_input(tiny_model):
    loss = OnlineContrastiveLoss(tiny_model)
    with pytest.raises(ValueError, match=r"labels must be 0 \(dissimilar\) or 1 .*\[3\]"):
        loss.compute_loss_from_embeddings([A, B], torch.tensor([1, 3, 0, 0]))
    with pytest.raises(ValueError, match="expects 2 feature groups .*got 1"):
        loss.compute_loss_from_embeddings([A], LABELS)
    with pytest.raises(ValueError, match="expects 4 labels .*got 3"):
        loss.compute_loss_from_embeddings([A, B], LABELS[:3])
    with pytest.raises(ValueError, match="distance must be one of"):
        OnlineContrastiveLoss(tiny_model, distance="dot")
    with pytest.raises(ValueError, match="margin must be a finite number >= 0, got inf"):
        OnlineContrastiveLoss(tiny_model, margin=float("inf"))


def test_config_is_json(tiny_model):
    loss = OnlineContrastiveLoss(tiny_model)
    assert json.loads(json.dumps(loss.get_config_dict())) == {
        "distance": "cosine", "margin": 0.5, "size_average": True}
    assert loss.input_format == "pair"


def test_gradients_flow(fresh_model, backward_grads, toy_classes):
    card, password = toy_classes
    loss = OnlineContrastiveLoss(fresh_model)
    backward_grads(loss, [card + password, card[1:] + card[:1] + card],
                   torch.tensor([1, 1, 1, 1, 0, 0, 0, 0]))


def test_training_lowers_loss(fresh_model, train_steps, toy_classes):
    card, password = toy_classes
    before, after = train_steps(OnlineContrastiveLoss(fresh_model),
                                [card + password, card[1:] + card[:1] + card],
                                torch.tensor([1, 1, 1, 1, 0, 0, 0, 0]))
    assert after < 0.5 * before, (before, after)
