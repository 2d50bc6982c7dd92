"""The trainer's evaluation: the eval loss, an evaluator's metrics, evaluation without rows.

At each evaluation the trainer logs the loss on ``eval_dataset`` (if any) and the metrics
of ``evaluator(model)`` (:mod:`siamtext.evaluation`) with the ``eval_`` prefix, so either
can pick the best checkpoint; an evaluator alone, without an eval dataset, is enough.
:class:`~siamtext.training.trainer.SiamTextTrainer` takes these methods from
:class:`EvaluationMixin`.
"""

from __future__ import annotations

from typing import Any

import torch
import transformers
from torch import nn
from torch.utils.data import DataLoader


class EvaluationMixin:
    """The evaluation hooks of :class:`~siamtext.training.trainer.SiamTextTrainer` (a
    ``transformers.Trainer`` with an ``evaluator`` attribute, ``None`` or a callable
    ``evaluator(model) -> {metric: value}``)."""

    def prediction_step(self, model: nn.Module, inputs: dict[str, Any],
                        prediction_loss_only: bool, ignore_keys: list[str] | None = None,
                        ) -> tuple[torch.Tensor | None, None, None]:
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def _validate_args(self) -> None:
        strategy = self.args.eval_strategy
        if self.evaluator is not None and self.eval_dataset is None:
            self.args.eval_strategy = "no"  # the evaluator alone is enough to evaluate
        try:
            super()._validate_args()
        finally:
            self.args.eval_strategy = strategy

    def _evaluator_metrics(self, prefix: str) -> dict[str, float]:
        if self.evaluator is None:
            return {}
        metrics = self.evaluator(self.model)
        return {k if k.startswith(f"{prefix}_") else f"{prefix}_{k}": float(v)
                for k, v in metrics.items()}

    def evaluation_loop(self, dataloader: DataLoader, description: str,
                        prediction_loss_only: bool | None = None,
                        ignore_keys: list[str] | None = None, metric_key_prefix: str = "eval",
                        ) -> transformers.trainer_utils.EvalLoopOutput:
        output = super().evaluation_loop(dataloader, description, prediction_loss_only,
                                         ignore_keys, metric_key_prefix)
        output.metrics.update(self._evaluator_metrics(metric_key_prefix))
        return output

    def evaluate(self, eval_dataset: Any | None = None, ignore_keys: list[str] | None = None,
                 metric_key_prefix: str = "eval") -> dict[str, float]:
        """Eval loss on the eval dataset (if any) plus the evaluator's metrics, logged."""
        if eval_dataset is None and self.eval_dataset is None:
            metrics = self._evaluator_metrics(metric_key_prefix)
            if self.state.epoch is not None:
                metrics["epoch"] = self.state.epoch
            self.log(metrics)
            self.control = self.callback_handler.on_evaluate(self.args, self.state,
                                                             self.control, metrics)
            return metrics
        return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
