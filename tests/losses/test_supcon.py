"""SupervisedContrastiveLoss against cross-entropies computed by hand."""

from __future__ import annotations

import json
import logging
import math

import pytest
import torch

from siamtext.losses import LOSSES, MultipleNegativesRankingLoss
from siamtext.losses.supcon import SupervisedContrastiveLoss, supervised_contrastive_loss

# e0 = (1, 0), e1 = (0.6, 0.8), e2 = (0, 1), e3 = (0.8, 0.6)
# cosines: e0.e1 = 0.6, e0.e2 = 0, e0.e3 = 0.8, e1.e2 = 0.8, e1.e3 = 0.96, e2.e3 = 0.6
EMB = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [0.8, 0.6]])


def ce(logits: list[float], target: int) -> float:
    return math.log(sum(math.exp(x) for x in logits)) - logits[target]


def test_one_positive_per_anchor_by_hand(tiny_model):
    loss = SupervisedContrastiveLoss(tiny_model, scale=2.0)
    # labels [0, 0, 1]: row 0 candidates (e1 1.2, e2 0) picks e1; row 1 (e0 1.2, e2 1.6)
    # picks e0; row 2 has no positive and is left out.
    value = loss.compute_loss_from_embeddings([EMB[:3]], torch.tensor([0, 0, 1]))
    assert value.item() == pytest.approx((ce([1.2, 0.0], 0) + ce([1.2, 1.6], 0)) / 2, abs=1e-6)


def test_several_positives_are_averaged_per_anchor(tiny_model):
    loss = SupervisedContrastiveLoss(tiny_model, scale=2.0)
    # labels [0, 0, 1, 0]: class 0 = rows 0, 1, 3.
    #   row 0: candidates (e1 1.2, e2 0, e3 1.6), positives e1 and e3
    #   row 1: candidates (e0 1.2, e2 1.6, e3 1.92), positives e0 and e3
    #   row 3: candidates (e0 1.6, e1 1.92, e2 1.2), positives e0 and e1
    #   row 2: no positive.
    row0 = (ce([1.2, 0, 1.6], 0) + ce([1.2, 0, 1.6], 2)) / 2
    row1 = (ce([1.2, 1.6, 1.92], 0) + ce([1.2, 1.6, 1.92], 2)) / 2
    row3 = (ce([1.6, 1.92, 1.2], 0) + ce([1.6, 1.92, 1.2], 1)) / 2
    value = loss.compute_loss_from_embeddings([EMB], torch.tensor([0, 0, 1, 0]))
    assert value.item() == pytest.approx((row0 + row1 + row3) / 3, abs=1e-6)


def test_pure_function_matches_the_class(tiny_model):
    labels = torch.tensor([3, 3, 7, 7])
    value = SupervisedContrastiveLoss(tiny_model, scale=5.0).compute_loss_from_embeddings(
        [EMB], labels)
    assert value.item() == pytest.approx(
        supervised_contrastive_loss(EMB @ EMB.T, labels, 5.0).item(), abs=1e-6)


def test_pairs_of_a_class_give_the_symmetric_in_batch_loss(tiny_model):
    # With two rows per class each row has one positive, its partner, among all other rows:
    # the plain cross-entropy of picking the partner, computed here row by row.
    generator = torch.Generator().manual_seed(0)
    emb = torch.nn.functional.normalize(torch.randn(6, 4, generator=generator))
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    sims = (emb @ emb.T * 3.0).tolist()
    expected = 0.0
    for i in range(6):
        partner = i ^ 1
        others = [j for j in range(6) if j != i]
        expected += ce([sims[i][j] for j in others], others.index(partner))
    value = SupervisedContrastiveLoss(tiny_model, scale=3.0).compute_loss_from_embeddings(
        [emb], labels)
    assert value.item() == pytest.approx(expected / 6, abs=1e-5)


def test_no_positive_gives_zero_with_gradient_and_a_warning(tiny_model, caplog):
    emb = EMB[:3].clone().requires_grad_()
    loss = SupervisedContrastiveLoss(tiny_model)
    with caplog.at_level(logging.WARNING):
        value = loss.compute_loss_from_embeddings([emb], torch.tensor([0, 1, 2]))
    assert value.item() == 0.0
    value.backward()
    assert emb.grad is not None
    assert "no two rows share a label" in caplog.text


def test_bad_settings(tiny_model):
    # the label checks every labelled loss shares: tests/losses/test_base.py
    with pytest.raises(ValueError, match="scale must be a finite number > 0"):
        SupervisedContrastiveLoss(tiny_model, scale=-1)
    with pytest.raises(ValueError, match=r"similarity must be one of \['cosine', 'dot'\]"):
        SupervisedContrastiveLoss(tiny_model, similarity="euclidean")


def test_config_and_registry(tiny_model):
    loss = SupervisedContrastiveLoss(tiny_model)
    assert json.loads(json.dumps(loss.get_config_dict())) == {"scale": 20.0,
                                                              "similarity": "cosine"}
    assert loss.input_format == "labelled"
    assert LOSSES["supervised_contrastive"] is SupervisedContrastiveLoss
    assert loss.scale == MultipleNegativesRankingLoss(tiny_model).scale


def test_gradients_flow(fresh_model, backward_grads, toy_classes):
    card, password = toy_classes
    backward_grads(SupervisedContrastiveLoss(fresh_model), [card + password],
                   torch.tensor([0] * 4 + [1] * 4))


def test_training_lowers_loss(fresh_model, train_steps, toy_classes):
    card, password = toy_classes
    before, after = train_steps(SupervisedContrastiveLoss(fresh_model), [card + password],
                                torch.tensor([0] * 4 + [1] * 4))
    # With three positives among seven candidates the loss cannot go below log 3 (all the
    # probability spread evenly over the positives): training closes most of the gap.
    floor = math.log(3)
    assert after - floor < 0.5 * (before - floor), (before, after)
