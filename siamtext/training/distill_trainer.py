"""The pieces that run embedding distillation on the siamtext trainer: (text, target) rows,
their collator, the trainer that takes them, a held-out evaluator and a time budget."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import transformers
from torch import nn

from siamtext.data.prepare import DataSpec, TokenizedDataset
from siamtext.training.arguments import TrainingArguments
from siamtext.training.trainer import SiamTextTrainer

if TYPE_CHECKING:
    from siamtext.model import SiamText

logger = logging.getLogger(__name__)

TEXT, TARGET = "text", "target"


def target_rows(model: SiamText, texts: Sequence[str], targets: np.ndarray) -> TokenizedDataset:
    """Rows ``{"text": token ids, "target": (dim,) float32 tensor}``, tokenised once.

    Raises:
        ValueError: If ``targets`` is not ``(len(texts), dim)``.
    """
    targets = np.asarray(targets, dtype=np.float32)
    if targets.ndim != 2 or len(targets) != len(texts):
        raise ValueError(f"targets must be ({len(texts)}, dim), one row per text, got shape "
                         f"{targets.shape}")
    ids = model.token_ids(list(texts))
    return TokenizedDataset({TEXT: ids, TARGET: list(torch.from_numpy(targets))},
                            [len(x) for x in ids])


class TargetCollator:
    """``(text, target)`` rows -> ``{"features": [padded batch], "labels": (batch, dim)}``.

    The teacher embeddings ride where other losses get their labels, so the trainer moves
    them to the device with the batch and hands them to the loss unchanged.
    """

    def __init__(self, model: SiamText, device: str | torch.device | None = "cpu") -> None:
        self.model = model
        self.device = device

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        if not rows:
            raise ValueError("cannot collate an empty list of rows")
        features = [self.model.pad([row[TEXT] for row in rows], self.device)]
        labels = torch.stack([torch.as_tensor(row[TARGET], dtype=torch.float32) for row in rows])
        return {"features": features, "labels": labels}


class DistillationTrainer(SiamTextTrainer):
    """A :class:`~siamtext.training.SiamTextTrainer` on ``(text, teacher embedding)`` rows.

    Everything after the data is the siamtext trainer's: checkpoints written atomically and
    resumed bit for bit, the NaN guard, data-parallel training (each process embeds its
    slice of every global batch, the gradients are all-reduced), mixed precision, CPU
    sub-batches, logs and evaluation by ``evaluator``. Only the rows differ: one text
    column and a column of teacher embeddings, in length-grouped batches.

    Args:
        model: The student (changed in place).
        args: :class:`~siamtext.training.TrainingArguments`; ``batch_sampler`` ``"auto"``
            means ``"length"``.
        rows: From :func:`target_rows`.
        loss: An :class:`~siamtext.training.distill_loss.EmbeddingDistillationLoss` on
            ``model``.
        evaluator: ``evaluator(model) -> metrics``, e.g. :class:`TeacherAgreement`.
        callbacks: Extra ``transformers.TrainerCallback`` objects.

    Raises:
        TypeError: For ``args`` of another class.
        ValueError: For a loss of another ``input_format``, or a class-based
            ``batch_sampler`` (the rows have no classes).
    """

    def __init__(self, model: SiamText, args: TrainingArguments, rows: TokenizedDataset,
                 loss: nn.Module, evaluator: Any | None = None,
                 callbacks: list[transformers.TrainerCallback] | None = None) -> None:
        self._check_args(args)
        if getattr(loss, "input_format", None) != "text_target":
            raise ValueError(f"loss must take 'text_target' rows (text, teacher embedding), "
                             f"got {type(loss).__name__} with input_format "
                             f"{getattr(loss, 'input_format', None)!r}")
        if args.batch_sampler == "auto":
            args.batch_sampler = "length"
        if args.batch_sampler in ("class_balanced", "one_per_class"):
            raise ValueError(f"batch_sampler={args.batch_sampler!r} needs class labels; "
                             "distillation rows have none (use 'length', 'no_duplicates' or "
                             "'random')")
        self.loss = loss
        self.evaluator = evaluator
        self.input_format = "text_target"
        self.spec = DataSpec([TEXT], None)
        self.train_rows = rows
        # the siamtext trainer's set-up after its data, around transformers.Trainer's own
        self._set_up(model, args, TargetCollator(model), None, callbacks)


class TeacherAgreement:
    """How close a student's embeddings of held-out texts are to the teacher's.

    Args:
        texts: Held-out texts (never trained on).
        targets: The teacher's ``(len(texts), dim)`` embeddings of them.
        batch_size: Encoding batch size.

    Returns (when called with a model):
        ``{"teacher_cosine": mean cosine, "teacher_cosine_min": worst cosine,
        "teacher_mse": mean squared error}``.
    """

    primary_metric = "teacher_cosine"

    def __init__(self, texts: Sequence[str], targets: np.ndarray, batch_size: int = 64) -> None:
        self.texts = list(texts)
        self.targets = np.asarray(targets, dtype=np.float32)
        self.batch_size = batch_size

    def __call__(self, model: SiamText) -> dict[str, float]:
        emb = model.encode(self.texts, batch_size=self.batch_size, show_progress=False)
        return agreement(emb, self.targets)


def agreement(student: np.ndarray, teacher: np.ndarray) -> dict[str, float]:
    """Mean and worst row cosine and the mean squared error of ``student`` vs ``teacher``
    (both ``(n, dim)``)."""
    s = np.asarray(student, dtype=np.float64)
    t = np.asarray(teacher, dtype=np.float64)
    norms = np.linalg.norm(s, axis=1) * np.linalg.norm(t, axis=1)
    cos = np.sum(s * t, axis=1) / np.maximum(norms, 1e-12)
    return {"teacher_cosine": float(cos.mean()), "teacher_cosine_min": float(cos.min()),
            "teacher_mse": float(np.mean((s - t) ** 2))}


class TimeBudget(transformers.TrainerCallback):
    """Stop training after the step that ends past ``seconds`` of training (counted from the
    start of this run, resumed or not); the model of that step is kept."""

    def __init__(self, seconds: float) -> None:
        self.seconds = float(seconds)
        self.start = 0.0
        self.stopped_at: int | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.start = time.monotonic()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.stopped_at is None and time.monotonic() - self.start >= self.seconds:
            self.stopped_at = state.global_step
            control.should_training_stop = True
            logger.info("distill: time budget of %.0f s spent at step %d; stopping",
                        self.seconds, state.global_step)
