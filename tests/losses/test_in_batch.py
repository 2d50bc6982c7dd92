"""MultipleNegativesRankingLoss against cross-entropies computed by hand."""

from __future__ import annotations

import json
import math

import pytest
import torch

from siamtext.losses.in_batch import MultipleNegativesRankingLoss

# anchors a0 = (1, 0), a1 = (0, 1); positives p0 = (1, 0), p1 = (0.6, 0.8)
# cosines: a0.p0 = 1, a0.p1 = 0.6, a1.p0 = 0, a1.p1 = 0.8
ANCHORS = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
POSITIVES = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
# hard negatives n0 = (0, 1), n1 = (1, 0): a0.n0 = 0, a0.n1 = 1, a1.n0 = 1, a1.n1 = 0
NEGATIVES = torch.tensor([[0.0, 1.0], [1.0, 0.0]])


def ce(logits: list[float], target: int) -> float:
    return math.log(sum(math.exp(x) for x in logits)) - logits[target]


def test_in_batch_negatives_by_hand(tiny_model):
    loss = MultipleNegativesRankingLoss(tiny_model, scale=2.0)
    # scale 2: row 0 logits [2, 1.2] target 0; row 1 logits [0, 1.6] target 1
    expected = (ce([2, 1.2], 0) + ce([0, 1.6], 1)) / 2
    value = loss.compute_loss_from_embeddings([ANCHORS, POSITIVES], None)
    assert value.item() == pytest.approx(expected, abs=1e-6)
    # = (log(1 + e^-0.8) + log(1 + e^-1.6)) / 2
    assert expected == pytest.approx((math.log1p(math.exp(-0.8)) + math.log1p(math.exp(-1.6))) / 2)


def test_hard_negatives_by_hand(tiny_model):
    loss = MultipleNegativesRankingLoss(tiny_model, scale=2.0)
    # columns p0, p1, n0, n1: row 0 [2, 1.2, 0, 2]; row 1 [0, 1.6, 2, 0]
    expected = (ce([2, 1.2, 0, 2], 0) + ce([0, 1.6, 2, 0], 1)) / 2
    value = loss.compute_loss_from_embeddings([ANCHORS, POSITIVES, NEGATIVES], None)
    assert value.item() == pytest.approx(expected, abs=1e-6)
    # two hard-negative columns: n0 twice -> row 0 [2, 1.2, 0, 2, 0, 2], row 1 [0, 1.6, 2, 0, 2, 0]
    twice = loss.compute_loss_from_embeddings([ANCHORS, POSITIVES, NEGATIVES, NEGATIVES], None)
    assert twice.item() == pytest.approx(
        (ce([2, 1.2, 0, 2, 0, 2], 0) + ce([0, 1.6, 2, 0, 2, 0], 1)) / 2, abs=1e-6)


def test_labels_mask_same_class_positives(tiny_model):
    loss = MultipleNegativesRankingLoss(tiny_model, scale=2.0)
    # Same class, hard negatives present: only the other row's positive is masked:
    #   row 0 [2, -inf, 0, 2]; row 1 [-inf, 1.6, 2, 0]
    value = loss.compute_loss_from_embeddings([ANCHORS, POSITIVES, NEGATIVES],
                                              torch.tensor([5, 5]))
    assert value.item() == pytest.approx((ce([2, 0, 2], 0) + ce([1.6, 2, 0], 0)) / 2, abs=1e-6)
    # Different classes: nothing is masked.
    different = loss.compute_loss_from_embeddings([ANCHORS, POSITIVES], torch.tensor([5, 6]))
    plain = loss.compute_loss_from_embeddings([ANCHORS, POSITIVES], None)
    assert different.item() == pytest.approx(plain.item())


def test_a_batch_of_one_class_without_hard_negatives_gives_zero(tiny_model):
    # Masking leaves each anchor only its own positive: cross-entropy over one logit, 0, and
    # no gradient. A sampler can draw such a batch when classes are fewer than rows; data of
    # one class is refused before training (tests/data/test_prepare.py).
    loss = MultipleNegativesRankingLoss(tiny_model)
    anchors = ANCHORS.clone().requires_grad_(True)
    value = loss.compute_loss_from_embeddings([anchors, POSITIVES], torch.tensor([5, 5]))
    assert value.item() == 0.0
    value.backward()
    assert anchors.grad is not None and not anchors.grad.any()


def test_dot_product_differs_from_cosine_on_unnormalised_vectors(tiny_model):
    anchors = ANCHORS * 2  # dot products doubled, cosines unchanged
    dot = MultipleNegativesRankingLoss(tiny_model, scale=1.0, similarity="dot")
    cosine = MultipleNegativesRankingLoss(tiny_model, scale=1.0)
    # dot: row 0 [2, 1.2], row 1 [0, 1.6]
    assert dot.compute_loss_from_embeddings([anchors, POSITIVES], None).item() == pytest.approx(
        (ce([2, 1.2], 0) + ce([0, 1.6], 1)) / 2, abs=1e-6)
    # cosine: row 0 [1, 0.6], row 1 [0, 0.8]
    assert cosine.compute_loss_from_embeddings([anchors, POSITIVES], None).item() == (
        pytest.approx((ce([1, 0.6], 0) + ce([0, 0.8], 1)) / 2, abs=1e-6))


def test_bad_input(tiny_model):
    loss = MultipleNegativesRankingLoss(tiny_model)
    with pytest.raises(ValueError, match=r"expects at least 2 feature groups .*got 1"):
        loss.compute_loss_from_embeddings([ANCHORS], None)
    with pytest.raises(ValueError, match=r"embeddings\[2\] has shape \(1, 2\)"):
        loss.compute_loss_from_embeddings([ANCHORS, POSITIVES, NEGATIVES[:1]], None)
    with pytest.raises(ValueError, match="expects 2 labels .*got 3"):
        loss.compute_loss_from_embeddings([ANCHORS, POSITIVES], torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="scale must be a finite number > 0, got 0"):
        MultipleNegativesRankingLoss(tiny_model, scale=0)
    with pytest.raises(ValueError, match=r"similarity must be one of \['cosine', 'dot'\]"):
        MultipleNegativesRankingLoss(tiny_model, similarity="euclidean")


def test_config_is_json(tiny_model):
    loss = MultipleNegativesRankingLoss(tiny_model)
    assert json.loads(json.dumps(loss.get_config_dict())) == {"scale": 20.0,
                                                              "similarity": "cosine"}
    assert loss.input_format == "anchor_positive"


def test_gradients_flow(fresh_model, backward_grads, toy_classes):
    card, password = toy_classes
    loss = MultipleNegativesRankingLoss(fresh_model)
    backward_grads(loss, [[card[0], password[0]], [card[1], password[1]],
                          [password[2], card[2]]], None)


def test_training_lowers_loss(fresh_model, train_steps, toy_classes):
    card, password = toy_classes
    columns = [card[:2] + password[:2], card[2:] + password[2:]]
    labels = torch.tensor([0, 0, 1, 1])
    before, after = train_steps(MultipleNegativesRankingLoss(fresh_model), columns, labels)
    assert after < 0.5 * before, (before, after)
