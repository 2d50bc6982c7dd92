"""Cached (GradCache) losses: the value and gradients of the plain losses, dropout replayed,
the tower only ever run with a graph on one mini-batch."""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn
from training.toys import toy_rows  # tests/ is on sys.path (rootdir packages)

import siamtext.distributed
from siamtext import SiamText
from siamtext.losses import (
    LOSSES,
    CachedMultipleNegativesRankingLoss,
    CachedSupervisedContrastiveLoss,
    MultipleNegativesRankingLoss,
    SupervisedContrastiveLoss,
)
from siamtext.losses.cached import mini_batches
from siamtext.training import fit

ANCHORS = ["I lost my card", "I forgot my password", "what's the weather like today",
           "book a table for two", "my card was stolen", "reset my password please",
           "is it going to rain tomorrow", "reserve a table tonight"]
POSITIVES = ["please block my lost card", "how do I change my password",
             "weather forecast for the weekend", "a table for two at eight",
             "can't find my credit card", "my password does not work",
             "do i need an umbrella today", "can I book dinner for four"]
NEGATIVES = ["my password does not work", "I lost my card", "book a table for two",
             "is it cold out", "reset my password please", "reserve a table tonight",
             "I forgot my password", "will it snow this week"]
CLASSES = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])

# (plain loss, cached loss, text columns, labels)
CASES = {
    "mnrl_hard_negatives": (MultipleNegativesRankingLoss, CachedMultipleNegativesRankingLoss,
                            [ANCHORS, POSITIVES, NEGATIVES], None),
    "mnrl_labels": (MultipleNegativesRankingLoss, CachedMultipleNegativesRankingLoss,
                    [ANCHORS, POSITIVES], CLASSES),
    "supcon": (SupervisedContrastiveLoss, CachedSupervisedContrastiveLoss, [ANCHORS], CLASSES),
}


def features_of(model: SiamText, columns: Sequence[Sequence[str]]) -> list[dict[str, Tensor]]:
    return [model.tokenize(list(c)) for c in columns]


def grads_of(model: nn.Module) -> dict[str, Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def assert_same_grads(got: dict[str, Tensor], want: dict[str, Tensor]) -> None:
    assert got.keys() == want.keys() and want
    scale = max(float(g.abs().max()) for g in want.values())  # float rounding is relative to it
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-5 * scale)
    # and as a whole, so that tiny gradients cannot hide behind atol
    diff = sum(float((got[n] - want[n]).abs().sum()) for n in want)
    assert diff <= 1e-4 * sum(float(want[n].abs().sum()) for n in want)


def dropout_off(model: SiamText) -> SiamText:
    model.train()
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    return model


class CountingTower(nn.Module):
    """Runs ``tower`` and records each call: rows, grad mode, autocast, inside no_sync."""

    def __init__(self, tower: nn.Module) -> None:
        super().__init__()
        self.tower = tower
        self.calls: list[dict] = []
        self.syncing = True

    def forward(self, **features: Tensor) -> Tensor:
        self.calls.append({"rows": features["input_ids"].shape[0],
                           "grad": torch.is_grad_enabled(), "sync": self.syncing,
                           "autocast": torch.is_autocast_enabled("cpu"),
                           "dtype": torch.get_autocast_dtype("cpu")})
        return self.tower(**features)

    @contextmanager
    def no_sync(self):
        self.syncing = False
        try:
            yield
        finally:
            self.syncing = True


# ---------------------------------------------------------------------- the same loss
@pytest.mark.parametrize("mini", [1, 3, 100])
@pytest.mark.parametrize("case", sorted(CASES))
def test_value_and_gradients_equal_the_plain_loss(fresh_model, case, mini):
    plain_cls, cached_cls, columns, labels = CASES[case]
    model = dropout_off(fresh_model)
    features = features_of(model, columns)
    expected = plain_cls(model, scale=5.0)(features, labels)
    expected.backward()
    want = grads_of(model)
    model.zero_grad(set_to_none=True)

    value = cached_cls(model, scale=5.0, mini_batch_size=mini)(features, labels)
    assert value.requires_grad and value.grad_fn is None  # detached: the tower runs later
    assert all(p.grad is None for p in model.parameters())  # nothing accumulated yet
    assert value.item() == pytest.approx(expected.item(), abs=1e-6)
    value.backward()
    assert_same_grads(grads_of(model), want)


def test_backward_scales_with_the_outer_gradient(fresh_model):
    loss = CachedMultipleNegativesRankingLoss(fresh_model, mini_batch_size=3)
    features = features_of(fresh_model, [ANCHORS, POSITIVES])
    loss(features, None).backward()
    once = grads_of(fresh_model)
    fresh_model.zero_grad(set_to_none=True)
    (loss(features, None) * 3).backward()
    assert_same_grads(grads_of(fresh_model), {n: 3 * g for n, g in once.items()})


def test_no_grad_and_eval_give_the_plain_value(fresh_model):
    features = features_of(fresh_model, [ANCHORS, POSITIVES, NEGATIVES])
    loss = CachedMultipleNegativesRankingLoss(fresh_model, mini_batch_size=3)
    with torch.no_grad():
        expected = MultipleNegativesRankingLoss(fresh_model)(features, None)
        tower = CountingTower(fresh_model)
        loss.model = tower
        value = loss(features, None)
    assert not value.requires_grad
    assert value.item() == pytest.approx(expected.item(), abs=1e-6)
    assert [c["rows"] for c in tower.calls] == [3, 3, 2] * 3


# ---------------------------------------------------------------------- dropout replay
def test_dropout_is_replayed_from_the_forward_random_state(tiny_bert_dir: Path):
    model = SiamText(tiny_bert_dir, device="cpu").train()  # dropout 0.1 on
    features = features_of(model, [ANCHORS, POSITIVES])
    plain = MultipleNegativesRankingLoss(model)

    # reference: the same mini-batches embedded in the same order from the same seed, with a
    # graph, so every dropout mask is the one the cached loss must draw and then replay
    torch.manual_seed(7)
    embeddings = [torch.cat([model(**mb) for mb in mini_batches(f, 3)]) for f in features]
    expected = plain.compute_loss_from_embeddings(embeddings, None)
    expected.backward()
    want, after_want = grads_of(model), torch.rand(3)
    model.zero_grad(set_to_none=True)

    cached = CachedMultipleNegativesRankingLoss(model, mini_batch_size=3)
    torch.manual_seed(7)
    value = cached(features, None)
    value.backward()
    assert value.item() == pytest.approx(expected.item(), abs=1e-6)
    assert_same_grads(grads_of(model), want)
    assert torch.equal(torch.rand(3), after_want)  # the replay left the random stream alone

    # dropout really is on: another seed draws other masks, another value and gradient
    model.zero_grad(set_to_none=True)
    torch.manual_seed(8)
    other = cached(features, None)
    other.backward()
    assert abs(other.item() - value.item()) > 1e-4
    assert not torch.allclose(grads_of(model)["transformer.embeddings.word_embeddings.weight"],
                              want["transformer.embeddings.word_embeddings.weight"])


# ---------------------------------------------------------------------- memory and DDP
def test_the_tower_sees_one_mini_batch_with_a_graph_and_the_forward_tower(fresh_model):
    features = features_of(fresh_model, [ANCHORS, POSITIVES, NEGATIVES])
    plain = MultipleNegativesRankingLoss(fresh_model)
    plain.model = tower = CountingTower(fresh_model)
    plain(features, None)
    assert max(c["rows"] for c in tower.calls if c["grad"]) == 8  # the counter can tell

    loss = CachedMultipleNegativesRankingLoss(fresh_model, mini_batch_size=3)
    loss.model = tower = CountingTower(fresh_model)
    value = loss(features, None)
    loss.model = fresh_model  # as the trainer does after the forward: the hook must not care
    assert tower.calls and not any(c["grad"] for c in tower.calls)
    assert sum(c["rows"] for c in tower.calls) == 24
    tower.calls.clear()
    value.backward()
    assert [c["rows"] for c in tower.calls] == [3, 3, 2] * 3
    assert all(c["grad"] for c in tower.calls)
    # DDP: no gradient sync until the last mini-batch
    assert [c["sync"] for c in tower.calls] == [False] * 8 + [True]


def test_gather_batch_is_called_on_the_cached_leaves(fresh_model, monkeypatch):
    calls = []

    def fake_gather(embeddings, labels):
        calls.append(([e.is_leaf and e.requires_grad for e in embeddings], labels))
        return list(embeddings), labels

    monkeypatch.setattr(siamtext.distributed, "is_distributed", lambda: True)
    monkeypatch.setattr(siamtext.distributed, "gather_batch", fake_gather)
    loss = CachedSupervisedContrastiveLoss(fresh_model, mini_batch_size=3)
    value = loss(features_of(fresh_model, [ANCHORS]), CLASSES)
    assert calls == [([True], CLASSES)]
    value.backward()
    with torch.no_grad():
        loss(features_of(fresh_model, [ANCHORS]), CLASSES)
    assert len(calls) == 1  # evaluation stays per process


def test_backward_re_enters_the_forward_autocast(fresh_model):
    features = features_of(fresh_model, [ANCHORS, POSITIVES])
    loss = CachedMultipleNegativesRankingLoss(fresh_model, mini_batch_size=4)
    loss.model = tower = CountingTower(fresh_model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(features, None)
    tower.calls.clear()
    value.backward()  # outside autocast, as the trainer's backward is
    assert [(c["autocast"], c["dtype"]) for c in tower.calls] == [(True, torch.bfloat16)] * 4
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in fresh_model.parameters())

    value = loss(features, None)
    tower.calls.clear()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value.backward()
    assert not any(c["autocast"] for c in tower.calls)


# ---------------------------------------------------------------------- slicing
def test_mini_batches_split_rows_and_trim_shared_padding():
    features = {"input_ids": torch.arange(20).view(5, 4),
                "attention_mask": torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1],
                                                [1, 1, 1, 0], [1, 0, 0, 0]]),
                "token_type_ids": torch.zeros(5, 4, dtype=torch.long)}
    parts = mini_batches(features, 2)
    assert [tuple(p["input_ids"].shape) for p in parts] == [(2, 2), (2, 4), (1, 1)]
    assert parts[0]["input_ids"].tolist() == [[0, 1], [4, 5]]
    assert parts[2]["attention_mask"].tolist() == [[1]]
    assert all(p["token_type_ids"].shape == p["input_ids"].shape for p in parts)
    # left padding: nothing can be trimmed
    left = {"input_ids": torch.ones(2, 3, dtype=torch.long),
            "attention_mask": torch.tensor([[0, 1, 1], [0, 0, 1]])}
    assert mini_batches(left, 1)[1]["input_ids"].shape == (1, 3)


# ---------------------------------------------------------------------- arguments
@pytest.mark.parametrize("cls", [CachedMultipleNegativesRankingLoss,
                                 CachedSupervisedContrastiveLoss])
@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "8"])
def test_bad_mini_batch_size_is_rejected(tiny_model, cls, bad):
    with pytest.raises(ValueError, match=rf"mini_batch_size must be a positive integer, "
                                         rf"got {bad!r}"):
        cls(tiny_model, mini_batch_size=bad)


def test_empty_batch_and_wrong_columns_are_rejected_before_embedding(tiny_model):
    loss = CachedMultipleNegativesRankingLoss(tiny_model)
    empty = {"input_ids": torch.zeros(0, 3, dtype=torch.long),
             "attention_mask": torch.zeros(0, 3, dtype=torch.long)}
    with pytest.raises(ValueError, match="the batch is empty"):
        loss([empty, empty], None)
    with pytest.raises(ValueError, match="expects at least 2 feature groups"):
        loss([tiny_model.tokenize(["a"])], None)


def test_config_and_registry(tiny_model):
    loss = CachedMultipleNegativesRankingLoss(tiny_model, mini_batch_size=4)
    assert json.loads(json.dumps(loss.get_config_dict())) == {
        "scale": 20.0, "similarity": "cosine", "mini_batch_size": 4}
    supcon = CachedSupervisedContrastiveLoss(tiny_model, gather_across_devices=False)
    assert supcon.get_config_dict() == {"scale": 20.0, "similarity": "cosine",
                                        "gather_across_devices": False, "mini_batch_size": 32}
    assert LOSSES["cached_multiple_negatives_ranking"] is CachedMultipleNegativesRankingLoss
    assert LOSSES["cached_supervised_contrastive"] is CachedSupervisedContrastiveLoss
    assert supcon.samples_per_class == SupervisedContrastiveLoss.samples_per_class
    assert "mini_batch_size=32" in repr(supcon)


# ---------------------------------------------------------------------- training
def test_fit_trains_with_the_cached_loss(tiny_bert_dir: Path):
    model = SiamText(tiny_bert_dir, device="cpu")
    texts, labels = toy_rows()
    by_class: dict[str, list[str]] = {}
    for text, label in zip(texts, labels):
        by_class.setdefault(label, []).append(text)
    pairs = [(group[i], group[i + 1]) for group in by_class.values()
             for i in range(0, len(group) - 1, 2)]
    data = {"anchor": [a for a, _ in pairs], "positive": [p for _, p in pairs]}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    loss = CachedMultipleNegativesRankingLoss(model, mini_batch_size=2)
    fit(model, data, loss, epochs=1, batch_size=8, show_progress=False, learning_rate=1e-3)
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert "transformer.encoder.layer.0.attention.self.query.weight" in changed
    assert loss.model is model
    assert model.card_data.training["loss"] == "CachedMultipleNegativesRankingLoss"
    assert model.card_data.training["loss_config"]["mini_batch_size"] == 2
