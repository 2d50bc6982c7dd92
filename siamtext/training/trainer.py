"""``SiamTextTrainer``: a ``transformers.Trainer`` that trains a :class:`~siamtext.SiamText`
with a siamtext loss; this module holds its set-up and training loop.

The loop: the rows are checked and tokenised before anything else, then each step embeds
its batch through the tower (the DDP wrapper under data-parallel training, sub-batches on
the CPU), calls the siamtext loss and lets the NaN guard (:mod:`.guard`) stop on, or drop,
a NaN or inf step. The rest of the trainer comes from one mixin per concept: the batch
samplers and data loaders (:mod:`.loaders`), checkpoints written atomically and resumed
(:mod:`.checkpoint`) and evaluation with an evaluator's metrics (:mod:`.eval_hooks`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
import transformers
from torch import nn

from siamtext import distributed
from siamtext.data.collators import TextCollator
from siamtext.data.prepare import check_data, prepare_dataset, resolve_columns
from siamtext.failpoints import failpoint
from siamtext.training.arguments import CHECKPOINTING_ARGUMENT, TrainingArguments
from siamtext.training.checkpoint import CheckpointMixin, remove_partial_checkpoints
from siamtext.training.eval_hooks import EvaluationMixin
from siamtext.training.guard import NonFiniteGuard
from siamtext.training.loaders import LoadersMixin
from siamtext.training.tower import SubBatchedTower

if TYPE_CHECKING:
    from siamtext.model import SiamText

logger = logging.getLogger(__name__)

Evaluator = Callable[["SiamText"], Mapping[str, float]]


class SiamTextTrainer(LoadersMixin, CheckpointMixin, EvaluationMixin, transformers.Trainer):
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
        self._check_args(args)
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
        collator = TextCollator(model, self.spec.text_columns, self.spec.label_column,
                                self.spec.label_dtype, device="cpu")
        self._set_up(model, args, collator, eval_rows, callbacks)

    @staticmethod
    def _check_args(args: Any) -> None:
        """Raise ``TypeError`` unless ``args`` is a siamtext ``TrainingArguments``."""
        if not isinstance(args, TrainingArguments):
            raise TypeError(f"args must be siamtext.training.TrainingArguments, got "
                            f"{type(args).__name__}")

    def _set_up(self, model: SiamText, args: TrainingArguments, collator: Callable,
                eval_rows: Any | None,
                callbacks: list[transformers.TrainerCallback] | None) -> None:
        """The set-up after the data (``loss``, ``evaluator``, ``input_format``, ``spec`` and
        ``train_rows`` are set): the batching is checked, activation checkpointing turned
        on, ``transformers.Trainer`` built and the siamtext state started. Trainers on
        other rows (:class:`~siamtext.training.distill_trainer.DistillationTrainer`) call it
        after their own data."""
        self._make_sampler(args)  # raises on impossible batching, before training
        # either name: transformers < 5.23 has only gradient_checkpointing
        if getattr(args, CHECKPOINTING_ARGUMENT) or args.gradient_checkpointing:
            enable = getattr(model.transformer, "activation_checkpointing_enable", None) or \
                model.transformer.gradient_checkpointing_enable
            enable()
            setattr(args, CHECKPOINTING_ARGUMENT, False)
            args.gradient_checkpointing = False
        super().__init__(model=model, args=args, data_collator=collator,
                         train_dataset=self.train_rows, eval_dataset=eval_rows,
                         callbacks=callbacks)
        self.model_accepts_loss_kwargs = False
        self.can_return_loss = True
        self.rows_seen = 0  # training rows embedded so far (this process)
        self.nan_guard = NonFiniteGuard(args.nan_policy, args.device)
        self.last_checkpoint: str | None = None  # the last complete checkpoint, for errors
        self._staging: str | None = None  # the checkpoint folder being written
        if args.disable_tqdm:  # quiet: logs go to the logger, not to stdout
            self.remove_callback(transformers.PrinterCallback)
            self.add_callback(_LoggerCallback())
        self.label_names = []

    # ------------------------------------------------------------------ training
    def train(self, resume_from_checkpoint: str | bool | None = None, *args: Any,
              **kwargs: Any) -> transformers.trainer_utils.TrainOutput:
        """Train (see ``transformers.Trainer.train``).

        Args:
            resume_from_checkpoint: A checkpoint folder to resume from, or True for the
                latest complete one in ``output_dir``; when there is none yet (a run killed
                before its first checkpoint, or a first run), training starts afresh with a
                warning, so a scheduler can restart the same command. A resumed run ends
                with the weights of an uninterrupted one (bitwise on CPU).

        Under ``torchrun`` or ``accelerate launch`` every process runs this with its slice of
        each global batch; a process that fails makes the others stop with an error that
        says so, instead of waiting for it.

        Raises:
            ValueError: If the given checkpoint folder is incomplete (naming what is missing).
            NonFiniteError: For a NaN or inf loss or gradient under ``nan_policy="raise"``.
        """
        resume_from_checkpoint = self._resolve_checkpoint(resume_from_checkpoint)
        self.last_checkpoint = resume_from_checkpoint
        if self.args.should_save and self.args.output_dir:
            remove_partial_checkpoints(self.args.output_dir)
        frozen = _freeze_unused(self.model)
        self._log_batching()
        try:
            output = super().train(resume_from_checkpoint, *args, **kwargs)
            self.nan_guard.check(self.last_checkpoint)
            return output
        except RuntimeError as err:
            if distributed.is_distributed() and _is_collective_failure(err):
                raise RuntimeError(
                    f"rank {distributed.rank()} of {distributed.world_size()}: another process "
                    f"of this data-parallel run stopped or cannot be reached ({err}); this "
                    "process stops too. Look for the first error in the other processes' "
                    "output.") from err
            raise
        finally:
            for param in frozen:
                param.requires_grad_(True)

    def _log_batching(self) -> None:
        args = self.args
        world = max(1, args.world_size)
        if world > 1 and args.should_log:
            logger.warning("Data-parallel training on %d processes: per-device batch %d x %d "
                           "processes = global batch %d rows (x %d accumulation steps per "
                           "update)", world, args.per_device_train_batch_size, world,
                           self._global_batch_size(args), args.gradient_accumulation_steps)

    # ------------------------------------------------------------------ one step
    def training_step(self, model: nn.Module, inputs: dict[str, Any],
                      num_items_in_batch: torch.Tensor | int | None = None) -> torch.Tensor:
        """Forward and backward of one micro-batch; its loss is checked for NaN/inf."""
        loss = super().training_step(model, inputs, num_items_in_batch)
        self.nan_guard.observe_loss(loss)
        failpoint("step", self.state.global_step + 1)
        return loss

    def _get_grad_norm(self, model: nn.Module,
                       grad_norm: torch.Tensor | float | None = None) -> torch.Tensor | float:
        """The gradient norm (computed by ``transformers.Trainer`` right before the optimizer
        step), and the place to stop on, or drop, a NaN/inf step (:mod:`.guard`)."""
        grad_norm = super()._get_grad_norm(model, grad_norm=grad_norm)
        scaled = getattr(self.accelerator, "scaler", None) is not None  # fp16: the scaler's
        if not self.nan_guard.allow_update(grad_norm, self.state.global_step + 1,
                                           self.last_checkpoint, check_grad=not scaled):
            model.zero_grad(set_to_none=True)  # AdamW leaves parameters without grads alone
        return grad_norm

    def _maybe_log_save_evaluate(self, *args: Any, **kwargs: Any) -> None:
        control = self.control
        if control.should_log or control.should_save or control.should_evaluate:
            self.nan_guard.check(self.last_checkpoint)  # deferred (GPU): waits here anyway
        super()._maybe_log_save_evaluate(*args, **kwargs)

    # ------------------------------------------------------------------ loss
    def compute_loss(self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: torch.Tensor | int | None = None,
                     ) -> torch.Tensor | tuple[torch.Tensor, dict]:
        """The siamtext loss of a batch, embedded through ``model``: under DDP the wrapped
        module, so that its gradients are all-reduced; on CPU in sub-batches."""
        features = inputs["features"]
        with self._embedding_through(model):
            loss = self.loss(features, inputs.get("labels"))
        if self.model.training:
            self.rows_seen += int(features[0]["input_ids"].shape[0])
        return (loss, {}) if return_outputs else loss

    @contextmanager
    def _embedding_through(self, model: nn.Module) -> Iterator[None]:
        """Let the loss embed through ``model`` (the DDP wrapper while training), in
        sub-batches on CPU, for the duration of one call."""
        own = getattr(self.loss, "model", None)
        if own is not self.model:  # the loss trains something else: leave it alone
            yield
            return
        size = self._sub_batch_size() if self.model.training else 0
        tower = SubBatchedTower(model, size or None) if (size or model is not own) else own
        self.loss.model = tower
        try:
            yield
        finally:
            self.loss.model = own


class _LoggerCallback(transformers.TrainerCallback):
    """Send the trainer's logs to this module's logger (INFO)."""

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None,
               **kwargs: Any) -> None:
        if logs and state.is_world_process_zero:
            logger.info("step %d: %s", state.global_step, logs)


def _freeze_unused(model: SiamText) -> list[nn.Parameter]:
    """Freeze the parameters the tower never uses (the transformer's pooler: siamtext pools
    the token states itself) and return them.

    They get no gradient anyway; frozen, DDP does not wait for their gradients, so it runs
    without ``find_unused_parameters`` (no graph search on every forward).
    """
    pooler = getattr(model.transformer, "pooler", None)
    if not isinstance(pooler, nn.Module):
        return []
    params = [p for p in pooler.parameters() if p.requires_grad]
    for param in params:
        param.requires_grad_(False)
    return params


def _is_collective_failure(err: RuntimeError) -> bool:
    """Whether ``err`` comes from a collective whose peer died or timed out."""
    backend_error = getattr(torch.distributed, "DistBackendError", ())
    text = str(err).lower()
    return isinstance(err, backend_error) or any(
        m in text for m in ("connection closed", "connection reset", "timed out", "timeout",
                            "broken pipe", "gloo", "nccl"))
