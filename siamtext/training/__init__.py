"""Training: arguments dataclass, a ``transformers.Trainer`` for siamtext losses, and ``fit``.

The trainer reuses everything ``transformers.Trainer`` does well (AdamW, warmup and linear
decay, gradient accumulation, mixed precision through accelerate, evaluation, checkpoints,
``resume_from_checkpoint``, progress bar, logs) and changes what is specific to a Siamese
tower:

* the data: text columns are tokenised once (:func:`siamtext.data.pretokenize`) and batches
  are only padded; batches group rows of similar length, or come P classes x K examples at
  a time for the batch-mining losses, one global batch sliced over the data-parallel ranks
  (:mod:`siamtext.data.batching`);
* the loss: ``compute_loss`` calls the siamtext loss on one feature dict per text column;
* saving: checkpoints hold the full :class:`~siamtext.SiamText` folder
  (``save_pretrained``), so a checkpoint is itself a loadable model, and resuming or
  loading the best checkpoint reads those weights back;
* reliability: checkpoints are written atomically, ``resume_from_checkpoint=True`` takes the
  latest complete one (or starts afresh when there is none), and a NaN or inf loss or
  gradient stops the run or skips the step (:mod:`siamtext.training.guard`).
"""

from __future__ import annotations

from siamtext.data.prepare import DataSpec, check_data, prepare_dataset, resolve_columns
from siamtext.training.arguments import BatchSampler, TrainingArguments
from siamtext.training.checkpoint import ARGS_NAME, latest_checkpoint, load_weights
from siamtext.training.fitting import fit, make_loss, record_training
from siamtext.training.guard import NonFiniteError
from siamtext.training.tower import SubBatchedTower
from siamtext.training.trainer import Evaluator, SiamTextTrainer

__all__ = [
    "ARGS_NAME",
    "BatchSampler",
    "DataSpec",
    "Evaluator",
    "NonFiniteError",
    "SiamTextTrainer",
    "SubBatchedTower",
    "TrainingArguments",
    "check_data",
    "fit",
    "latest_checkpoint",
    "load_weights",
    "make_loss",
    "prepare_dataset",
    "record_training",
    "resolve_columns",
]
