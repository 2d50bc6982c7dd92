"""``TrainingArguments``: ``transformers.TrainingArguments`` with siamtext's defaults and
batching options."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import torch
import transformers

from siamtext.validation import check_choice, check_positive_int

BatchSampler = Literal["auto", "length", "no_duplicates", "class_balanced", "random"]

#: The training argument that turns activation checkpointing on: transformers renamed
#: ``gradient_checkpointing`` to ``activation_checkpointing`` in 5.23 (keeping the old name as a
#: deprecated alias; 5.22 and before have only the old one), so callers set whichever this one has.
_FIELDS = transformers.TrainingArguments.__dataclass_fields__
CHECKPOINTING_ARGUMENT = ("activation_checkpointing" if "activation_checkpointing" in _FIELDS
                          else "gradient_checkpointing")


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
        samples_per_class: K of the class-balanced sampler; ``None`` takes the loss's
            ``samples_per_class`` (4 for the batch-triplet losses, 2 for
            :class:`~siamtext.losses.SupervisedContrastiveLoss`).
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
        mixed_precision: ``"auto"`` (bf16 on a GPU that supports it, else fp16 with loss
            scaling on a GPU, fp32 on CPU), ``"no"``, ``"bf16"`` or ``"fp16"``.
        nan_policy: What a NaN or infinite loss or gradient norm does
            (:mod:`siamtext.training.guard`): ``"raise"`` (default) stops training with a
            :class:`~siamtext.training.NonFiniteError` naming the step and the last good
            checkpoint, before any NaN weight is saved; ``"skip"`` drops that step's update
            with a warning and counts it.

    Data-parallel training: launched by ``torchrun`` or ``accelerate launch`` (NCCL on GPUs,
    gloo on CPUs: a machine without a GPU trains on its CPUs), ``per_device_train_batch_size``
    is each process's share and the global batch is that times the number of processes (see
    :mod:`siamtext.data.batching`). Defaults changed for it: ``ddp_find_unused_parameters``
    off (the trainer freezes the transformer's unused pooler instead, so DDP does not search
    the graph on every forward). ``ddp_timeout`` (s) bounds how long the others wait for a
    process that stopped answering.
    """

    output_dir: str | None = None
    learning_rate: float = 2e-5
    warmup_steps: float = 0.1
    remove_unused_columns: bool = False
    report_to: None | str | list[str] = "none"
    save_strategy: str = "no"
    logging_steps: float = 50
    batch_sampler: str = "auto"
    samples_per_class: int | None = None
    classes_per_batch: int | None = None
    mega_batches: int = 4
    pretokenize: bool = True
    sub_batch_size: int | None = None
    mixed_precision: str = "auto"
    nan_policy: str = "raise"
    ddp_find_unused_parameters: bool | None = False

    def __post_init__(self) -> None:
        check_choice(self.batch_sampler,
                     ("auto", "length", "no_duplicates", "class_balanced", "random"),
                     "batch_sampler")
        check_choice(self.mixed_precision, ("auto", "no", "bf16", "fp16"), "mixed_precision")
        check_choice(self.nan_policy, ("raise", "skip"), "nan_policy")
        if self.samples_per_class is not None:
            check_positive_int(self.samples_per_class, "samples_per_class")
        check_positive_int(self.mega_batches, "mega_batches")
        if self.sub_batch_size is not None and (
            isinstance(self.sub_batch_size, bool) or not isinstance(self.sub_batch_size, int)
            or self.sub_batch_size < 0
        ):
            raise ValueError(f"sub_batch_size must be None or an int >= 0, got "
                             f"{self.sub_batch_size!r}")
        if _launched_on_cpus():
            self.use_cpu = True  # accelerate then starts gloo across the processes
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


def _launched_on_cpus() -> bool:
    """Whether a launcher started several processes on a machine without a GPU (or MPS)."""
    several = int(os.environ.get("WORLD_SIZE", "1")) > 1
    mps = getattr(torch.backends, "mps", None)
    gpu = torch.cuda.is_available() or (mps is not None and mps.is_available())
    return several and not gpu
