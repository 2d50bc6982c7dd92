"""Batching for a loss: which batch sampler fits it, and each data-parallel rank's share.

One *global* sampler draws every batch with the global batch size (per-device batch x
world size) from one seed, so a run on 1, 2 or 4 processes sees the same global batches.
:class:`ShardedBatchSampler` then gives each rank a contiguous slice of each global batch,
the same number of rows on every rank, as a gathered loss needs. Pure functions: nothing
here talks to ``torch.distributed``; the caller passes ``world_size`` and ``rank``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Hashable, Iterator
from typing import Any

from torch.utils.data import Sampler

from siamtext.data.prepare import DataSpec, TokenizedDataset
from siamtext.data.samplers import ClassBalancedBatchSampler, LengthGroupedBatchSampler
from siamtext.validation import check_choice, check_positive_int

logger = logging.getLogger(__name__)

#: The batch samplers :func:`make_batch_sampler` builds.
KINDS: tuple[str, ...] = ("length", "no_duplicates", "one_per_class", "class_balanced", "random")


def choose_batch_sampler(kind: str, input_format: str, rows: TokenizedDataset, spec: DataSpec,
                         batch_size: int) -> str:
    """Resolve ``kind="auto"`` to the sampler that fits the loss's rows.

    ``"class_balanced"`` (P x K) for ``labelled`` rows; for ``anchor_positive`` rows,
    ``"one_per_class"`` when a label column has at least ``batch_size`` classes, else
    ``"no_duplicates"`` when there are at least ``batch_size`` distinct texts; ``"length"``
    otherwise.

    Args:
        kind: ``"auto"`` or one of :data:`KINDS` (returned as given).
        input_format: The loss's ``input_format``.
        rows: The prepared training rows.
        spec: Their columns.
        batch_size: The *global* batch size (per-device batch x world size).

    Returns:
        One of :data:`KINDS`.
    """
    check_choice(kind, ("auto", *KINDS), "batch_sampler")
    if kind != "auto":
        return kind
    if input_format == "labelled":
        return "class_balanced"
    if input_format == "anchor_positive":
        if spec.label_column is not None:
            n_classes = len(set(rows.columns[spec.label_column]))
            if n_classes >= batch_size:
                return "one_per_class"
            logger.warning("%d classes < global batch size %d: batches may hold same-class rows "
                           "(the loss masks them when labels are given)", n_classes, batch_size)
        if len(_distinct_texts(rows, spec)) >= batch_size:
            return "no_duplicates"
    return "length"


def make_batch_sampler(kind: str, rows: TokenizedDataset, spec: DataSpec, *, batch_size: int,
                       world_size: int = 1, rank: int = 0, samples_per_class: int = 4,
                       classes_per_batch: int | None = None, mega_batches: int = 4,
                       seed: int = 0, drop_last: bool = False) -> Sampler[list[int]]:
    """The batch sampler of one rank: its slice of global batches drawn for all ranks.

    Args:
        kind: One of :data:`KINDS` (resolve ``"auto"`` with :func:`choose_batch_sampler`).
        rows: The prepared training rows.
        spec: Their columns.
        batch_size: Rows per device; the global batch has ``batch_size * world_size``.
        world_size: Number of data-parallel processes.
        rank: This process's rank, ``0 <= rank < world_size``.
        samples_per_class: K of the class-balanced sampler.
        classes_per_batch: P of the class-balanced sampler, per *global* batch (default
            global batch // K).
        mega_batches: Batches sorted together by the length-grouped samplers.
        seed: Shuffle seed; the global batches depend on it, not on ``world_size``.
        drop_last: Drop a last global batch smaller than the global batch size.

    Returns:
        The global sampler when ``world_size == 1``, else a :class:`ShardedBatchSampler`.

    Raises:
        ValueError: Before any batch is drawn, for settings no batch can satisfy: fewer
            classes than P, P < 2, a P x K batch smaller than the world size, fewer
            distinct classes or texts than the global batch for ``"one_per_class"`` and
            ``"no_duplicates"``, or a missing label column.
    """
    check_choice(kind, KINDS, "kind")
    check_positive_int(batch_size, "batch_size")
    check_positive_int(world_size, "world_size")
    _check_rank(rank, world_size)
    if kind == "class_balanced":
        sampler: Sampler[list[int]] = _class_balanced(
            rows, spec, batch_size, world_size, samples_per_class, classes_per_batch, seed,
            drop_last)
    else:
        sampler = _length_grouped(kind, rows, spec, batch_size, world_size, mega_batches, seed,
                                  drop_last)
    return sampler if world_size == 1 else ShardedBatchSampler(sampler, world_size, rank)


class ShardedBatchSampler(Sampler[list[int]]):
    """This rank's contiguous slice of each global batch of ``batch_sampler``.

    Every rank gets the same number of rows at every step: a global batch of ``n`` rows is
    cut to its first ``n - n % num_replicas`` rows, and one with fewer rows than
    ``num_replicas`` is skipped (a warning says once how many rows the epoch left out).
    With ``m = n // num_replicas``, rank ``r`` takes rows ``[r * m, (r + 1) * m)``, so the
    slices concatenated in rank order are the (cut) global batch.

    The inner sampler must yield the same batches for the same epoch (the siamtext
    samplers do: they reshuffle from ``seed + epoch``); ``len`` counts them by a dry run.

    Args:
        batch_sampler: The global sampler; must have a ``batch_size`` (the global one).
        num_replicas: Number of ranks (the world size).
        rank: This rank.

    Attributes:
        batch_size: Rows per device at most (global batch size // ``num_replicas``).
        global_batch_size: The inner sampler's batch size.
    """

    def __init__(self, batch_sampler: Sampler[list[int]], num_replicas: int, rank: int) -> None:
        check_positive_int(num_replicas, "num_replicas")
        _check_rank(rank, num_replicas)
        size = getattr(batch_sampler, "batch_size", None)
        if isinstance(size, bool) or not isinstance(size, int) or size < num_replicas:
            raise ValueError(f"batch_sampler must have a batch_size of at least num_replicas="
                             f"{num_replicas} (one row per rank), got {size!r}")
        self.batch_sampler = batch_sampler
        self.num_replicas = num_replicas
        self.rank = rank
        self.global_batch_size = size
        self.batch_size = size // num_replicas
        self.epoch = getattr(batch_sampler, "epoch", 0)
        self._steps: tuple[int, int] | None = None  # (epoch, batches yielded)
        self._warned = False

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for ``epoch``: forwarded to the inner sampler."""
        self.epoch = epoch
        if hasattr(self.batch_sampler, "set_epoch"):
            self.batch_sampler.set_epoch(epoch)

    def __len__(self) -> int:
        if self._steps is None or self._steps[0] != self.epoch:
            self._steps = (self.epoch, self._dry_run())
        return self._steps[1]

    def __iter__(self) -> Iterator[list[int]]:
        len(self)  # counts the epoch, and warns once about the rows it leaves out
        for batch in self.batch_sampler:
            per = len(batch) // self.num_replicas
            if per:
                yield list(batch[self.rank * per : (self.rank + 1) * per])

    def _dry_run(self) -> int:
        r = self.num_replicas
        steps = rows = cut = skipped = skipped_rows = 0
        for batch in self.batch_sampler:
            n = len(batch)
            rows += n
            if n >= r:
                steps += 1
                cut += n % r
            else:
                skipped += 1
                skipped_rows += n
        if (cut or skipped) and not self._warned:
            self._warned = True
            logger.warning(
                "%d of %d rows of epoch %d are left out on %d processes, so that every process "
                "gets the same number of rows per step: %d cut from global batches to a "
                "multiple of %d, %d in %d global batch(es) with fewer rows than processes",
                cut + skipped_rows, rows, self.epoch, r, cut, r, skipped_rows, skipped)
        return steps


# ---------------------------------------------------------------------------- global samplers
def _length_grouped(kind: str, rows: TokenizedDataset, spec: DataSpec, batch_size: int,
                    world_size: int, mega_batches: int, seed: int,
                    drop_last: bool) -> LengthGroupedBatchSampler:
    groups: list[Hashable] | None = None
    if kind == "one_per_class":
        groups = rows.columns[_label_column(spec, kind)]
        _check_distinct(len(set(groups)), "class", kind, batch_size, world_size)
    elif kind == "no_duplicates":
        groups = [tuple(_key(rows.columns[c][i]) for c in spec.text_columns)
                  for i in range(len(rows))]
        _check_distinct(len(_distinct_texts(rows, spec)), "text", kind, batch_size, world_size)
    lengths = [0] * len(rows) if kind == "random" else rows.lengths
    return LengthGroupedBatchSampler(lengths, batch_size * world_size, groups=groups, seed=seed,
                                     drop_last=drop_last,
                                     mega_batches=1 if kind == "random" else mega_batches)


def _class_balanced(rows: TokenizedDataset, spec: DataSpec, batch_size: int, world_size: int,
                    samples_per_class: int, classes_per_batch: int | None, seed: int,
                    drop_last: bool) -> ClassBalancedBatchSampler:
    label = _label_column(spec, "class_balanced")
    check_positive_int(samples_per_class, "samples_per_class")
    if classes_per_batch is not None:
        check_positive_int(classes_per_batch, "classes_per_batch")
    k = samples_per_class
    global_size = batch_size * world_size
    p = classes_per_batch if classes_per_batch is not None else max(1, global_size // k)
    given = classes_per_batch is not None
    where = f"({_global_words(batch_size, world_size)}, K = {k})"
    if p < 2:
        fix = ("set classes_per_batch to 2 or more" if given else
               f"raise batch_size to {math.ceil(2 * k / world_size)} or more or lower "
               "samples_per_class (P = global batch // K)")
        raise ValueError(f"classes_per_batch={p} {where}: a class-balanced batch needs at least "
                         f"2 classes (a batch of one class has no negatives); {fix}")
    labels = rows.columns[label]
    if world_size > 1:  # with one process the sampler checks the same numbers itself
        n_classes = len(set(labels))
        if p * k > global_size:
            raise ValueError(f"classes_per_batch x samples_per_class = {p} x {k} = {p * k} "
                             f"exceeds the {_global_words(batch_size, world_size)}; raise "
                             "batch_size or lower P or K")
        if p > n_classes:
            fix = ("lower classes_per_batch" if given else "lower batch_size or "
                   "samples_per_class, or use fewer processes (P = global batch // K)")
            raise ValueError(f"classes_per_batch={p} {where} but the data has only "
                             f"{n_classes} class(es); {fix}")
        if p * k < world_size:
            raise ValueError(f"classes_per_batch x samples_per_class = {p} x {k} = {p * k} "
                             f"rows per global batch cannot give each of the {world_size} "
                             "processes a row; raise classes_per_batch or samples_per_class")
    texts = [_key(t) for t in rows.columns[spec.text_columns[0]]]
    return ClassBalancedBatchSampler(labels, global_size, k, p, texts=texts, seed=seed,
                                     drop_last=drop_last)


# ---------------------------------------------------------------------------- checks
def _check_distinct(distinct: int, unit: str, kind: str, batch_size: int,
                    world_size: int) -> None:
    """No two rows of one group in a batch: the global batch needs that many groups."""
    global_size = batch_size * world_size
    if world_size > 1 and distinct < global_size:  # one process: the sampler checks it
        raise ValueError(f"batch_sampler={kind!r} puts no two rows of one {unit} in a global "
                         f"batch, so the {_global_words(batch_size, world_size)} needs at "
                         f"least {global_size} distinct {unit}s, but the data has {distinct}; "
                         "lower batch_size (per device) or use fewer processes")


def _check_rank(rank: int, world_size: int) -> None:
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(f"rank must be an int in [0, {world_size}) for world_size="
                         f"{world_size}, got {rank!r}")


def _label_column(spec: DataSpec, kind: str) -> str:
    if spec.label_column is None:
        raise ValueError(f"batch_sampler={kind!r} needs a label column; the data has "
                         f"only the text columns {spec.text_columns}")
    return spec.label_column


def _global_words(batch_size: int, world_size: int) -> str:
    if world_size == 1:
        return f"batch_size={batch_size}"
    return f"global batch {batch_size * world_size} = {world_size} processes x {batch_size}"


def _distinct_texts(rows: TokenizedDataset, spec: DataSpec) -> set[Hashable]:
    return {_key(t) for c in spec.text_columns for t in rows.columns[c]}


def _key(cell: Any) -> Hashable:
    """A text, or its token ids as a tuple: hashable either way."""
    return tuple(cell) if isinstance(cell, list) else cell
