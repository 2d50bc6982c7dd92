"""``SiamTextTrainer``: a ``transformers.Trainer`` that trains a :class:`~siamtext.SiamText`
with a siamtext loss."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch
import transformers
from torch import nn
from torch.utils.data import DataLoader

from siamtext.data.collators import TextCollator, TokenizedDataset
from siamtext.data.samplers import ClassBalancedBatchSampler, LengthGroupedBatchSampler
from siamtext.training.arguments import TrainingArguments
from siamtext.training.checkpoint import ARGS_NAME, load_weights
from siamtext.training.data import check_data, prepare_dataset, resolve_columns
from siamtext.training.tower import SubBatchedTower

if TYPE_CHECKING:
    from siamtext.model import SiamText

logger = logging.getLogger(__name__)

Evaluator = Callable[["SiamText"], Mapping[str, float]]


class SiamTextTrainer(transformers.Trainer):
    """A ``transformers.Trainer`` that trains a :class:`~siamtext.SiamText` with a siamtext loss.

    Args:
        model: The model to train (changed in place).
        args: :class:`TrainingArguments`.
        train_dataset: A ``datasets.Dataset``, dict of lists or list of dicts whose columns
            fit the loss's ``input_format`` (renamed with ``columns``).
        loss: A siamtext loss built on ``model``.
        eval_dataset: Rows in the same format; their loss is logged as ``eval_loss``.
        evaluator: A callable ``evaluator(model) -> {metric: value}`` (see
            :mod:`siamtext.evaluation`) run at each evaluation; its metrics are logged with
            the ``eval_`` prefix and can pick the best checkpoint.
        columns: Default column name -> the data's column name.
        callbacks: Extra ``transformers.TrainerCallback`` objects.
    """

    loss_is_scaled_for_ga = False  # our losses are per-batch means

    def __init__(self, model: SiamText, args: TrainingArguments, train_dataset: Any,
                 loss: nn.Module, eval_dataset: Any | None = None,
                 evaluator: Evaluator | None = None, columns: Mapping[str, str] | None = None,
                 callbacks: list[transformers.TrainerCallback] | None = None) -> None:
        if not isinstance(args, TrainingArguments):
            raise TypeError(f"args must be siamtext.training.TrainingArguments, got "
                            f"{type(args).__name__}")
        self.loss = loss
        self.evaluator = evaluator
        self.input_format = loss.input_format
        self.spec = resolve_columns(loss, train_dataset, columns, "train_dataset")
        check_data(train_dataset, self.spec, self.input_format, "train_dataset")
        self.train_rows = prepare_dataset(model, train_dataset, self.spec, args.pretokenize)
        eval_rows = None
        if eval_dataset is not None:
            eval_spec = resolve_columns(loss, eval_dataset, columns, "eval_dataset")
            check_data(eval_dataset, eval_spec, self.input_format, "eval_dataset")
            eval_rows = prepare_dataset(model, eval_dataset, eval_spec, args.pretokenize,
                                        "eval_dataset")
        self._check_sampler(args)
        if args.activation_checkpointing or args.gradient_checkpointing:
            enable = getattr(model.transformer, "activation_checkpointing_enable", None) or \
                model.transformer.gradient_checkpointing_enable
            enable()
            args.activation_checkpointing = args.gradient_checkpointing = False
        collator = TextCollator(model, self.spec.text_columns, self.spec.label_column,
                                self.spec.label_dtype)
        super().__init__(model=model, args=args, data_collator=collator,
                         train_dataset=self.train_rows, eval_dataset=eval_rows,
                         callbacks=callbacks)
        self.model_accepts_loss_kwargs = False
        self.can_return_loss = True
        self.rows_seen = 0  # training rows embedded so far (this process)
        if args.disable_tqdm:  # quiet: logs go to the logger, not to stdout
            self.remove_callback(transformers.PrinterCallback)
            self.add_callback(_LoggerCallback())
        self.label_names = []

    # ------------------------------------------------------------------ batching
    def _sampler_kind(self, args: TrainingArguments) -> str:
        cached = getattr(self, "_kind", None)
        if cached is not None and cached[0] == args.batch_sampler:
            return cached[1]
        kind = self._choose_sampler(args)
        self._kind = (args.batch_sampler, kind)
        return kind

    def _choose_sampler(self, args: TrainingArguments) -> str:
        kind = args.batch_sampler
        if kind != "auto":
            return kind
        if self.input_format == "labelled":
            return "class_balanced"
        if self.input_format == "anchor_positive":
            if self.spec.label_column is not None:
                n_classes = len(set(self.train_rows.columns[self.spec.label_column]))
                if n_classes >= args.per_device_train_batch_size:
                    return "one_per_class"
                logger.warning("%d classes < batch size %d: batches may hold same-class rows "
                               "(the loss masks them when labels are given)", n_classes,
                               args.per_device_train_batch_size)
            texts = {tuple(t) if isinstance(t, list) else t
                     for c in self.spec.text_columns for t in self.train_rows.columns[c]}
            if len(texts) >= args.per_device_train_batch_size:
                return "no_duplicates"
        return "length"

    def _check_sampler(self, args: TrainingArguments) -> None:
        self._make_sampler(args, self.train_rows)  # raises on impossible settings

    def _samples_per_class(self, args: TrainingArguments) -> int:
        """K of P x K batches: the argument if set, else the loss's preference."""
        return args.samples_per_class or getattr(self.loss, "samples_per_class", 4)

    def _make_sampler(self, args: TrainingArguments, rows: TokenizedDataset,
                      ) -> torch.utils.data.Sampler:
        kind = self._sampler_kind(args)
        bs = args.per_device_train_batch_size
        seed = args.data_seed if args.data_seed is not None else args.seed
        label = self.spec.label_column
        if kind == "class_balanced":
            if label is None:
                raise ValueError("batch_sampler='class_balanced' needs a label column")
            texts = rows.columns[self.spec.text_columns[0]]
            keys = [tuple(t) if isinstance(t, list) else t for t in texts]
            return ClassBalancedBatchSampler(rows.columns[label], bs, self._samples_per_class(args),
                                             args.classes_per_batch, texts=keys, seed=seed,
                                             drop_last=args.dataloader_drop_last)
        groups = None
        if kind == "one_per_class":
            groups = rows.columns[label]
        elif kind == "no_duplicates":
            groups = [tuple(tuple(rows.columns[c][i]) if isinstance(rows.columns[c][i], list)
                            else rows.columns[c][i] for c in self.spec.text_columns)
                      for i in range(len(rows))]
        mega = 1 if kind == "random" else args.mega_batches
        lengths = rows.lengths if kind != "random" else [0] * len(rows)
        return LengthGroupedBatchSampler(lengths, bs, groups=groups, seed=seed,
                                         drop_last=args.dataloader_drop_last, mega_batches=mega)

    def _sub_batch_size(self) -> int:
        size = self.args.sub_batch_size
        if size is None:
            size = 8 if self.model.device.type == "cpu" else 0
        return size

    def train(self, *args: Any, **kwargs: Any) -> transformers.trainer_utils.TrainOutput:
        """Train (see ``transformers.Trainer.train``), with sub-batched embedding if set."""
        size = self._sub_batch_size()
        swap = size > 0 and getattr(self.loss, "model", None) is self.model
        if swap:
            self.loss.model = SubBatchedTower(self.model, size)
        try:
            return super().train(*args, **kwargs)
        finally:
            if swap:
                self.loss.model = self.model

    def get_train_dataloader(self) -> DataLoader:
        sampler = self._make_sampler(self.args, self.train_rows)
        loader = DataLoader(self.train_rows, batch_sampler=sampler, collate_fn=self.data_collator,
                            num_workers=0)
        return self.accelerator.prepare(loader)

    def get_eval_dataloader(self, eval_dataset: Any | None = None) -> DataLoader:
        rows = self.eval_dataset if eval_dataset is None else eval_dataset
        if not isinstance(rows, TokenizedDataset):
            spec = resolve_columns(self.loss, rows, None, "eval_dataset")
            rows = prepare_dataset(self.model, rows, spec, self.args.pretokenize, "eval_dataset")
        order = sorted(range(len(rows)), key=lambda i: -rows.lengths[i])
        bs = self.args.per_device_eval_batch_size
        batches = [order[i : i + bs] for i in range(0, len(order), bs)]
        loader = DataLoader(rows, batch_sampler=batches, collate_fn=self.data_collator)
        return self.accelerator.prepare(loader)

    # ------------------------------------------------------------------ loss
    def compute_loss(self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: torch.Tensor | int | None = None,
                     ) -> torch.Tensor | tuple[torch.Tensor, dict]:
        features = inputs["features"]
        loss = self.loss(features, inputs.get("labels"))
        if self.model.training:
            self.rows_seen += int(features[0]["input_ids"].shape[0])
        return (loss, {}) if return_outputs else loss

    def prediction_step(self, model: nn.Module, inputs: dict[str, Any],
                        prediction_loss_only: bool, ignore_keys: list[str] | None = None,
                        ) -> tuple[torch.Tensor | None, None, None]:
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    # ------------------------------------------------------------------ evaluation
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

    # ------------------------------------------------------------------ saving
    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:
            return
        os.makedirs(output_dir, exist_ok=True)
        self.model.save_pretrained(output_dir)
        args = {k: v for k, v in self.args.to_dict().items() if _jsonable(v)}
        with open(os.path.join(output_dir, ARGS_NAME), "w", encoding="utf-8") as f:
            json.dump(args, f, indent=2)

    def _load_from_checkpoint(self, resume_from_checkpoint: str,
                              model: nn.Module | None = None) -> None:
        load_weights(model if model is not None else self.model, resume_from_checkpoint)

    def _load_best_model(self) -> None:
        checkpoint = self.state.best_model_checkpoint
        logger.info("Loading best model from %s (score: %s).", checkpoint,
                    self.state.best_metric)
        load_weights(self.model, checkpoint)


class _LoggerCallback(transformers.TrainerCallback):
    """Send the trainer's logs to this module's logger (INFO)."""

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None,
               **kwargs: Any) -> None:
        if logs:
            logger.info("step %d: %s", state.global_step, logs)


def _jsonable(value: object) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
