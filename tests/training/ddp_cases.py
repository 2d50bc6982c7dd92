"""Batches and losses shared by the data-parallel tests and their torchrun worker.

Each case is one global batch: the reference embeds all of it in one process, each of the
``world`` ranks embeds its contiguous slice and gathers. Both must give the same gradients.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from siamtext import SiamText, losses
from siamtext.losses import cached

ROWS = 8  # global batch; each of 2 ranks embeds 4 rows

_TEXTS = ["what is the weather today", "will it rain tomorrow", "book a table for two",
          "reserve a table tonight", "play some jazz", "put on my playlist",
          "set an alarm for six", "wake me up at seven", "how is the weather in paris",
          "find a restaurant nearby", "skip this song", "cancel my alarm"]


def texts(offset: int) -> list[str]:
    return [_TEXTS[(i * 5 + offset) % len(_TEXTS)] for i in range(ROWS)]


def _batch(case: str) -> tuple[list[list[str]], torch.Tensor | None]:
    if case.startswith(("mnrl", "cached_mnrl")):
        return [texts(0), texts(1), texts(2)], None  # anchor, positive, hard negative
    if case == "cosent":
        return [texts(0), texts(3)], torch.tensor([4.5, 0.2, 3.1, 1.0, 2.2, 0.7, 5.0, 3.3])
    if case == "online_contrastive":
        return [texts(0), texts(3)], torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0])
    # (text, label): 4 classes x 2 rows, one class per rank-slice pair of rows
    return [texts(0)], torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])


LOSS_FACTORIES: dict[str, Callable[[SiamText], torch.nn.Module]] = {
    "mnrl_hard_negative": lambda m: losses.MultipleNegativesRankingLoss(m),
    "supcon": lambda m: losses.SupervisedContrastiveLoss(m),
    "prototypical": lambda m: losses.PrototypicalLoss(m),
    "batch_hard": lambda m: losses.BatchHardTripletLoss(m, margin=0.5),
    "batch_semi_hard": lambda m: losses.BatchSemiHardTripletLoss(m, margin=0.5),
    "batch_all": lambda m: losses.BatchAllTripletLoss(m, margin=0.5),
    "cosent": lambda m: losses.CoSENTLoss(m),
    "online_contrastive": lambda m: losses.OnlineContrastiveLoss(m),
    "cached_mnrl": lambda m: cached.CachedMultipleNegativesRankingLoss(m, mini_batch_size=3),
    "cached_supcon": lambda m: cached.CachedSupervisedContrastiveLoss(m, mini_batch_size=3),
}
#: The plain loss whose single-process gradients a cached loss must reproduce.
REFERENCE = {"cached_mnrl": "mnrl_hard_negative", "cached_supcon": "supcon"}


def batch(case: str, world: int = 1, rank: int = 0,
          ) -> tuple[list[list[str]], torch.Tensor | None]:
    """The case's columns and labels for ``rank`` of ``world`` (the whole batch for 1)."""
    columns, labels = _batch(case)
    size = ROWS // world
    rows = slice(rank * size, (rank + 1) * size)
    return [c[rows] for c in columns], None if labels is None else labels[rows]


def gradients(model: SiamText, loss: torch.nn.Module, case: str, world: int = 1,
              rank: int = 0) -> tuple[float, dict[str, torch.Tensor]]:
    """Loss value and parameter gradients of one step of ``loss`` on the case's slice."""
    columns, labels = batch(case, world, rank)
    model.zero_grad(set_to_none=True)
    value = loss([model.tokenize(c) for c in columns], labels)
    value.backward()
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters()
             if p.grad is not None}
    return float(value.detach()), grads


def no_dropout_copy(source: Path, target: Path) -> Path:
    """A copy of a model folder with dropout off, so that one process and several agree."""
    shutil.copytree(source, target)
    config = json.loads((target / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (target / "config.json").write_text(json.dumps(config))
    return target


def train_rows() -> dict[str, Any]:
    """(text, label) rows of the demo intents: 16 classes x 20 texts."""
    import csv
    from importlib import resources

    path = resources.files("siamtext") / "resources" / "demo_intents.csv"
    with path.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return {"text": [r["text"] for r in rows], "label": [r["label"] for r in rows]}
