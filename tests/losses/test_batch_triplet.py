"""Batch-hard, batch-semi-hard and batch-all triplet losses against values computed by hand.

The embeddings are points on a line, ``(batch, 1)``, with Manhattan distance, so every
distance is an exact ``|x_i - x_j|``.
"""

from __future__ import annotations

import json
import logging

import pytest
import torch

from siamtext.losses.batch_triplet import (
    BatchAllTripletLoss,
    BatchHardTripletLoss,
    BatchSemiHardTripletLoss,
    batch_all_triplet_loss,
    batch_hard_triplet_loss,
    batch_semi_hard_triplet_loss,
)

LOSSES = [BatchHardTripletLoss, BatchSemiHardTripletLoss, BatchAllTripletLoss]

# x = 0, 2, 1, 4 with labels 0, 0, 1, 1. Distances |x_i - x_j|:
#          0  1  2  3
#   row 0 [0, 2, 1, 4]
#   row 1 [2, 0, 1, 2]
#   row 2 [1, 1, 0, 3]
#   row 3 [4, 2, 3, 0]
X = torch.tensor([[0.0], [2.0], [1.0], [4.0]])
LABELS = torch.tensor([0, 0, 1, 1])


def loss_of(cls, tiny_model, x=X, labels=LABELS, margin=1.0) -> float:
    loss = cls(tiny_model, distance="manhattan", margin=margin)
    return loss.compute_loss_from_embeddings([x], labels).item()


def test_batch_hard_by_hand(tiny_model):
    # margin 1; per anchor: farthest positive - closest negative + 1
    #   a0: d01 = 2, min(d02 = 1, d03 = 4) = 1 -> 2
    #   a1: d10 = 2, min(d12 = 1, d13 = 2) = 1 -> 2
    #   a2: d23 = 3, min(d20 = 1, d21 = 1) = 1 -> 3
    #   a3: d32 = 3, min(d30 = 4, d31 = 2) = 2 -> 2          mean 9 / 4 = 2.25
    assert loss_of(BatchHardTripletLoss, tiny_model) == pytest.approx(2.25)


def test_batch_semi_hard_by_hand(tiny_model):
    # per (anchor, positive): the closest negative strictly farther than the positive, else
    # the farthest negative; margin 1:
    #   (0, 1) d = 2: negatives 1, 4 -> 4 beyond:        2 - 4 + 1 = -1 -> 0
    #   (1, 0) d = 2: negatives 1, 2 -> none beyond, farthest 2: 2 - 2 + 1 = 1
    #   (2, 3) d = 3: negatives 1, 1 -> none beyond, farthest 1: 3 - 1 + 1 = 3
    #   (3, 2) d = 3: negatives 4, 2 -> 4 beyond:        3 - 4 + 1 = 0     mean 4 / 4 = 1
    assert loss_of(BatchSemiHardTripletLoss, tiny_model) == pytest.approx(1.0)


def test_batch_all_by_hand(tiny_model):
    # every (a, p, n), d(a, p) - d(a, n) + 1:
    #   (0,1,2) 2-1+1 = 2   (0,1,3) 2-4+1 < 0 -> 0
    #   (1,0,2) 2-1+1 = 2   (1,0,3) 2-2+1 = 1
    #   (2,3,0) 3-1+1 = 3   (2,3,1) 3-1+1 = 3
    #   (3,2,0) 3-4+1 = 0   (3,2,1) 3-2+1 = 2
    # sum 13 over the 6 non-zero triplets
    assert loss_of(BatchAllTripletLoss, tiny_model) == pytest.approx(13 / 6)


def test_pure_functions_match_the_classes(tiny_model):
    d = torch.cdist(X, X, p=1)
    assert batch_hard_triplet_loss(d, LABELS, 1.0).item() == pytest.approx(2.25)
    assert batch_semi_hard_triplet_loss(d, LABELS, 1.0).item() == pytest.approx(1.0)
    assert batch_all_triplet_loss(d, LABELS, 1.0).item() == pytest.approx(13 / 6)


def test_anchors_without_positive_are_left_out(tiny_model):
    # labels 0, 0, 1, 2: rows 2 and 3 are alone in their class. Batch hard keeps a0 and a1:
    #   a0: 2 - min(1, 4) + 1 = 2;  a1: 2 - min(1, 2) + 1 = 2   -> 2
    labels = torch.tensor([0, 0, 1, 2])
    assert loss_of(BatchHardTripletLoss, tiny_model, labels=labels) == pytest.approx(2.0)
    # semi hard: (0, 1): negatives 1, 4 -> 4: -1 -> 0; (1, 0): negatives 1, 2 -> farthest 2:
    # 2 - 2 + 1 = 1; mean over the 2 pairs = 0.5
    assert loss_of(BatchSemiHardTripletLoss, tiny_model, labels=labels) == pytest.approx(0.5)
    # all: (0,1,2) 2, (0,1,3) 0, (1,0,2) 2, (1,0,3) 1 -> 5 / 3
    assert loss_of(BatchAllTripletLoss, tiny_model, labels=labels) == pytest.approx(5 / 3)


def test_margin_edges(tiny_model):
    # x = 0, 1, 3, 4, labels 0, 0, 1, 1: batch hard, margin 1:
    #   a0: 1 - 3 + 1 = -1;  a1: 1 - 2 + 1 = 0 (exactly at the margin);  a2: 1 - 2 + 1 = 0;
    #   a3: 1 - 3 + 1 = -1   -> 0
    x = torch.tensor([[0.0], [1.0], [3.0], [4.0]])
    assert loss_of(BatchHardTripletLoss, tiny_model, x=x, margin=1.0) == 0.0
    assert loss_of(BatchHardTripletLoss, tiny_model, x=x, margin=0.5) == 0.0  # beyond
    # margin 1.5: a1 and a2 pay 0.5 each -> 1 / 4
    assert loss_of(BatchHardTripletLoss, tiny_model, x=x, margin=1.5) == pytest.approx(0.25)
    # batch all, margin 1: the only non-negative terms are exactly 0 -> 0 / max(0, 1) = 0
    assert loss_of(BatchAllTripletLoss, tiny_model, x=x, margin=1.0) == 0.0
    # semi hard, margin 1: (0,1) d=1, negatives 3, 4 -> 3: 1 - 3 + 1 < 0; (1,0) d=1,
    # negatives 2, 3 -> 2: 0 (at the margin); symmetric for (2,3), (3,2) -> 0
    assert loss_of(BatchSemiHardTripletLoss, tiny_model, x=x, margin=1.0) == 0.0


@pytest.mark.parametrize("cls", LOSSES)
def test_satisfied_batch_gives_zero_with_gradient(cls, tiny_model):
    x = torch.tensor([[0.0], [1.0], [3.0], [4.0]], requires_grad=True)
    loss = cls(tiny_model, distance="manhattan", margin=0.5)
    value = loss.compute_loss_from_embeddings([x], LABELS)
    assert value.item() == 0.0
    value.backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


@pytest.mark.parametrize("cls", LOSSES)
def test_single_class_is_an_error(cls, tiny_model):
    loss = cls(tiny_model)
    with pytest.raises(ValueError, match=r"all 4 rows of the batch have the same label \[3\].*"
                                         r"at least two classes"):
        loss.compute_loss_from_embeddings([X], torch.tensor([3, 3, 3, 3]))


@pytest.mark.parametrize("cls", LOSSES)
def test_all_distinct_labels_give_zero_and_a_warning(cls, tiny_model, caplog):
    loss = cls(tiny_model, distance="manhattan")
    with caplog.at_level(logging.WARNING, logger="siamtext.losses.batch_triplet"):
        value = loss.compute_loss_from_embeddings([X], torch.tensor([0, 1, 2, 3]))
        loss.compute_loss_from_embeddings([X], torch.tensor([0, 1, 2, 3]))
    assert value.item() == 0.0
    warnings = [r for r in caplog.records if "no positive pair" in r.getMessage()]
    assert len(warnings) == 1  # shown once per loss


@pytest.mark.parametrize("cls", LOSSES)
def test_bad_input(cls, tiny_model):
    loss = cls(tiny_model)
    with pytest.raises(ValueError, match=r"expects 1 feature groups for 'labelled' rows .*got 2"):
        loss.compute_loss_from_embeddings([X, X], LABELS)
    with pytest.raises(ValueError, match="needs labels"):
        loss.compute_loss_from_embeddings([X], None)
    with pytest.raises(ValueError, match="expects 4 labels .*got 3"):
        loss.compute_loss_from_embeddings([X], LABELS[:3])
    with pytest.raises(ValueError, match=r"labels must be class ids \(whole numbers\)"):
        loss.compute_loss_from_embeddings([X], torch.tensor([0.0, 0.5, 1.0, 1.0]))
    with pytest.raises(ValueError, match="margin must be a finite number >= 0"):
        cls(tiny_model, margin=-1.0)
    with pytest.raises(ValueError, match="distance must be one of"):
        cls(tiny_model, distance="squared")


def test_float_class_ids_are_accepted(tiny_model):
    assert loss_of(BatchHardTripletLoss, tiny_model, labels=LABELS.float()) == (
        pytest.approx(2.25))


def test_default_distance_works_on_unit_vectors(tiny_model):
    # Unit vectors at angles 0, 10, 90, 100 degrees: classes {0, 1} and {2, 3} are separated
    # by far more than the default cosine margin 0.1, so the defaults give 0; swapping the
    # labels makes the hardest triplets violate it.
    angles = torch.deg2rad(torch.tensor([0.0, 10.0, 90.0, 100.0]))
    unit = torch.stack([angles.cos(), angles.sin()], dim=1)
    for cls in LOSSES:
        loss = cls(tiny_model)
        assert loss.distance == "cosine" and loss.margin == 0.1
        assert loss.compute_loss_from_embeddings([unit], LABELS).item() == 0.0
        assert loss.compute_loss_from_embeddings([unit], torch.tensor([0, 1, 0, 1])).item() > 0.1


@pytest.mark.parametrize("cls", LOSSES)
def test_config_is_json(cls, tiny_model):
    loss = cls(tiny_model, distance="euclidean", margin=0.3)
    assert json.loads(json.dumps(loss.get_config_dict())) == {"distance": "euclidean",
                                                              "margin": 0.3}
    assert loss.input_format == "labelled"
    assert "Hermans" in cls.__doc__ or "FaceNet" in cls.__doc__


@pytest.mark.parametrize("cls", LOSSES)
def test_gradients_flow(cls, fresh_model, backward_grads, toy_classes):
    card, password = toy_classes
    backward_grads(cls(fresh_model, margin=1.0), [card + password],
                   torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]))


@pytest.mark.parametrize("cls", LOSSES)
def test_training_lowers_loss(cls, fresh_model, train_steps, toy_classes):
    card, password = toy_classes
    before, after = train_steps(cls(fresh_model), [card + password],
                                torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]))
    assert after < 0.5 * before, (before, after)


@pytest.mark.integration
@pytest.mark.parametrize("name", ["BatchHardTripletLoss", "BatchSemiHardTripletLoss",
                                  "BatchAllTripletLoss"])
def test_matches_sentence_transformers(name, tiny_model):
    # Where every anchor has a positive, the three losses equal sentence-transformers' on the
    # same Euclidean distances and margin (its batch hard also counts anchors without one).
    st_losses = pytest.importorskip("sentence_transformers.sentence_transformer.losses")
    import siamtext.losses.batch_triplet as ours

    torch.manual_seed(0)
    emb = torch.nn.functional.normalize(torch.randn(12, 5), dim=-1)
    labels = torch.tensor([0, 1, 2] * 4)
    theirs = getattr(st_losses, name)(None, margin=0.3)
    method = getattr(theirs, {"BatchHardTripletLoss": "batch_hard_triplet_loss",
                              "BatchSemiHardTripletLoss": "batch_semi_hard_triplet_loss",
                              "BatchAllTripletLoss": "batch_all_triplet_loss"}[name])
    expected = method(labels, emb).item()
    mine = getattr(ours, name)(tiny_model, distance="euclidean", margin=0.3)
    assert mine.compute_loss_from_embeddings([emb], labels).item() == pytest.approx(expected,
                                                                                    rel=1e-5)
