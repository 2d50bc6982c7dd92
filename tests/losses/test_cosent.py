"""CoSENTLoss against values computed by hand."""

from __future__ import annotations

import json
import math

import pytest
import torch

from siamtext.losses.cosent import CoSENTLoss, cosent_loss

# First vectors all (1, 0); second vectors give cosines 0.8, 0.6, 0.0.
A = torch.tensor([[1.0, 0.0]] * 3)
B = torch.tensor([[0.8, 0.6], [0.6, 0.8], [0.0, 1.0]])


def test_well_ranked_batch_by_hand(tiny_model):
    loss = CoSENTLoss(tiny_model, scale=1.0)
    # scores 5 > 3 > 1, cosines 0.8 > 0.6 > 0: pairs (i, k) with s_i > s_k pay
    # exp(cos_k - cos_i): (0,1) e^-0.2, (0,2) e^-0.8, (1,2) e^-0.6
    expected = math.log(1 + math.exp(-0.2) + math.exp(-0.8) + math.exp(-0.6))
    value = loss.compute_loss_from_embeddings([A, B], torch.tensor([5.0, 3.0, 1.0]))
    assert value.item() == pytest.approx(expected, abs=1e-6)


def test_inverted_batch_by_hand(tiny_model):
    loss = CoSENTLoss(tiny_model)  # scale 20
    # scores 1 < 3 < 5 against cosines 0.8 > 0.6 > 0: (1,0) 20 * 0.2 = 4, (2,0) 20 * 0.8 = 16,
    # (2,1) 20 * 0.6 = 12
    expected = math.log(1 + math.exp(4) + math.exp(16) + math.exp(12))
    value = loss.compute_loss_from_embeddings([A, B], torch.tensor([1.0, 3.0, 5.0]))
    assert value.item() == pytest.approx(expected, rel=1e-6)


def test_ties_impose_nothing(tiny_model):
    loss = CoSENTLoss(tiny_model, scale=1.0)
    assert loss.compute_loss_from_embeddings([A, B], torch.tensor([2.0, 2.0, 2.0])).item() == 0.0
    # scores 3, 3, 1: only (0, 2) and (1, 2): e^-0.8 + e^-0.6
    value = loss.compute_loss_from_embeddings([A, B], torch.tensor([3.0, 3.0, 1.0]))
    assert value.item() == pytest.approx(math.log(1 + math.exp(-0.8) + math.exp(-0.6)), abs=1e-6)


def test_only_the_order_of_scores_matters(tiny_model):
    loss = CoSENTLoss(tiny_model)
    sts = loss.compute_loss_from_embeddings([A, B], torch.tensor([4.5, 2.0, 0.5]))
    unit = loss.compute_loss_from_embeddings([A, B], torch.tensor([0.9, 0.4, 0.1]))
    ints = loss.compute_loss_from_embeddings([A, B], torch.tensor([2, 1, 0]))
    assert sts.item() == pytest.approx(unit.item()) == pytest.approx(ints.item())


def test_pure_function_matches_a_double_loop():
    torch.manual_seed(0)
    cosines, scores = torch.rand(7) * 2 - 1, torch.randint(0, 4, (7,)).float()
    terms = [math.exp(5 * (cosines[k] - cosines[i]).item())
             for i in range(7) for k in range(7) if scores[i] > scores[k]]
    assert cosent_loss(cosines, scores, 5.0).item() == pytest.approx(math.log(1 + sum(terms)),
                                                                     rel=1e-5)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_scores(tiny_model, bad):
    loss = CoSENTLoss(tiny_model)
    with pytest.raises(ValueError, match=r"scores must be finite numbers, got NaN or inf at rows "
                                         r"\[1\]"):
        loss.compute_loss_from_embeddings([A, B], torch.tensor([1.0, bad, 0.0]))


def test_bad_input(tiny_model):
    loss = CoSENTLoss(tiny_model)
    with pytest.raises(ValueError, match=r"expects 2 feature groups for 'pair_score' rows"):
        loss.compute_loss_from_embeddings([A, B, B], torch.tensor([1.0, 2.0, 0.0]))
    with pytest.raises(ValueError, match="expects 3 labels .*got 2"):
        loss.compute_loss_from_embeddings([A, B], torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="needs labels"):
        loss.compute_loss_from_embeddings([A, B], None)
    with pytest.raises(ValueError, match="scale must be a finite number > 0, got -1"):
        CoSENTLoss(tiny_model, scale=-1)


def test_config_is_json(tiny_model):
    loss = CoSENTLoss(tiny_model, scale=10)
    assert json.loads(json.dumps(loss.get_config_dict())) == {"scale": 10.0}
    assert loss.input_format == "pair_score"


@pytest.mark.integration
def test_matches_sentence_transformers(tiny_model):
    st_losses = pytest.importorskip("sentence_transformers.sentence_transformer.losses")
    torch.manual_seed(1)
    a, b, scores = torch.randn(9, 4), torch.randn(9, 4), torch.rand(9) * 5
    theirs = st_losses.CoSENTLoss.__new__(st_losses.CoSENTLoss)  # no model needed
    torch.nn.Module.__init__(theirs)
    theirs.scale, theirs.similarity_fct = 20.0, torch.nn.functional.cosine_similarity
    expected = theirs.compute_loss_from_embeddings([a, b], scores).item()
    mine = CoSENTLoss(tiny_model).compute_loss_from_embeddings([a, b], scores).item()
    assert mine == pytest.approx(expected, rel=1e-5)


def test_gradients_flow(fresh_model, backward_grads, toy_classes):
    card, password = toy_classes
    backward_grads(CoSENTLoss(fresh_model), [card, [card[1], password[0], card[3], password[1]]],
                   torch.tensor([4.0, 0.5, 5.0, 1.0]))


def test_training_lowers_loss(fresh_model, train_steps, toy_classes):
    card, password = toy_classes
    columns = [card + password, card[1:] + card[:1] + card]
    scores = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0, 0.5, 0.2, 0.0])
    before, after = train_steps(CoSENTLoss(fresh_model), columns, scores, steps=15)
    assert after < 0.5 * before, (before, after)
