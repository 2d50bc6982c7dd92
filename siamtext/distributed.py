"""Data-parallel helpers: the process's rank and world, an all-gather that keeps autograd, and
main-process-only writing.

Losses never talk to ``torch.distributed`` themselves: :class:`~siamtext.losses.SiamLoss`
calls :func:`gather_batch` when it is set to see the global batch, and everything else runs
unchanged in one process. Every function here is a no-op (or the identity) when no process
group is initialised, so the same code runs under ``python``, ``torchrun`` and
``accelerate launch``.

How the gathered losses stay exact: each rank embeds its own slice of the global batch,
gathers every rank's embeddings and computes the loss of the *whole* global batch (every
rank computes the same value). :class:`_AllGather` sends the gradient of each gathered row
back to the rank that produced it by summing the gradients of all ranks (an all-reduce), so
each rank holds ``world_size`` times the gradient of its own rows; DDP then averages the
parameter gradients over the ranks, which leaves exactly the gradient that one process would
get from the global batch. This holds for every loss, including those whose mean runs over
a data-dependent set of anchors (batch-hard mining, SupCon) or over pairs of pairs (CoSENT),
where averaging per-rank losses would not.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

# torch 2.13 renamed all_gather_into_tensor (still there, deprecated)
_ALL_GATHER_SINGLE = getattr(dist, "all_gather_single", None) or getattr(
    dist, "all_gather_into_tensor", None)


def is_distributed() -> bool:
    """Whether a ``torch.distributed`` process group with more than one process is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of processes in the default process group (1 when there is none)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def rank() -> int:
    """This process's rank in the default process group (0 when there is none)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return 0


def is_main_process() -> bool:
    """Whether this process writes files and logs: rank 0, or the only process."""
    return rank() == 0


def barrier() -> None:
    """Wait for every process (a no-op without a process group)."""
    if is_distributed():
        dist.barrier()


def shutdown(wait: bool = True) -> None:
    """Leave the default process group: wait for every process, then destroy the group.

    Call it at the end of a data-parallel script (the ``siamtext`` command does). A gloo group
    left for the interpreter's exit to tear down can abort the process with ``terminate
    called without an active exception``: its worker threads still run while Python
    finalises. A no-op without a process group.

    Args:
        wait: Meet every other process at a barrier first. Pass ``False`` on an error path,
            where another process may already be gone and a barrier would wait for it.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    if wait and dist.get_world_size() > 1:
        dist.barrier()
    gc.collect()  # a finished Trainer's DDP wrapper (in a reference cycle) holds the group
    dist.destroy_process_group()


def broadcast_from_main(value: Any) -> Any:
    """Rank 0's ``value`` (any picklable Python value, e.g. a path) on every rank; ``value``
    itself without a process group."""
    if not is_distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _check_equal_rows(tensor: Tensor) -> None:
    """On CPU (gloo), check that every rank gathers the same number of rows.

    A mismatch would make the gather fail deep inside the backend or hang; here it is a
    ``ValueError`` with every rank's count. On GPUs the check is skipped: reading the counts
    back would stall the host on every step, and siamtext's batch samplers give every rank
    the same number of rows.
    """
    if tensor.device.type != "cpu":
        return
    counts = [torch.zeros(1, dtype=torch.long) for _ in range(dist.get_world_size())]
    dist.all_gather(counts, torch.tensor([tensor.shape[0]]))
    rows = [int(c) for c in counts]
    if len(set(rows)) > 1:
        raise ValueError(
            f"cannot gather across devices: the ranks hold {rows} rows (rank order); every "
            "rank needs the same number of rows. siamtext's trainer cuts each global batch to "
            "a multiple of the world size; a custom loop must do the same or pass "
            "gather_across_devices=False to the loss")


def all_gather(tensor: Tensor) -> Tensor:
    """Concatenate ``tensor`` from every rank along dim 0, in rank order, without gradients.

    Args:
        tensor: ``(rows, ...)``, with the same shape on every rank.

    Returns:
        ``(world_size * rows, ...)``; ``tensor`` itself without a process group.
    """
    if not is_distributed():
        return tensor
    _check_equal_rows(tensor)
    return _gather_rows(tensor)


def _gather_rows(tensor: Tensor) -> Tensor:
    """Every rank's ``tensor`` concatenated along dim 0 (no row-count check, no autograd)."""
    tensor = tensor.contiguous()
    out = tensor.new_empty((dist.get_world_size() * tensor.shape[0], *tensor.shape[1:]))
    _ALL_GATHER_SINGLE(out, tensor)
    return out


class _AllGather(torch.autograd.Function):
    """All-gather whose backward sends each row's gradient, summed over the ranks, back to the
    rank that produced the row."""

    @staticmethod
    def forward(ctx: Any, tensor: Tensor) -> Tensor:
        ctx.rows = tensor.shape[0]
        return _gather_rows(tensor)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        grad = grad.clone(memory_format=torch.contiguous_format)  # reduced in place
        # every rank computed a loss from the gathered rows: a row's gradient is the sum of
        # what each rank's loss sends it (gloo has no reduce_scatter, so all-reduce + slice)
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = dist.get_rank() * ctx.rows
        return grad[start : start + ctx.rows]


def all_gather_with_grad(tensor: Tensor) -> Tensor:
    """Concatenate ``tensor`` from every rank along dim 0, keeping autograd.

    The gradient of each gathered row flows back to the rank that produced it (summed over
    the ranks that used it). See the module docstring for why this, with DDP's averaging,
    gives each rank exactly the gradient of the global batch.

    Args:
        tensor: ``(rows, ...)``, with the same shape on every rank.

    Returns:
        ``(world_size * rows, ...)``, rank 0's rows first; ``tensor`` itself without a process
        group.
    """
    if not is_distributed():
        return tensor
    _check_equal_rows(tensor)
    return _AllGather.apply(tensor)


def gather_batch(embeddings: Sequence[Tensor], labels: Tensor | None,
                 ) -> tuple[list[Tensor], Tensor | None]:
    """Gather every column's embeddings (with gradients) and the labels (without) from all
    ranks, so that row ``i`` of each column still belongs to the same training row.

    Args:
        embeddings: One ``(rows, dim)`` tensor per text column.
        labels: ``(rows,)`` labels or scores, or ``None``.

    Returns:
        The global ``(world_size * rows, dim)`` columns and ``(world_size * rows,)`` labels.
    """
    if not is_distributed():
        return list(embeddings), labels
    _check_equal_rows(embeddings[0])  # one check per batch: columns share their row count
    gathered = [_AllGather.apply(e) for e in embeddings]
    if labels is not None:
        labels = torch.as_tensor(labels)
        if dist.get_backend() == "nccl":  # NCCL moves device tensors only
            labels = labels.to(embeddings[0].device, non_blocking=True)
        labels = _gather_rows(labels)
    return gathered, labels


def no_sync(module: Any) -> AbstractContextManager:
    """``module.no_sync()`` for a DDP-wrapped module (or a wrapper that offers it): skip the
    gradient all-reduce of this backward pass. A null context otherwise."""
    method = getattr(module, "no_sync", None)
    return method() if callable(method) else nullcontext()


def unwrap(module: Any) -> Any:
    """The model inside a DDP (or similar) wrapper: follows ``.module``."""
    while hasattr(module, "module") and isinstance(module.module, torch.nn.Module):
        module = module.module
    return module
