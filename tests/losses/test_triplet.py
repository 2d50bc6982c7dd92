"""TripletLoss (FaceNet) against values computed by hand."""

from __future__ import annotations

import json
import math

import pytest
import torch

from siamtext.losses.triplet import TripletLoss

# Two rows of unit vectors in 2-d:
#   row 0: a = (1, 0), p = (0.8, 0.6), n = (0, 1)
#          |a - p|^2 = 0.2^2 + 0.6^2 = 0.4      |a - n|^2 = 1 + 1 = 2
#   row 1: a = (1, 0), p = (0, 1),     n = (0.6, 0.8)
#          |a - p|^2 = 2                          |a - n|^2 = 0.4^2 + 0.8^2 = 0.8
ANCHOR = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
POSITIVE = torch.tensor([[0.8, 0.6], [0.0, 1.0]])
NEGATIVE = torch.tensor([[0.0, 1.0], [0.6, 0.8]])


def test_squared_euclidean_by_hand(tiny_model):
    loss = TripletLoss(tiny_model)  # euclidean, margin 0.2, squared: FaceNet
    # row 0: max(0, 0.4 - 2 + 0.2) = 0;  row 1: max(0, 2 - 0.8 + 0.2) = 1.4;  mean 0.7
    value = loss.compute_loss_from_embeddings([ANCHOR, POSITIVE, NEGATIVE], None)
    assert value.item() == pytest.approx(0.7, abs=1e-5)


def test_plain_and_cosine_distances_by_hand(tiny_model):
    plain = TripletLoss(tiny_model, squared=False)
    # row 1: sqrt(2) - sqrt(0.8) + 0.2; row 0: sqrt(0.4) - sqrt(2) + 0.2 < 0 -> 0
    expected = (math.sqrt(2) - math.sqrt(0.8) + 0.2) / 2
    assert plain.compute_loss_from_embeddings([ANCHOR, POSITIVE, NEGATIVE], None).item() == (
        pytest.approx(expected, abs=1e-5))
    cosine = TripletLoss(tiny_model, distance="cosine", margin=0.2)
    # cosine distances: row 1 d(a, p) = 1, d(a, n) = 1 - 0.6 = 0.4: 1 - 0.16 + 0.2 = 1.04
    # row 0: d(a, p) = 0.2, d(a, n) = 1: 0.04 - 1 + 0.2 < 0 -> 0
    assert cosine.compute_loss_from_embeddings([ANCHOR, POSITIVE, NEGATIVE], None).item() == (
        pytest.approx(1.04 / 2, abs=1e-6))


def test_margin_edges(tiny_model):
    # cosine, not squared: a = p = (1, 0) -> d(a, p) = 0; n = (0, 1) -> d(a, n) = 1.
    a = torch.tensor([[1.0, 0.0]])
    n = torch.tensor([[0.0, 1.0]])

    def value(margin: float) -> float:
        loss = TripletLoss(tiny_model, distance="cosine", margin=margin, squared=False)
        return loss.compute_loss_from_embeddings([a, a, n], None).item()

    assert value(1.0) == 0.0  # exactly at the margin: 0 - 1 + 1 = 0
    assert value(0.5) == 0.0  # beyond it
    assert value(1.5) == pytest.approx(0.5)  # inside: 0 - 1 + 1.5


def test_labels_are_ignored(tiny_model):
    loss = TripletLoss(tiny_model)
    groups = [ANCHOR, POSITIVE, NEGATIVE]
    assert loss.compute_loss_from_embeddings(groups, torch.tensor([7, 8])).item() == (
        loss.compute_loss_from_embeddings(groups, None).item())


def test_bad_input(tiny_model):
    loss = TripletLoss(tiny_model)
    with pytest.raises(ValueError, match=r"expects 3 feature groups for 'triplet' rows .*got 2"):
        loss.compute_loss_from_embeddings([ANCHOR, POSITIVE], None)
    with pytest.raises(ValueError, match=r"embeddings\[2\] has shape \(1, 2\)"):
        loss.compute_loss_from_embeddings([ANCHOR, POSITIVE, NEGATIVE[:1]], None)
    with pytest.raises(ValueError, match="margin must be a finite number >= 0"):
        TripletLoss(tiny_model, margin=-0.1)
    with pytest.raises(ValueError, match="distance must be one of"):
        TripletLoss(tiny_model, distance="l2")


def test_config_is_json(tiny_model):
    loss = TripletLoss(tiny_model)
    assert json.loads(json.dumps(loss.get_config_dict())) == {
        "distance": "euclidean", "margin": 0.2, "squared": True}
    assert loss.input_format == "triplet"


def test_gradients_flow(fresh_model, backward_grads, toy_classes):
    card, password = toy_classes
    loss = TripletLoss(fresh_model, margin=1.0)  # large enough that every row is active
    assert backward_grads(loss, [card, card[1:] + card[:1], password], None) > 0


def test_training_lowers_loss(fresh_model, train_steps, toy_classes):
    card, password = toy_classes
    columns = [card + password, card[1:] + card[:1] + password[1:] + password[:1],
               password + card]
    before, after = train_steps(TripletLoss(fresh_model), columns, None)
    assert after < 0.5 * before, (before, after)
