"""``distill``: a layer-reduced student of a tower, trained on unlabelled texts to give the
teacher's embeddings.

The method of Reimers & Gurevych (2020) and of sentence-transformers' layer-reduction
example: the student is the teacher with only some of its transformer layers kept
(:mod:`siamtext.training.layer_select`), and it learns to map each text of the user's own
corpus to the teacher's embedding of it (MSE, or cosine). The teacher embeds the texts once;
the student trains on the siamtext trainer (:mod:`siamtext.training.distill_trainer`), so
checkpoints, resuming, data-parallel training and mixed precision work as in
:func:`~siamtext.training.fit`. A slice of the texts is held out, and the teacher-student
cosine on it is measured before training and after each epoch.
"""

from __future__ import annotations

import copy
import logging
import random
import tempfile
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from siamtext import distributed
from siamtext.training.arguments import TrainingArguments
from siamtext.training.distill_loss import DistillMetric, EmbeddingDistillationLoss
from siamtext.training.distill_trainer import (
    DistillationTrainer,
    TeacherAgreement,
    TimeBudget,
    target_rows,
)
from siamtext.training.fitting import record_training
from siamtext.training.layer_select import check_layers, count_layers, cut_layers
from siamtext.validation import check_choice, check_positive_int, check_texts

if TYPE_CHECKING:
    from siamtext.model import SiamText

logger = logging.getLogger(__name__)


def _check_teacher(teacher: object, name: str = "teacher") -> SiamText:
    from siamtext.model import SiamText

    if not isinstance(teacher, SiamText):
        raise TypeError(f"{name} must be a SiamText, got {type(teacher).__name__}")
    if teacher.backend != "torch":
        raise ValueError(f"{name} runs on backend={teacher.backend!r}, an exported graph that "
                         "cannot be cut or copied into a student: load the teacher with "
                         "SiamText(path) (backend='torch'), distil, then export the student")
    return teacher


def reduce_layers(teacher: SiamText, layers: int | Sequence[int] = 3) -> SiamText:
    """An untrained layer-reduced copy of ``teacher``: the same tokenizer, embeddings, pooling
    and settings, and only the transformer layers ``layers``, their weights the teacher's.

    Args:
        teacher: A :class:`~siamtext.SiamText` on the torch backend (not changed).
        layers: How many layers to keep, spread evenly with the first and the last
            (:func:`~siamtext.training.layer_select.spread_layers`: 3 of 6 keeps 0, 2 and
            5), or the teacher's layer indices to keep, in increasing order.

    Returns:
        The student, on the teacher's device.

    Raises:
        TypeError: For a teacher that is not a SiamText, or ``layers`` of another type.
        ValueError: For a teacher on an exported backend, a count above the teacher's
            layers, repeated, unordered or out-of-range indices, or a transformer whose
            layers cannot be cut (ALBERT, T5).
    """
    teacher = _check_teacher(teacher)
    indices = check_layers(layers, count_layers(teacher.transformer))
    student = copy.deepcopy(teacher)
    cut_layers(student.transformer, indices)
    student.eval()
    return student


def distill(
    teacher: SiamText,
    texts: Sequence[str],
    layers: int | Sequence[int] = 3,
    *,
    loss: DistillMetric = "mse",
    dims: int | None = None,
    eval_size: float | int = 0.1,
    teacher_embeddings: np.ndarray | None = None,
    epochs: float = 1,
    batch_size: int = 32,
    learning_rate: float = 1e-4,
    warmup_ratio: float = 0.1,
    max_time: float | None = None,
    output_dir: str | None = None,
    resume_from_checkpoint: str | bool | None = None,
    show_progress: bool | None = None,
    seed: int = 42,
    teacher_batch_size: int = 64,
    **training_args: Any,
) -> SiamText:
    """Distil ``teacher`` into a student with fewer transformer layers, on ``texts``.

    Args:
        teacher: The (fine-tuned) :class:`~siamtext.SiamText` to compress, on the torch
            backend; it is not changed.
        texts: Unlabelled texts like the ones the student will embed (the user's corpus).
            Repeated texts are used once.
        layers: A layer count, spread evenly (3 of 6 keeps 0, 2, 5), or the teacher's
            layer indices to keep, in increasing order (see :func:`reduce_layers`).
        loss: ``"mse"`` (Reimers & Gurevych; the default) or ``"cosine"`` (1 - cosine)
            between the student's and the teacher's embeddings
            (:class:`~siamtext.training.distill_loss.EmbeddingDistillationLoss`).
        dims: A smaller output width: a linear projection after pooling, initialised by PCA
            of the teacher's pooled embeddings of the training texts and trained with the
            layers; the targets are the teacher's embeddings in that PCA basis. The student
            is then a :class:`~siamtext.training.projection.ProjectedSiamText` (see there
            for what it supports: encode, save/load, export; not ``resume_from_checkpoint``
            or ``encode(devices=...)`` yet). ``None`` (default): the teacher's width.
        eval_size: The held-out slice, never trained on: a share of the distinct texts in
            (0, 1) (rounded down) or a count. Its mean teacher-student cosine is measured
            before training and after each epoch.
        teacher_embeddings: The teacher's ``(len(texts), dim)`` embeddings of ``texts``,
            when already computed (to distil several students from one teacher pass);
            default: the teacher embeds them (in fp32, batches of ``teacher_batch_size``).
        epochs: Passes over the training texts.
        batch_size: Texts per batch on each process.
        learning_rate: Peak AdamW learning rate; 1e-4, sentence-transformers'
            distillation examples' rate, since the student starts far from a minimum.
        warmup_ratio: Share of the steps with linear warm-up (then linear decay).
        max_time: Stop after the step that ends past this many seconds of training (the
            learning-rate schedule still spans ``epochs``: pass
            ``lr_scheduler_type="constant_with_warmup"`` to keep it flat).
        output_dir: Where checkpoints go (one per epoch; each a loadable student);
            ``None`` keeps none.
        resume_from_checkpoint: A checkpoint folder, or True for the latest complete one
            in ``output_dir`` (the teacher embeds the texts again).
        show_progress: Show progress bars (default: transformers' choice for training).
        seed: Seed of the held-out split, data order and dropout.
        teacher_batch_size: Encoding batch size of the teacher and of the held-out checks.
        **training_args: Any other :class:`~siamtext.training.TrainingArguments` field
            (``mixed_precision``, ``gradient_accumulation_steps``, ``save_total_limit``...).

    Returns:
        The trained student, a new :class:`~siamtext.SiamText` that saves, loads, exports
        and pushes like any other. ``student.card_data.training["distillation"]`` records
        the teacher, the kept layers and ``history``: the held-out ``teacher_cosine`` (mean),
        ``teacher_cosine_min`` and ``teacher_mse`` at epoch 0 and after each epoch;
        ``student.card_data.eval_metrics`` has the last ones.

    Raises:
        TypeError: For a teacher that is not a SiamText, texts that are not strings, or
            ``layers`` of another type.
        ValueError: Before any work: a teacher on an exported backend; more layers than the
            teacher has, repeated, unordered or out-of-range indices; too few distinct texts
            to hold out ``eval_size`` and train on the rest; ``teacher_embeddings`` of the
            wrong shape; a bad ``loss``, ``epochs``, ``learning_rate``, ``warmup_ratio``,
            ``batch_size``, ``max_time`` or training argument; ``dims`` wider than the
            teacher, above the number of training texts, or with ``teacher_embeddings``,
            ``resume_from_checkpoint`` or ``load_best_model_at_end``.

    Examples:
        >>> teacher = SiamText("my-fine-tuned-model")
        >>> student = teacher.distill(corpus_texts, layers=3, epochs=3)
        >>> student.export("onnx", path="student-int8", quantize="int8")
    """
    teacher = _check_teacher(teacher)
    texts = check_texts(texts, "texts")
    indices = check_layers(layers, count_layers(teacher.transformer))
    check_choice(loss, ("mse", "cosine"), "loss")
    check_positive_int(batch_size, "batch_size")
    check_positive_int(teacher_batch_size, "teacher_batch_size")
    if not (isinstance(epochs, (int, float)) and not isinstance(epochs, bool) and epochs > 0):
        raise ValueError(f"epochs must be a positive number, got {epochs!r}")
    if not (isinstance(learning_rate, (int, float)) and learning_rate > 0):
        raise ValueError(f"learning_rate must be a positive number, got {learning_rate!r}")
    if not (isinstance(warmup_ratio, (int, float)) and 0 <= warmup_ratio < 1):
        raise ValueError(f"warmup_ratio must be in [0, 1), got {warmup_ratio!r}")
    if max_time is not None and (isinstance(max_time, bool) or
                                 not isinstance(max_time, (int, float)) or max_time <= 0):
        raise ValueError(f"max_time must be a positive number of seconds or None, got "
                         f"{max_time!r}")
    seen: dict[str, int] = {}
    for i, text in enumerate(texts):
        seen.setdefault(text, i)
    first = list(seen.values())  # each distinct text's first row, in input order
    distinct = [texts[i] for i in first]
    n_eval = _held_out_count(len(distinct), eval_size)
    if dims is not None:
        _check_dims(teacher, dims, len(distinct) - n_eval, teacher_embeddings,
                    resume_from_checkpoint, training_args)
    if teacher_embeddings is not None:
        teacher_embeddings = np.asarray(teacher_embeddings, dtype=np.float32)
        if teacher_embeddings.shape != (len(texts), teacher.embedding_dim):
            raise ValueError(f"teacher_embeddings must have shape ({len(texts)}, "
                             f"{teacher.embedding_dim}) (one teacher embedding per text), got "
                             f"{teacher_embeddings.shape}")
        targets = teacher_embeddings[first]
    tmp = None  # the training arguments are checked too before any work
    if output_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="siamtext-distill-")
        output_dir = tmp.name
    settings: dict[str, Any] = {
        "output_dir": output_dir, "num_train_epochs": epochs,
        "per_device_train_batch_size": batch_size, "per_device_eval_batch_size": batch_size,
        "learning_rate": learning_rate, "warmup_steps": warmup_ratio, "seed": seed,
        "eval_strategy": "epoch", "save_strategy": "no" if tmp is not None else "epoch",
    }
    if show_progress is not None:
        settings["disable_tqdm"] = not show_progress
    settings.update(training_args)
    args = TrainingArguments(**settings)
    if tmp is not None and distributed.is_distributed():
        args.output_dir = distributed.broadcast_from_main(args.output_dir)
    try:
        student = copy.deepcopy(teacher)  # checked: no more ValueErrors from the arguments
        cut_layers(student.transformer, indices)
        order = list(range(len(distinct)))
        random.Random(seed).shuffle(order)
        held, train = sorted(order[:n_eval]), sorted(order[n_eval:])
        if dims is not None:
            student, targets = _project(teacher, student, distinct, train, dims,
                                        teacher_batch_size, show_progress)
        elif teacher_embeddings is None:
            targets = teacher.encode(distinct, batch_size=teacher_batch_size,
                                     show_progress=show_progress)
        evaluator = TeacherAgreement([distinct[i] for i in held], targets[held],
                                     batch_size=teacher_batch_size)
        rows = target_rows(student, [distinct[i] for i in train], targets[train])
        loss_fn = EmbeddingDistillationLoss(student, metric=loss)

        start = evaluator(student)
        logger.info("distill: %d of %d teacher layers %s; held-out teacher-student cosine before "
                    "training %.4f", len(indices), count_layers(teacher.transformer), indices,
                    start["teacher_cosine"])
        budget = TimeBudget(max_time) if max_time is not None else None
        trainer = DistillationTrainer(student, args, rows, loss_fn, evaluator=evaluator,
                                      callbacks=[budget] if budget else None)
        output = trainer.train(resume_from_checkpoint=resume_from_checkpoint)
        metrics = trainer.evaluate()
    finally:
        if tmp is not None:
            distributed.barrier()
            tmp.cleanup()
    record_training(student, loss_fn, trainer, output.metrics, metrics)
    student.card_data.training["distillation"] = {
        "teacher": teacher.model_name_or_path,
        "teacher_layers": count_layers(teacher.transformer),
        "layers": indices,
        "loss": loss,
        "dims": student.embedding_dim,
        "texts": len(train),
        "held_out": len(held),
        "history": _history(start, trainer.state.log_history),
        "stopped_by_time_budget": budget is not None and budget.stopped_at is not None,
    }
    student.eval()
    return student


def _check_dims(teacher: SiamText, dims: object, n_train: int,
                teacher_embeddings: object, resume: object, training_args: dict) -> None:
    """Refuse, before any work, what a projected student cannot do (yet)."""
    from siamtext.model import SiamText

    check_positive_int(dims, "dims")
    if type(teacher) is not SiamText:
        raise ValueError(f"dims={dims}: the teacher ({type(teacher).__name__}) already "
                         "projects its embeddings; distil it without dims")
    if dims > teacher.embedding_dim:
        raise ValueError(f"dims={dims} is wider than the teacher's {teacher.embedding_dim} "
                         "dimensions; a projection can only reduce the width")
    if dims > n_train:
        raise ValueError(f"dims={dims}: PCA of {n_train} training texts gives at most "
                         f"{n_train} components; give more texts or a smaller dims")
    if teacher_embeddings is not None:
        raise ValueError("teacher_embeddings cannot be combined with dims yet: the "
                         "projection is fitted on the teacher's un-normalised embeddings, "
                         "which distill computes itself")
    if resume not in (None, False) or training_args.get("load_best_model_at_end"):
        raise ValueError(f"dims={dims} cannot be combined with resume_from_checkpoint or "
                         "load_best_model_at_end yet: the trainer reloads the transformer's "
                         "weights only, not the projection")


def _project(teacher: SiamText, student: SiamText, texts: list[str], train: list[int],
             dims: int, batch_size: int, show_progress: bool | None) -> tuple[SiamText, Any]:
    """The student with a PCA-initialised projection, and the targets in that basis."""
    from siamtext.training.projection import ProjectedSiamText, pca_projection

    pooled = teacher.encode(texts, batch_size=batch_size, normalize=False,
                            show_progress=show_progress)
    weight, bias = pca_projection(pooled[train], dims)
    targets = pooled @ weight.T + bias
    if teacher.config.normalize:
        targets /= np.maximum(np.linalg.norm(targets, axis=1, keepdims=True), 1e-12)
    return ProjectedSiamText.from_model(student, weight, bias), targets.astype(np.float32)


def _held_out_count(n: int, eval_size: float | int) -> int:
    """The held-out count of ``n`` distinct texts: ``eval_size`` itself (an int) or
    ``floor(n * eval_size)``; both it and the rest must be at least one text."""
    if isinstance(eval_size, bool) or not isinstance(eval_size, (int, float)):
        raise TypeError(f"eval_size must be a share in (0, 1) or a count of texts, got "
                        f"{eval_size!r}")
    if isinstance(eval_size, float) and not 0 < eval_size < 1:
        raise ValueError(f"eval_size={eval_size!r}: a share must be in (0, 1); pass an int "
                         "for a count of texts")
    count = eval_size if isinstance(eval_size, int) else int(n * eval_size)
    if count < 1 or n - count < 1:
        need = (f"at least {eval_size + 1}" if isinstance(eval_size, int)
                else f"at least {int(np.ceil(1 / eval_size))}")
        raise ValueError(f"texts: {n} distinct texts are too few to hold out eval_size="
                         f"{eval_size!r} ({count} texts) and train on the rest; give {need} "
                         "distinct texts or change eval_size")
    return count


def _history(start: dict[str, float], log_history: list[dict[str, Any]]) -> list[dict]:
    """The held-out metrics before training (epoch 0) and at each evaluation, one per step."""
    out = [{"epoch": 0.0, "step": 0, **start}]
    for entry in log_history:
        if "eval_teacher_cosine" not in entry:
            continue
        row = {"epoch": float(entry.get("epoch") or 0.0), "step": int(entry.get("step", 0))}
        row.update({k[len("eval_"):]: float(v) for k, v in entry.items()
                    if k.startswith("eval_teacher_")})
        if out and out[-1]["step"] == row["step"]:
            out[-1] = row
        else:
            out.append(row)
    return out
