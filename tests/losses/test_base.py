"""The SiamLoss base class, the shared checks and the loss registry."""

from __future__ import annotations

import json

import pytest
import torch

import siamtext.losses as losses
from siamtext.losses.base import (
    GROUPS,
    ROWS,
    SiamLoss,
    check_binary_labels,
    check_embeddings,
    check_group_count,
    check_labels,
    check_margin,
    check_scale,
    masked_mean,
    readable,
)


def test_every_loss_is_exported_and_registered():
    for name, cls in losses.LOSSES.items():
        assert cls.__name__ in losses.__all__, name
        assert issubclass(cls, SiamLoss)
        assert cls.input_format in GROUPS and cls.input_format in ROWS
        assert cls.__doc__ and "Examples:" in cls.__doc__ and "Defaults:" in cls.__doc__
    assert set(GROUPS) == set(ROWS) == {"pair", "pair_score", "triplet", "labelled",
                                        "anchor_positive"}


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_default_config_is_json(name, tiny_model):
    loss = losses.LOSSES[name](tiny_model)
    config = loss.get_config_dict()
    assert json.loads(json.dumps(config)) == config
    assert loss.model is tiny_model


@pytest.mark.parametrize("count, fmt, ok", [
    (2, "pair", True), (3, "pair", False), (1, "labelled", True), (2, "labelled", False),
    (3, "triplet", True), (2, "triplet", False), (2, "pair_score", True),
    (2, "anchor_positive", True), (5, "anchor_positive", True), (1, "anchor_positive", False),
])
def test_group_count(count, fmt, ok):
    if ok:
        check_group_count(count, fmt, "L")
    else:
        with pytest.raises(ValueError, match=rf"L expects .* feature groups for '{fmt}' rows"):
            check_group_count(count, fmt, "L")


def test_check_embeddings():
    x = torch.zeros(3, 2)
    assert check_embeddings([x.half(), x.bfloat16()], "pair", "L")[0].dtype == torch.float32
    assert check_embeddings([x, x], "pair", "L")[0] is x
    with pytest.raises(ValueError, match=r"embeddings\[1\] must be a 2-D \(batch, dim\) tensor, "
                                         r"got list"):
        check_embeddings([x, [1, 2]], "pair", "L")
    with pytest.raises(ValueError, match=r"embeddings\[1\] has shape \(3, 4\)"):
        check_embeddings([x, torch.zeros(3, 4)], "pair", "L")
    with pytest.raises(ValueError, match="the batch is empty"):
        check_embeddings([x[:0]], "labelled", "L")


def test_check_labels_and_binary():
    labels = check_labels([[1], [0]], 2, "L", torch.device("cpu"))
    assert labels.tolist() == [1, 0]
    assert check_binary_labels(labels, "L").tolist() == [True, False]
    assert check_binary_labels(torch.tensor([True, False]), "L").tolist() == [True, False]
    with pytest.raises(ValueError, match=r"labels must be 0 \(dissimilar\) or 1 \(similar\), "
                                         r"got other values \[2\]"):
        check_binary_labels(torch.tensor([1, 2, 2]), "L")


def test_check_margin_and_scale():
    assert check_margin(0) == 0.0 and check_scale(1) == 1.0
    for bad in (True, -0.5, float("nan"), float("inf"), "1"):
        with pytest.raises(ValueError, match="margin must be a finite number >= 0"):
            check_margin(bad)
    for bad in (0, -1.0, float("nan"), None):
        with pytest.raises(ValueError, match="scale must be a finite number > 0"):
            check_scale(bad)


def test_masked_mean_averages_the_masked_values_and_keeps_the_graph():
    x = torch.tensor([1.0, 2.0, 6.0], requires_grad=True)
    value = masked_mean(x, torch.tensor([True, False, True]))
    assert value.item() == pytest.approx(3.5)  # (1 + 6) / 2
    value.backward()
    assert x.grad.tolist() == [0.5, 0.0, 0.5]


def test_masked_mean_of_nothing_is_an_attached_zero():
    x = torch.tensor([float("inf"), 2.0], requires_grad=True)  # masked values never leak
    value = masked_mean(x, torch.tensor([False, False]))
    assert value.item() == 0.0
    value.backward()
    assert x.grad.tolist() == [0.0, 0.0]


def test_label_values_are_read_on_the_cpu_only():
    assert readable(torch.tensor([0, 1]))
    meta = torch.tensor([0, 5], device="meta")  # stands in for a GPU tensor: no values to read
    assert not readable(meta)
    assert check_binary_labels(meta, "L").dtype == torch.bool  # no ValueError for the 5


def test_gather_across_devices_is_a_no_op_in_one_process(tiny_model):
    loss = losses.MultipleNegativesRankingLoss(tiny_model, gather_across_devices=True)
    assert loss.compares_rows and not loss.gathers  # no process group here
    assert loss.get_config_dict()["gather_across_devices"] is True
    assert "gather_across_devices" not in losses.CoSENTLoss(tiny_model).get_config_dict()
    assert not losses.ContrastiveLoss(tiny_model).compares_rows
    assert losses.OnlineContrastiveLoss(tiny_model).compares_rows
    with pytest.raises(TypeError, match="gather_across_devices must be True, False or None"):
        losses.CoSENTLoss(tiny_model, gather_across_devices="yes")


def test_forward_embeds_with_the_model_then_scores(tiny_model):
    loss = losses.ContrastiveLoss(tiny_model)
    features = [tiny_model.tokenize(["a card", "my password"]),
                tiny_model.tokenize(["the card", "weather today"])]
    labels = torch.tensor([1, 0])
    with torch.no_grad():
        via_forward = loss(features, labels)
        embeddings = [tiny_model(**f) for f in features]
        direct = loss.compute_loss_from_embeddings(embeddings, labels)
    assert via_forward.item() == pytest.approx(direct.item())
    # The model normalises by default, so the embeddings the loss sees are unit vectors.
    assert torch.allclose(embeddings[0].norm(dim=1), torch.ones(2), atol=1e-5)


def test_base_class_has_no_loss(tiny_model):
    class Plain(SiamLoss):
        input_format = "pair"

    with pytest.raises(NotImplementedError):
        Plain(tiny_model).compute_loss_from_embeddings([torch.zeros(1, 2)] * 2, None)
    assert Plain(tiny_model).get_config_dict() == {}


LABELLED = sorted(name for name, cls in losses.LOSSES.items() if cls.input_format == "labelled")


@pytest.mark.parametrize("name", LABELLED)
def test_labelled_losses_refuse_bad_labels_alike(name, tiny_model):
    loss = losses.LOSSES[name](tiny_model)
    emb = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [0.8, 0.6]])
    with pytest.raises(ValueError, match=r"same label \[4\], so no anchor has a negative"):
        loss.compute_loss_from_embeddings([emb], torch.tensor([4, 4, 4, 4]))
    with pytest.raises(ValueError, match="needs labels"):
        loss.compute_loss_from_embeddings([emb], None)
    with pytest.raises(ValueError, match="class ids"):
        loss.compute_loss_from_embeddings([emb], torch.tensor([0.5, 0.5, 1.0, 1.0]))
    with pytest.raises(ValueError, match="expects 4 labels .*got 2"):
        loss.compute_loss_from_embeddings([emb], torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="expects 1 feature group"):
        loss.compute_loss_from_embeddings([emb, emb], torch.tensor([0, 0, 1, 1]))
