"""ContrastiveLoss against values computed by hand."""

from __future__ import annotations

import json
import math

import pytest
import torch

from siamtext.losses.contrastive import ContrastiveLoss


def t(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


# Three pairs of unit vectors in 2-d:
#   row 0: (1, 0) vs (0, 1)      cos = 0    cosine D = 1    euclidean D = sqrt(2)
#   row 1: (1, 0) vs (0.6, 0.8)  cos = 0.6  cosine D = 0.4  euclidean D = sqrt(0.4^2 + 0.8^2)
#                                                                      = sqrt(0.8)
#   row 2: (0, 1) vs (0.6, 0.8)  cos = 0.8  cosine D = 0.2  manhattan D = 0.6 + 0.2 = 0.8
A = t([[1, 0], [1, 0], [0, 1]])
B = t([[0, 1], [0.6, 0.8], [0.6, 0.8]])


def test_cosine_by_hand(tiny_model):
    loss = ContrastiveLoss(tiny_model, distance="cosine", margin=0.5)
    # labels 1, 0, 0:
    #   row 0 similar:     D^2 / 2 = 1 / 2                  = 0.5
    #   row 1 dissimilar:  max(0, 0.5 - 0.4)^2 / 2 = 0.01/2 = 0.005
    #   row 2 dissimilar:  max(0, 0.5 - 0.2)^2 / 2 = 0.09/2 = 0.045
    value = loss.compute_loss_from_embeddings([A, B], torch.tensor([1, 0, 0]))
    assert value.item() == pytest.approx((0.5 + 0.005 + 0.045) / 3, abs=1e-6)
    summed = ContrastiveLoss(tiny_model, margin=0.5, size_average=False)
    assert summed.compute_loss_from_embeddings([A, B], torch.tensor([1, 0, 0])).item() == (
        pytest.approx(0.55, abs=1e-6))


def test_euclidean_and_manhattan_by_hand(tiny_model):
    labels = torch.tensor([1, 0, 1])
    euclid = ContrastiveLoss(tiny_model, distance="euclidean", margin=1.0, size_average=False)
    # row 0 similar: sqrt(2)^2 / 2 = 1; row 1 dissimilar: (1 - sqrt(0.8))^2 / 2;
    # row 2 similar: |(0, 1) - (0.6, 0.8)|^2 / 2 = (0.36 + 0.04) / 2 = 0.2
    expected = 1.0 + (1 - math.sqrt(0.8)) ** 2 / 2 + 0.2
    assert euclid.compute_loss_from_embeddings([A, B], labels).item() == pytest.approx(
        expected, abs=1e-5)
    manhattan = ContrastiveLoss(tiny_model, distance="manhattan", margin=1.5, size_average=False)
    # row 0 similar: D = 2, 4/2 = 2; row 1 dissimilar: D = 0.4 + 0.8 = 1.2, (1.5 - 1.2)^2/2 = 0.045
    # row 2 similar: D = 0.8, 0.64 / 2 = 0.32
    assert manhattan.compute_loss_from_embeddings([A, B], labels).item() == pytest.approx(
        2 + 0.045 + 0.32, abs=1e-5)


def test_label_dtypes_agree(tiny_model):
    loss = ContrastiveLoss(tiny_model)
    ints = loss.compute_loss_from_embeddings([A, B], torch.tensor([1, 0, 0]))
    floats = loss.compute_loss_from_embeddings([A, B], torch.tensor([1.0, 0.0, 0.0]))
    bools = loss.compute_loss_from_embeddings([A, B], torch.tensor([True, False, False]))
    as_list = loss.compute_loss_from_embeddings([A, B], [1, 0, 0])
    assert ints.item() == floats.item() == bools.item() == as_list.item()


def test_margin_edges(tiny_model):
    # Dissimilar pair at cosine distance 0.4 (row 1 above).
    pair = [A[1:2], B[1:2]]
    dissimilar = torch.tensor([0])
    # Margin exactly at the distance: max(0, 0.4 - 0.4) = 0, and so is the gradient.
    at = ContrastiveLoss(tiny_model, margin=0.4)
    a = pair[0].clone().requires_grad_(True)
    value = at.compute_loss_from_embeddings([a, pair[1]], dissimilar)
    assert value.item() == pytest.approx(0.0, abs=1e-7)
    value.backward()
    assert a.grad.abs().max().item() == pytest.approx(0.0, abs=1e-5)
    # Beyond the margin: the pair is far enough, costs nothing.
    assert ContrastiveLoss(tiny_model, margin=0.3).compute_loss_from_embeddings(
        pair, dissimilar).item() == 0.0
    # Just inside: (0.5 - 0.4)^2 / 2 = 0.005.
    assert ContrastiveLoss(tiny_model, margin=0.5).compute_loss_from_embeddings(
        pair, dissimilar).item() == pytest.approx(0.005, abs=1e-6)
    # Margin 0: dissimilar pairs never pay; similar pairs at distance 0 never pay.
    assert ContrastiveLoss(tiny_model, margin=0.0).compute_loss_from_embeddings(
        pair, dissimilar).item() == 0.0
    same = ContrastiveLoss(tiny_model).compute_loss_from_embeddings([A, A], torch.ones(3))
    assert same.item() == pytest.approx(0.0, abs=1e-7)


def test_paper_convention_mapping(tiny_model):
    # The paper's Y = 0 for similar is the dataset's label 1 (Y = 1 - label): a similar pair
    # pays D^2/2 whatever the margin.
    loss = ContrastiveLoss(tiny_model, margin=0.0)
    value = loss.compute_loss_from_embeddings([A[:1], B[:1]], torch.tensor([1]))
    assert value.item() == pytest.approx(0.5)


@pytest.mark.parametrize("labels, shown", [
    (torch.tensor([1, 2, -1]), r"\[-1, 2\]"),
    (torch.tensor([0.5, 1.0, 0.0]), r"\[0\.5\]"),
    (torch.tensor([float("nan"), 1.0, 0.0]), "nan"),
])
def test_bad_labels(tiny_model, labels, shown):
    loss = ContrastiveLoss(tiny_model)
    with pytest.raises(ValueError, match=r"labels must be 0 \(dissimilar\) or 1.*" + shown):
        loss.compute_loss_from_embeddings([A, B], labels)


def test_bad_shapes(tiny_model):
    loss = ContrastiveLoss(tiny_model)
    with pytest.raises(ValueError, match=r"expects 2 feature groups .*got 3"):
        loss.compute_loss_from_embeddings([A, B, B], torch.tensor([1, 0, 0]))
    with pytest.raises(ValueError, match=r"embeddings\[1\] has shape \(2, 2\).*\(3, 2\)"):
        loss.compute_loss_from_embeddings([A, B[:2]], torch.tensor([1, 0, 0]))
    with pytest.raises(ValueError, match="expects 3 labels .*got 2"):
        loss.compute_loss_from_embeddings([A, B], torch.tensor([1, 0]))
    with pytest.raises(ValueError, match="needs labels .*got None"):
        loss.compute_loss_from_embeddings([A, B], None)
    with pytest.raises(ValueError, match="batch is empty"):
        loss.compute_loss_from_embeddings([A[:0], B[:0]], torch.tensor([]))
    with pytest.raises(ValueError, match=r"embeddings\[0\] must be a 2-D"):
        loss.compute_loss_from_embeddings([A[0], B[0]], torch.tensor([1]))


def test_bad_parameters(tiny_model):
    with pytest.raises(ValueError, match="distance must be one of .*'hamming'"):
        ContrastiveLoss(tiny_model, distance="hamming")
    with pytest.raises(ValueError, match="margin must be a finite number >= 0, got -1"):
        ContrastiveLoss(tiny_model, margin=-1)
    with pytest.raises(ValueError, match="margin must be .*got 'big'"):
        ContrastiveLoss(tiny_model, margin="big")


def test_half_precision_embeddings(tiny_model):
    loss = ContrastiveLoss(tiny_model)
    value = loss.compute_loss_from_embeddings([A.bfloat16(), B.bfloat16()], torch.tensor([1, 0, 0]))
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(0.55 / 3, abs=1e-2)


def test_config_is_json(tiny_model):
    loss = ContrastiveLoss(tiny_model, distance="euclidean", margin=1.0)
    config = json.loads(json.dumps(loss.get_config_dict()))
    assert config == {"distance": "euclidean", "margin": 1.0, "size_average": True}
    assert loss.input_format == "pair"
    assert "margin=1.0" in repr(loss)


def test_gradients_flow(fresh_model, backward_grads, toy_classes):
    card, password = toy_classes
    loss = ContrastiveLoss(fresh_model)
    backward_grads(loss, [card[:2] + password[:2], card[2:] + card[:2]], torch.tensor([1, 1, 0, 0]))


def test_training_lowers_loss(fresh_model, train_steps, toy_classes):
    card, password = toy_classes
    columns = [card + password, card[1:] + card[:1] + card]
    labels = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0])
    before, after = train_steps(ContrastiveLoss(fresh_model), columns, labels)
    assert after < 0.5 * before, (before, after)


def test_forward_rejects_wrong_group_count_before_embedding():
    class Tower:
        calls = 0

        def __call__(self, **features):
            Tower.calls += 1
            return features["x"]

    loss = ContrastiveLoss(Tower())
    with pytest.raises(ValueError, match=r"expects 2 feature groups for 'pair' rows"):
        loss([{"x": A}], torch.tensor([1, 0, 0]))
    assert Tower.calls == 0
    assert loss([{"x": A}, {"x": B}], torch.tensor([1, 0, 0])).item() == pytest.approx(0.55 / 3)
    assert Tower.calls == 2
