"""``SiamTextTrainer``: a ``transformers.Trainer`` that trains a :class:`~siamtext.SiamText`
with a siamtext loss."""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import transformers
from accelerate.data_loader import prepare_data_loader
from torch import nn
from torch.utils.data import DataLoader
from transformers.trainer_callback import ExportableState
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, SaveStrategy, rotate_checkpoints

from siamtext import distributed
from siamtext.atomic import commit_folder, write_folder
from siamtext.data.batching import choose_batch_sampler, make_batch_sampler
from siamtext.data.collators import TextCollator
from siamtext.data.prepare import TokenizedDataset, check_data, prepare_dataset, resolve_columns
from siamtext.failpoints import failpoint
from siamtext.finite import check_finite
from siamtext.training.arguments import TrainingArguments
from siamtext.training.checkpoint import (
    ARGS_NAME,
    PARTIAL,
    checkpoint_problem,
    latest_checkpoint,
    load_weights,
    remove_partial_checkpoints,
)
from siamtext.training.guard import NonFiniteGuard
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
        self._make_sampler(args)  # raises on impossible batching, before training
        if args.activation_checkpointing or args.gradient_checkpointing:
            enable = getattr(model.transformer, "activation_checkpointing_enable", None) or \
                model.transformer.gradient_checkpointing_enable
            enable()
            args.activation_checkpointing = args.gradient_checkpointing = False
        collator = TextCollator(model, self.spec.text_columns, self.spec.label_column,
                                self.spec.label_dtype, device="cpu")
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

    # ------------------------------------------------------------------ batching
    def _sampler_kind(self, args: TrainingArguments) -> str:
        cached = getattr(self, "_kind", None)
        if cached is not None and cached[0] == args.batch_sampler:
            return cached[1]
        kind = choose_batch_sampler(args.batch_sampler, self.input_format, self.train_rows,
                                    self.spec, self._global_batch_size(args))
        self._kind = (args.batch_sampler, kind)
        return kind

    def _samples_per_class(self, args: TrainingArguments) -> int:
        """K of P x K batches: the argument if set, else the loss's preference."""
        return args.samples_per_class or getattr(self.loss, "samples_per_class", 4)

    @staticmethod
    def _global_batch_size(args: TrainingArguments) -> int:
        """Rows of one forward step over all processes: per-device batch x world size."""
        return args.per_device_train_batch_size * max(1, args.world_size)

    def _make_sampler(self, args: TrainingArguments) -> torch.utils.data.Sampler:
        """This process's slice of the global batches (the global sampler in one process)."""
        return make_batch_sampler(
            self._sampler_kind(args), self.train_rows, self.spec,
            batch_size=args.per_device_train_batch_size, world_size=max(1, args.world_size),
            rank=args.process_index, samples_per_class=self._samples_per_class(args),
            classes_per_batch=args.classes_per_batch, mega_batches=args.mega_batches,
            seed=args.data_seed if args.data_seed is not None else args.seed,
            drop_last=args.dataloader_drop_last)

    def _sub_batch_size(self) -> int:
        size = self.args.sub_batch_size
        if size is None:
            size = 8 if self.args.device.type == "cpu" else 0
        return size

    def get_train_dataloader(self) -> DataLoader:
        """Batches of this process's slice of each global batch, padded on the CPU (pinned on
        a GPU) and copied to the device without blocking."""
        args = self.args
        pin = args.dataloader_pin_memory and args.device.type == "cuda"
        workers = args.dataloader_num_workers
        loader = DataLoader(self.train_rows, batch_sampler=self._make_sampler(args),
                            collate_fn=self.data_collator, num_workers=workers, pin_memory=pin,
                            persistent_workers=workers > 0 and args.dataloader_persistent_workers)
        # The sampler already gives each rank its slice of the global batch: prepare the
        # loader as for one process, so that accelerate does not shard the batches again.
        prepared = prepare_data_loader(loader, device=args.device, num_processes=1,
                                       process_index=0, put_on_device=True, non_blocking=pin)
        self.accelerator._dataloaders.append(prepared)  # as Accelerator.prepare does
        return prepared

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

    def _resolve_checkpoint(self, resume: str | bool | None) -> str | None:
        """The checkpoint folder to resume from: checked, or found (``True``), or None."""
        if resume is None or resume is False:
            return None
        if resume is True:
            found = latest_checkpoint(self.args.output_dir)
            if found is None:
                logger.warning("No complete checkpoint in %s yet: starting from the beginning.",
                               self.args.output_dir)
            return found
        problem = checkpoint_problem(resume)
        if problem is not None:
            raise ValueError(f"resume_from_checkpoint={str(resume)!r} cannot be resumed "
                             f"from: {problem}")
        return str(resume)

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
        """Write the model folder and the training arguments: straight into the staging
        folder of a checkpoint, else atomically (:mod:`siamtext.atomic`)."""
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:  # rank 0 (or each node's first with save_on_each_node)
            return
        check_finite(self.model.transformer.state_dict().items(),
                     f"refusing to save {output_dir}")
        if output_dir == self._staging:
            self._write_model(Path(output_dir), os.path.basename(output_dir)[1:-len(PARTIAL)])
        else:
            write_folder(output_dir, lambda tmp: self._write_model(tmp, Path(output_dir).name))

    def _write_model(self, folder: Path, name: str) -> None:
        self.model._write_files(folder, name)
        args = {k: v for k, v in self.args.to_dict().items() if _jsonable(v)}
        with open(folder / ARGS_NAME, "w", encoding="utf-8") as f:
            json.dump(args, f, indent=2)

    def _save_checkpoint(self, model: nn.Module, trial: Any) -> None:
        """``transformers.Trainer._save_checkpoint``, written atomically.

        Every part (model folder, optimizer, schedule, scaler, random-generator states of
        every process, trainer state last) goes into ``.checkpoint-N.partial``; once all are
        in, it is flushed and renamed to ``checkpoint-N``. A run killed at any moment leaves
        the earlier checkpoints as they were and no ``checkpoint-N`` that is half-written.
        """
        self.nan_guard.check(self.last_checkpoint)  # never save weights a NaN step made
        args, state = self.args, self.state
        name = f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        run_dir = self._get_output_dir(trial=trial)
        final = os.path.join(run_dir, name)
        staging = os.path.join(run_dir, f".{name}{PARTIAL}")
        distributed.barrier()
        if args.should_save:
            shutil.rmtree(staging, ignore_errors=True)
            os.makedirs(staging)
        distributed.barrier()  # every process writes its random-generator state into it
        self._staging = staging
        try:
            if self.hp_search_backend is None and trial is None:
                self.store_flos()
            self.save_model(staging, _internal_call=True)
            failpoint("checkpoint", state.global_step)
            if args.save_strategy in (SaveStrategy.STEPS, SaveStrategy.EPOCH,
                                      SaveStrategy.BEST) and state.best_global_step:
                best = os.path.join(run_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.best_global_step}")
                if state.best_global_step == state.global_step or os.path.exists(best):
                    state.best_model_checkpoint = best
            if not args.save_only_model:
                self._save_optimizer_and_scheduler(staging)
                self._save_scaler(staging)
                self._save_rng_state(staging)
            if args.should_save:
                for cb in [cb for cb in self.callback_handler.callbacks + [self.control]
                           if isinstance(cb, ExportableState)]:
                    cb_name = cb.__class__.__name__
                    if isinstance(state.stateful_callbacks[cb_name], list):
                        state.stateful_callbacks[cb_name].append(cb.state())
                    else:
                        state.stateful_callbacks[cb_name] = cb.state()
                state.save_to_json(os.path.join(staging, transformers.trainer.TRAINER_STATE_NAME))
        finally:
            self._staging = None
        distributed.barrier()
        if args.should_save:
            commit_folder(staging, final, keep_others=False)
        distributed.barrier()
        self.last_checkpoint = final
        if args.push_to_hub:
            self._push_from_checkpoint(final)
        if args.should_save:
            rotate_checkpoints(output_dir=run_dir, save_total_limit=args.save_total_limit,
                               best_model_checkpoint=state.best_model_checkpoint, use_mtime=True)

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


def _jsonable(value: object) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
