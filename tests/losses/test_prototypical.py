"""PrototypicalLoss against cross-entropies over class means computed by hand."""

from __future__ import annotations

import json
import logging
import math

import pytest
import torch

from siamtext.losses import LOSSES
from siamtext.losses.prototypical import PrototypicalLoss, prototypical_loss

# e0 = (1, 0), e1 = (0.6, 0.8), e2 = (0, 1), e3 = (0.8, 0.6)
EMB = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [0.8, 0.6]])


def ce(logits: list[float], target: int, eps: float = 0.0) -> float:
    """Cross-entropy with the target smoothed by ``eps`` over the logits' classes."""
    lse = math.log(sum(math.exp(x) for x in logits))
    log_p = [x - lse for x in logits]
    return -(1 - eps) * log_p[target] - eps * sum(log_p) / len(log_p)


def reference(emb: torch.Tensor, labels: list[int], scale: float, eps: float) -> float:
    """Row by row with Python loops: cosine to each class mean, own class leave-one-out."""
    unit = torch.nn.functional.normalize
    classes = sorted(set(labels))
    terms = []
    for i, y in enumerate(labels):
        if labels.count(y) < 2:
            continue
        logits = []
        for c in classes:
            rows = [j for j, v in enumerate(labels) if v == c and j != i]
            proto = emb[rows].mean(dim=0)
            logits.append(scale * float(unit(emb[i], dim=0) @ unit(proto, dim=0)))
        terms.append(ce(logits, classes.index(y), eps))
    return sum(terms) / len(terms)


def test_two_pairs_by_hand_with_dot_products():
    # labels [0, 0, 1, 1], prototypes: class 0 (0.8, 0.4), class 1 (0.4, 0.8)
    #   row 0: own (leave-one-out) e1 -> 0.6, class 1 -> 0.4
    #   row 1: own e0 -> 0.6, class 1 -> 0.24 + 0.64 = 0.88
    #   row 2: own e3 -> 0.6, class 0 -> 0.4
    #   row 3: own e2 -> 0.6, class 0 -> 0.64 + 0.24 = 0.88
    expected = (ce([0.6, 0.4], 0) + ce([0.6, 0.88], 0)) / 2
    value = prototypical_loss(EMB, torch.tensor([0, 0, 1, 1]), 1.0, similarity="dot")
    assert value.item() == pytest.approx(expected, abs=1e-6)


def test_label_smoothing_by_hand():
    # the same logits, the target 0.9 own + 0.1 spread over the two classes
    expected = (ce([0.6, 0.4], 0, 0.2) + ce([0.6, 0.88], 0, 0.2)) / 2
    value = prototypical_loss(EMB, torch.tensor([0, 0, 1, 1]), 1.0, 0.2, "dot")
    assert value.item() == pytest.approx(expected, abs=1e-6)


def test_a_row_alone_in_its_class_is_only_a_prototype():
    # labels [0, 0, 1]: rows 0 and 1 score against class 1 = e2; row 2 is no anchor
    #   row 0: own e1 -> 0.6, e2 -> 0; row 1: own e0 -> 0.6, e2 -> 0.8 (scale 2)
    expected = (ce([1.2, 0.0], 0) + ce([1.2, 1.6], 0)) / 2
    value = prototypical_loss(EMB[:3], torch.tensor([0, 0, 1]), 2.0)
    assert value.item() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("labels", [[0, 0, 0, 1, 1, 2, 2, 2, 2, 3],
                                    [5, 1, 5, 1, 9, 9, 1, 5, 2, 2]])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_matches_a_loop_over_rows_and_classes(labels, eps):
    emb = torch.randn(len(labels), 6, generator=torch.Generator().manual_seed(1))
    value = prototypical_loss(emb, torch.tensor(labels), 4.0, eps)
    assert value.item() == pytest.approx(reference(emb, labels, 4.0, eps), abs=1e-5)


def test_the_order_of_rows_does_not_matter():
    emb = torch.randn(8, 5, generator=torch.Generator().manual_seed(2))
    labels = torch.tensor([0, 1, 0, 2, 1, 2, 0, 1])
    order = torch.randperm(8, generator=torch.Generator().manual_seed(3))
    assert prototypical_loss(emb[order], labels[order], 10.0, 0.1).item() == pytest.approx(
        prototypical_loss(emb, labels, 10.0, 0.1).item(), abs=1e-5)


def test_no_shared_class_gives_zero_with_finite_gradient_and_a_warning(tiny_model, caplog):
    emb = EMB[:3].clone().requires_grad_()
    with caplog.at_level(logging.WARNING):
        value = PrototypicalLoss(tiny_model).compute_loss_from_embeddings(
            [emb], torch.tensor([0, 1, 2]))
    assert value.item() == 0.0
    value.backward()
    assert emb.grad is not None and torch.isfinite(emb.grad).all()
    assert "no two rows share a label" in caplog.text


def test_gradient_is_finite_beside_a_lone_row():
    emb = EMB.clone().requires_grad_()
    prototypical_loss(emb, torch.tensor([0, 0, 1, 2]), 20.0, 0.1).backward()
    assert torch.isfinite(emb.grad).all() and emb.grad[:2].abs().sum() > 0


def test_bad_settings(tiny_model):
    # the label checks every labelled loss shares: tests/losses/test_base.py
    for eps in (1.0, -0.1, True, "0.1"):
        with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\)"):
            PrototypicalLoss(tiny_model, label_smoothing=eps)
    with pytest.raises(ValueError, match="scale must be a finite number > 0"):
        PrototypicalLoss(tiny_model, scale=0)
    with pytest.raises(ValueError, match=r"similarity must be one of \['cosine', 'dot'\]"):
        PrototypicalLoss(tiny_model, similarity="euclidean")


def test_config_and_registry(tiny_model):
    loss = PrototypicalLoss(tiny_model, label_smoothing=0.2)
    assert json.loads(json.dumps(loss.get_config_dict())) == {
        "scale": 20.0, "label_smoothing": 0.2, "similarity": "cosine"}
    assert loss.input_format == "labelled" and loss.samples_per_class == 4
    assert LOSSES["prototypical"] is PrototypicalLoss


def test_gradients_flow(fresh_model, backward_grads, toy_classes):
    card, password = toy_classes
    backward_grads(PrototypicalLoss(fresh_model), [card + password],
                   torch.tensor([0] * 4 + [1] * 4))


def test_training_lowers_loss(fresh_model, train_steps, toy_classes):
    card, password = toy_classes
    before, after = train_steps(PrototypicalLoss(fresh_model, label_smoothing=0.0),
                                [card + password], torch.tensor([0] * 4 + [1] * 4))
    assert after < 0.5 * before, (before, after)
