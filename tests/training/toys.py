"""Toy losses and data shared by the training tests (tiny model, two demo intents)."""

from __future__ import annotations

import csv
from importlib import resources
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from siamtext import SiamText


class ToyLabelledLoss(nn.Module):
    """Minimal loss on (text, label) rows: same class -> cosine 1, other class -> cosine <= 0."""

    input_format: ClassVar[str] = "labelled"

    def __init__(self, model: SiamText) -> None:
        super().__init__()
        self.model = model

    def forward(self, features: list[dict[str, Tensor]], labels: Tensor | None) -> Tensor:
        emb = torch.nn.functional.normalize(self.model(**features[0]), dim=-1)
        sim = emb @ emb.T
        same = labels[:, None] == labels[None, :]
        return torch.where(same, 1 - sim, torch.relu(sim)).mean()

    def get_config_dict(self) -> dict[str, Any]:
        return {"toy": True}


class ToyPairLoss(ToyLabelledLoss):
    input_format: ClassVar[str] = "pair"

    def forward(self, features: list[dict[str, Tensor]], labels: Tensor | None) -> Tensor:
        a, b = (torch.nn.functional.normalize(self.model(**f), dim=-1) for f in features)
        sim = (a * b).sum(-1)
        return torch.where(labels == 1, 1 - sim, torch.relu(sim)).mean()


def toy_rows() -> tuple[list[str], list[str]]:
    path = resources.files("siamtext") / "resources" / "demo_intents.csv"
    with path.open(encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["label"] in ("weather", "book_table")]
    return [r["text"] for r in rows], [r["label"] for r in rows]


def separation(model: SiamText, texts: list[str], labels: list[str]) -> float:
    emb = model.encode(texts)
    sim = emb @ emb.T
    same = np.equal.outer(labels, labels)
    off = ~np.eye(len(texts), dtype=bool)
    return float(sim[same & off].mean() - sim[~same].mean())
