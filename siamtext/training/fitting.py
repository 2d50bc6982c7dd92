"""``fit``: fine-tune a :class:`~siamtext.SiamText` in one call (build the loss, the
arguments and the trainer, train, record the set-up in the model card)."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from torch import nn

from siamtext import distributed
from siamtext.model_card import ModelCardData
from siamtext.training.arguments import TrainingArguments
from siamtext.training.trainer import Evaluator, SiamTextTrainer
from siamtext.validation import check_positive_int

if TYPE_CHECKING:
    from siamtext.model import SiamText


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
    return loss_class(loss)(model, **dict(params or {}))


def loss_class(loss: str | type) -> type:
    """The loss class of a name (``"CoSENTLoss"`` or ``"cosent"``) or a class, unbuilt: its
    class attributes (``input_format``, ``samples_per_class``) without a model.

    Raises:
        ValueError: For an unknown loss name.
        TypeError: For anything but a name or a class.
    """
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
    return loss


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
        batch_size: Rows per batch on each process; under ``torchrun`` / ``accelerate
            launch`` the global batch is this times the number of processes.
        learning_rate: Peak AdamW learning rate.
        warmup_ratio: Share of the steps with linear warm-up (then linear decay).
        output_dir: Where checkpoints go; ``None`` keeps none.
        columns: Default column name -> the data's column name.
        eval_steps: Evaluate every this many steps (default: at the end of each epoch,
            when there is something to evaluate).
        metric_for_best_model: Keep and reload the best checkpoint by this metric (e.g.
            ``"eval_sts_spearman"``); needs evaluation.
        resume_from_checkpoint: A checkpoint folder, or True for the latest complete one
            in ``output_dir`` (none yet: training starts afresh, with a warning). The run
            then ends with the weights of an uninterrupted one (bitwise on CPU).
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
        NonFiniteError: For a NaN or inf loss or gradient norm (``nan_policy="raise"``,
            the default; pass ``nan_policy="skip"`` to skip such steps), naming the step
            and the last good checkpoint.
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
    args = TrainingArguments(**settings)  # starts the process group under a launcher
    if tmp is not None and distributed.is_distributed():
        # the best checkpoint must be where every rank looks for it: rank 0's folder
        args.output_dir = distributed.broadcast_from_main(args.output_dir)
    trainer = SiamTextTrainer(model, args, train_dataset, loss_fn, eval_dataset=eval_dataset,
                              evaluator=evaluator, columns=columns)
    try:
        output = trainer.train(resume_from_checkpoint=resume_from_checkpoint)
        metrics = trainer.evaluate() if has_eval else {}
    finally:
        if tmp is not None:
            distributed.barrier()  # nobody still reads rank 0's checkpoints
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
        "world_size": max(1, args.world_size),
        "global_batch_size": trainer._global_batch_size(args),
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
    if trainer.nan_guard.skipped:
        card.training["skipped_steps"] = len(trainer.nan_guard.skipped)
    if card.training["batch_sampler"] == "class_balanced":
        card.training["samples_per_class"] = trainer._samples_per_class(args)
    card.eval_metrics = {k: float(v) for k, v in eval_metrics.items()
                         if isinstance(v, (int, float)) and k != "epoch"}
