"""Training: arguments dataclass, a ``transformers.Trainer`` for siamtext losses, and ``fit``.

The trainer reuses everything ``transformers.Trainer`` does well (AdamW, warmup and linear
decay, gradient accumulation, mixed precision through accelerate, evaluation, checkpoints,
``resume_from_checkpoint``, progress bar, logs) and changes what is specific to a Siamese
tower:

* the data: text columns are tokenised once (:func:`siamtext.data.pretokenize`) and batches
  are only padded; batches group rows of similar length, or come P classes x K examples at
  a time for the batch-mining losses (:mod:`siamtext.data.samplers`);
* the loss: ``compute_loss`` calls the siamtext loss on one feature dict per text column;
* saving: checkpoints hold the full :class:`~siamtext.SiamText` folder
  (``save_pretrained``), so a checkpoint is itself a loadable model, and resuming or
  loading the best checkpoint reads those weights back.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch
import transformers
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import DataLoader

from siamtext.data.collators import (
    DEFAULT_COLUMNS,
    TextCollator,
    TokenizedDataset,
    check_columns,
    column_names,
    encode_labels,
    pretokenize,
)
from siamtext.data.samplers import ClassBalancedBatchSampler, LengthGroupedBatchSampler
from siamtext.model_card import ModelCardData
from siamtext.validation import check_choice, check_positive_int

if TYPE_CHECKING:
    from siamtext.model import SiamText

logger = logging.getLogger(__name__)

BatchSampler = Literal["auto", "length", "no_duplicates", "class_balanced", "random"]
Evaluator = Callable[["SiamText"], Mapping[str, float]]
ARGS_NAME = "siamtext_training_args.json"


@dataclass
class TrainingArguments(transformers.TrainingArguments):
    """``transformers.TrainingArguments`` with siamtext's defaults and batching options.

    Everything of ``transformers.TrainingArguments`` applies (``learning_rate``,
    ``warmup_steps`` (a float below 1 is a ratio of the total steps),
    ``gradient_accumulation_steps``, ``eval_strategy``, ``save_strategy``,
    ``metric_for_best_model``, ``load_best_model_at_end``, ``seed``...). Changed defaults:
    ``learning_rate=2e-5``, ``warmup_steps=0.1`` (10 % warm-up), ``remove_unused_columns``
    off (the collator needs the text columns), ``report_to="none"``, ``save_strategy="no"``.

    Attributes:
        batch_sampler: How rows are grouped into batches. ``"auto"``: P x K class-balanced
            batches for (text, label) losses; for (anchor, positive) rows with a label
            column, length-grouped batches holding one row per class (no same-class false
            negatives) when there are at least ``batch_size`` classes, else batches without
            duplicate texts; length-grouped batches otherwise. ``"length"``,
            ``"no_duplicates"`` (length-grouped, no text twice in a batch),
            ``"class_balanced"`` and ``"random"`` force one.
        samples_per_class: K of the class-balanced sampler.
        classes_per_batch: P of the class-balanced sampler (default batch_size // K);
            P x K must not exceed the batch size.
        mega_batches: Batches sorted together by the length-grouped sampler (1 = random
            batches). The default 4 sorts 4 batches' worth of shuffled rows at a time: less
            padding, while batch composition stays close to random.
        pretokenize: Tokenise the dataset once before training (faster) instead of in
            every batch.
        sub_batch_size: Embed each column of a batch in length-sorted sub-batches of this
            many rows, each padded only to its own longest row. The embeddings, the loss and
            the gradients are the same as in one pass (up to float rounding); on a CPU, where
            the cost grows with every padded position, this halves the work of batches that
            mix short and long texts. ``None``: 8 on CPU, off on GPU (which prefers one
            large matrix product); ``0``: off.
        mixed_precision: ``"auto"`` (bf16 on a GPU that supports it, else fp16 on a GPU,
            fp32 on CPU), ``"no"``, ``"bf16"`` or ``"fp16"``.
    """

    output_dir: str | None = None
    learning_rate: float = 2e-5
    warmup_steps: float = 0.1
    remove_unused_columns: bool = False
    report_to: None | str | list[str] = "none"
    save_strategy: str = "no"
    logging_steps: float = 50
    batch_sampler: str = "auto"
    samples_per_class: int = 4
    classes_per_batch: int | None = None
    mega_batches: int = 4
    pretokenize: bool = True
    sub_batch_size: int | None = None
    mixed_precision: str = "auto"

    def __post_init__(self) -> None:
        check_choice(self.batch_sampler,
                     ("auto", "length", "no_duplicates", "class_balanced", "random"),
                     "batch_sampler")
        check_choice(self.mixed_precision, ("auto", "no", "bf16", "fp16"), "mixed_precision")
        check_positive_int(self.samples_per_class, "samples_per_class")
        check_positive_int(self.mega_batches, "mega_batches")
        if self.sub_batch_size is not None and (
            isinstance(self.sub_batch_size, bool) or not isinstance(self.sub_batch_size, int)
            or self.sub_batch_size < 0
        ):
            raise ValueError(f"sub_batch_size must be None or an int >= 0, got "
                             f"{self.sub_batch_size!r}")
        on_gpu = torch.cuda.is_available() and not self.use_cpu
        if self.mixed_precision == "auto" and on_gpu and not (self.bf16 or self.fp16):
            self.bf16 = torch.cuda.is_bf16_supported()
            self.fp16 = not self.bf16
        elif self.mixed_precision == "bf16":
            self.bf16, self.fp16 = True, False
        elif self.mixed_precision == "fp16":
            self.bf16, self.fp16 = False, True
        elif self.mixed_precision == "no":
            self.bf16 = self.fp16 = False
        super().__post_init__()


# ---------------------------------------------------------------------- data preparation
@dataclass
class DataSpec:
    """Which columns feed the loss: text columns in loss order and the label column."""

    text_columns: list[str]
    label_column: str | None
    label_dtype: torch.dtype = torch.float32
    classes: list[Any] = field(default_factory=list)


def resolve_columns(loss: nn.Module, data: Any, columns: Mapping[str, str] | None = None,
                    what: str = "train_dataset") -> DataSpec:
    """Map a loss's ``input_format`` to the data's columns and check that they exist.

    Args:
        loss: A siamtext loss (has ``input_format``).
        data: The dataset (for its column names).
        columns: Default name -> the data's name, e.g. ``{"sentence1": "question1",
            "label": "is_duplicate"}``.
        what: Name of the data in error messages.

    Raises:
        ValueError: Naming the missing columns and the existing ones.
    """
    fmt = getattr(loss, "input_format", None)
    if fmt not in DEFAULT_COLUMNS:
        raise ValueError(f"loss {type(loss).__name__} has input_format {fmt!r}; expected one "
                         f"of {sorted(DEFAULT_COLUMNS)}")
    columns = dict(columns or {})
    unknown = set(columns) - {c for t, lab in DEFAULT_COLUMNS.values() for c in (*t, lab) if c}
    unknown -= {"negative", "label"}
    if unknown:
        raise ValueError(f"columns has unknown key(s) {sorted(unknown)}; keys are the default "
                         "column names (sentence1, sentence2, anchor, positive, negative, "
                         "text, label)")
    available = column_names(data)
    texts, label = DEFAULT_COLUMNS[fmt]
    text_cols = [columns.get(c, c) for c in texts]
    label_col = columns.get(label, label) if label else None
    if fmt == "anchor_positive":
        neg = columns.get("negative", "negative")
        extra = sorted(c for c in available if c.startswith(neg) and c not in text_cols)
        text_cols += extra
        lab = columns.get("label", "label")
        label_col = lab if lab in available else None
    check_columns(available, text_cols + ([label_col] if label_col else []), what)
    dtype = torch.float32 if fmt in ("pair", "pair_score") else torch.long
    return DataSpec(text_cols, label_col, dtype)


def check_data(data: Any, spec: DataSpec, input_format: str, what: str = "train_dataset") -> None:
    """Fail before training on data the loss cannot learn from.

    Raises:
        ValueError: An empty dataset; pair labels outside {0, 1}; NaN or infinite scores;
            a single class (or no class with two rows) for the batch-mining losses.
    """
    n = len(data) if not isinstance(data, Mapping) else len(next(iter(data.values()), []))
    if n == 0:
        raise ValueError(f"{what} is empty (0 rows); training needs at least one row")
    if spec.label_column is None:
        return
    labels = _values(data, spec.label_column)
    if input_format == "pair":
        bad = sorted({v for v in labels if not _is_binary(v)}, key=repr)
        if bad:
            raise ValueError(f"{what}[{spec.label_column!r}] must be 0 or 1 for a contrastive "
                             f"loss (1 = similar), got other values {bad[:10]}")
    elif input_format == "pair_score":
        for i, v in enumerate(labels):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"{what}[{spec.label_column!r}][{i}] is {v!r}; scores must be "
                                 "finite numbers")
    elif input_format == "labelled":
        counts: dict[Hashable, int] = {}
        for v in labels:
            counts[v] = counts.get(v, 0) + 1
        if len(counts) < 2:
            raise ValueError(f"{what}[{spec.label_column!r}] has a single class "
                             f"{next(iter(counts))!r}: triplet mining needs at least two "
                             "classes (no negatives otherwise)")
        if max(counts.values()) < 2:
            raise ValueError(f"{what}[{spec.label_column!r}]: every class has one row, so "
                             "triplet mining finds no positive pairs")


def _is_binary(v: object) -> bool:
    try:
        return float(v) in (0.0, 1.0)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def _values(data: Any, name: str) -> list[Any]:
    if isinstance(data, Mapping) or hasattr(data, "column_names"):
        return list(data[name])
    return [row[name] for row in data]


def prepare_dataset(model: SiamText, data: Any, spec: DataSpec, pretokenized: bool,
                    what: str = "train_dataset") -> TokenizedDataset:
    """Rows ready for the collator: text columns tokenised (or kept as text), labels as
    numbers (class labels of any type become ids 0..C-1, kept in ``spec.classes``)."""
    if pretokenized:
        ds = pretokenize(model, data, spec.text_columns, spec.label_column, what=what)
    else:
        cols = {c: _values(data, c) for c in spec.text_columns}
        if spec.label_column:
            cols[spec.label_column] = _values(data, spec.label_column)
        first = cols[spec.text_columns[0]]
        ds = TokenizedDataset(cols, [max(len(cols[c][i]) for c in spec.text_columns) // 4 + 1
                                     for i in range(len(first))])
    if spec.label_column and spec.label_dtype == torch.long:
        ids, spec.classes = encode_labels(ds.columns[spec.label_column])
        ds.columns[spec.label_column] = ids
    elif spec.label_column:
        ds.columns[spec.label_column] = [float(v) for v in ds.columns[spec.label_column]]
    return ds


# ---------------------------------------------------------------------- sub-batching
class SubBatchedTower(nn.Module):
    """Run a tower on length-sorted sub-batches, each trimmed to its own longest row.

    A sentence's embedding does not depend on the other rows of its batch, so splitting a
    right-padded batch by length and trimming the padding changes no embedding (beyond float
    rounding) while computing fewer padded positions. Other attributes are read from the
    wrapped tower, so a loss can use it in place of the model.

    Args:
        tower: The :class:`~siamtext.SiamText` to run.
        size: Rows per sub-batch.
    """

    def __init__(self, tower: SiamText, size: int) -> None:
        super().__init__()
        self.tower = tower
        self.size = check_positive_int(size, "size")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                **inputs: torch.Tensor) -> torch.Tensor:
        n = input_ids.shape[0]
        if n <= self.size:
            return self.tower(input_ids=input_ids, attention_mask=attention_mask, **inputs)
        lengths = attention_mask.sum(dim=1)
        order = torch.argsort(lengths, descending=True)
        parts = []
        for start in range(0, n, self.size):
            rows = order[start : start + self.size]
            width = max(1, int(lengths[rows].max()))
            parts.append(self.tower(input_ids=input_ids[rows, :width],
                                    attention_mask=attention_mask[rows, :width],
                                    **{k: v[rows, :width] for k, v in inputs.items()}))
        return torch.cat(parts)[torch.argsort(order)]

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["tower"], name)


# ---------------------------------------------------------------------- trainer
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
            return ClassBalancedBatchSampler(rows.columns[label], bs, args.samples_per_class,
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


def load_weights(model: SiamText, folder: str | os.PathLike) -> None:
    """Load the transformer weights saved by ``model.save_pretrained(folder)`` into ``model``.

    Raises:
        ValueError: If the folder has no ``model.safetensors`` or the weights do not fit.
    """
    path = os.path.join(folder, "model.safetensors")
    if not os.path.isfile(path):
        raise ValueError(f"checkpoint {folder} has no model.safetensors")
    state = load_file(path, device=str(model.device))
    missing, unexpected = model.transformer.load_state_dict(state, strict=False)
    # tied or non-persistent buffers may be absent from the file; real weights may not
    missing = [k for k in missing if not k.endswith(("position_ids", "token_type_ids"))]
    if missing or unexpected:
        raise ValueError(f"checkpoint {folder} does not fit the model: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")


# ---------------------------------------------------------------------- fit
def make_loss(model: SiamText, loss: str | type | nn.Module,
              params: Mapping[str, Any] | None = None) -> nn.Module:
    """A loss instance from a name (``"CoSENTLoss"`` or ``"cosent"``), a class or an instance.

    Raises:
        ValueError: For an unknown loss name, or params given with a loss instance.
    """
    if isinstance(loss, nn.Module):
        if params:
            raise ValueError("loss_params cannot be used with a loss instance; pass the "
                             "loss class or name instead")
        return loss
    if isinstance(loss, str):
        import siamtext.losses as losses

        table = {name: cls for name, cls in vars(losses).items()
                 if isinstance(cls, type) and name.endswith("Loss") and name != "SiamLoss"}
        table.update(getattr(losses, "LOSSES", {}))
        if loss not in table:
            raise ValueError(f"loss must be one of {sorted(table)}, got {loss!r}")
        loss = table[loss]
    if not isinstance(loss, type):
        raise TypeError(f"loss must be a name, a loss class or a loss instance, got "
                        f"{type(loss).__name__}")
    return loss(model, **dict(params or {}))


def fit(model: SiamText, train_dataset: Any,
        loss: str | type | nn.Module = "MultipleNegativesRankingLoss", *,
        loss_params: Mapping[str, Any] | None = None, eval_dataset: Any | None = None,
        evaluator: Evaluator | None = None, epochs: float = 1, batch_size: int = 32,
        learning_rate: float = 2e-5, warmup_ratio: float = 0.1, output_dir: str | None = None,
        columns: Mapping[str, str] | None = None, eval_steps: int | None = None,
        metric_for_best_model: str | None = None, resume_from_checkpoint: str | bool | None = None,
        show_progress: bool | None = None, seed: int = 42,
        **training_args: Any) -> SiamText:
    """Fine-tune ``model`` in place on ``train_dataset`` and return it.

    Args:
        model: The :class:`~siamtext.SiamText` to train.
        train_dataset: Rows whose columns fit the loss (a ``datasets.Dataset``, dict of
            lists or list of dicts): ``sentence1, sentence2, label`` for pair losses,
            ``anchor, positive[, negative][, label]`` for triplet / in-batch losses,
            ``text, label`` for the batch-mining losses (rename with ``columns``).
        loss: A loss name (``"CoSENTLoss"``, ``"cosent"``...), class or instance.
        loss_params: Keyword arguments of the loss class.
        eval_dataset: Rows in the same format, for an ``eval_loss``.
        evaluator: ``evaluator(model) -> metrics`` run at each evaluation
            (:mod:`siamtext.evaluation`).
        epochs: Passes over the data.
        batch_size: Rows per batch.
        learning_rate: Peak AdamW learning rate.
        warmup_ratio: Share of the steps with linear warm-up (then linear decay).
        output_dir: Where checkpoints go; ``None`` keeps none.
        columns: Default column name -> the data's column name.
        eval_steps: Evaluate every this many steps (default: at the end of each epoch,
            when there is something to evaluate).
        metric_for_best_model: Keep and reload the best checkpoint by this metric (e.g.
            ``"eval_sts_spearman"``); needs evaluation.
        resume_from_checkpoint: A checkpoint folder, or True for the latest in
            ``output_dir``.
        show_progress: Show a progress bar (default: transformers' choice).
        seed: Seed of the initialisation, data order and dropout.
        **training_args: Any other :class:`TrainingArguments` field.

    Returns:
        The trained model (the same object). ``model.card_data.training`` records the
        set-up and ``model.card_data.eval_metrics`` the last evaluation.

    Raises:
        ValueError: For data that does not fit the loss (missing columns, labels outside
            {0, 1} for contrastive losses, NaN scores, a single class for triplet mining,
            an empty dataset) or impossible batching (batch size smaller than P x K),
            before training starts.
    """
    check_positive_int(batch_size, "batch_size")
    if not (isinstance(epochs, (int, float)) and epochs > 0):
        raise ValueError(f"epochs must be a positive number, got {epochs!r}")
    if not (isinstance(learning_rate, (int, float)) and learning_rate > 0):
        raise ValueError(f"learning_rate must be a positive number, got {learning_rate!r}")
    if not (0 <= warmup_ratio < 1):
        raise ValueError(f"warmup_ratio must be in [0, 1), got {warmup_ratio!r}")
    loss_fn = make_loss(model, loss, loss_params)
    has_eval = eval_dataset is not None or evaluator is not None
    tmp = None
    if output_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="siamtext-")
        output_dir = tmp.name
    settings: dict[str, Any] = {
        "output_dir": output_dir, "num_train_epochs": epochs,
        "per_device_train_batch_size": batch_size, "per_device_eval_batch_size": batch_size,
        "learning_rate": learning_rate, "warmup_steps": warmup_ratio, "seed": seed,
    }
    if has_eval:
        settings["eval_strategy"] = "steps" if eval_steps else "epoch"
        if eval_steps:
            settings["eval_steps"] = eval_steps
    if metric_for_best_model:
        settings.update(metric_for_best_model=metric_for_best_model, load_best_model_at_end=True,
                        save_strategy=settings.get("eval_strategy", "epoch"))
        if eval_steps:
            settings["save_steps"] = eval_steps
    elif tmp is None:
        settings["save_strategy"] = "steps" if eval_steps else "epoch"
        if eval_steps:
            settings["save_steps"] = eval_steps
    if show_progress is not None:
        settings["disable_tqdm"] = not show_progress
    settings.update(training_args)
    args = TrainingArguments(**settings)
    trainer = SiamTextTrainer(model, args, train_dataset, loss_fn, eval_dataset=eval_dataset,
                              evaluator=evaluator, columns=columns)
    try:
        output = trainer.train(resume_from_checkpoint=resume_from_checkpoint)
        metrics = trainer.evaluate() if has_eval else {}
    finally:
        if tmp is not None:
            tmp.cleanup()
    record_training(model, loss_fn, trainer, output.metrics, metrics)
    model.eval()
    return model


def record_training(model: SiamText, loss: nn.Module, trainer: SiamTextTrainer,
                    train_metrics: Mapping[str, float], eval_metrics: Mapping[str, float]) -> None:
    """Write the training set-up and the last metrics into ``model.card_data``."""
    card = getattr(model, "card_data", None)
    if card is None:
        card = ModelCardData(base_model=model.config.base_model)
        model.card_data = card
    args = trainer.args
    get_config = getattr(loss, "get_config_dict", None)
    card.training = {
        "loss": type(loss).__name__,
        "loss_config": get_config() if get_config else {},
        "input_format": trainer.input_format,
        "epochs": args.num_train_epochs,
        "batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "learning_rate": args.learning_rate,
        "warmup_ratio": args.warmup_steps,
        "batch_sampler": trainer._sampler_kind(args),
        "sub_batch_size": trainer._sub_batch_size(),
        "rows": len(trainer.train_rows),
        "rows_seen": trainer.rows_seen,
        "steps": trainer.state.global_step,
        "seed": args.seed,
        "train_loss": float(train_metrics.get("train_loss", float("nan"))),
    }
    card.eval_metrics = {k: float(v) for k, v in eval_metrics.items()
                         if isinstance(v, (int, float)) and k != "epoch"}
