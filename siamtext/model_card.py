"""What a model card says about a model: filled in by training and evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ModelCardData:
    """Facts for the model card, kept on ``SiamText.card_data`` and saved with the model.

    Attributes:
        base_model: Hub id or path the weights were first loaded from.
        datasets: Names of the training datasets.
        language: ISO codes of the languages, e.g. ``["en"]``.
        license: SPDX id of the model's license.
        training: The training set-up (loss and its parameters, epochs, batch size, learning
            rate, number of rows), set by the trainer.
        eval_metrics: Metric name -> value from the latest evaluation.
        tags: Extra Hub tags.
    """

    base_model: str | None = None
    datasets: list[str] = field(default_factory=list)
    language: list[str] = field(default_factory=list)
    license: str | None = None
    training: dict[str, Any] = field(default_factory=dict)
    eval_metrics: dict[str, float] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
