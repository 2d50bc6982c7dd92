"""NaN and inf in training: stop with an error naming the step and the last good checkpoint,
or skip the step when asked (``TrainingArguments.nan_policy``), never train on silently.

A loss or gradient that is NaN or infinite once makes every weight NaN at the next optimizer
step; left alone, a run goes on for hours and saves NaN checkpoints. The guard looks at each
optimizer step's losses and its gradient norm (which the trainer computes anyway, for
clipping and logging):

* ``"raise"`` (default): stop with :class:`NonFiniteError` before any NaN weight is saved. On
  a CPU the check is free and the error comes at the step itself, before the update. On a GPU
  the flags stay on the device (no extra GPU -> CPU wait per step) and are read where the
  trainer waits anyway: at each log, evaluation and checkpoint, and at the end. The error
  names the first bad step; nothing after the last good checkpoint is written.
* ``"skip"``: drop that step's update (no weight or optimizer-state change; the learning-rate
  schedule moves on), log a warning, count it (``skipped_steps`` in the model card). On a
  GPU this reads one flag per optimizer step.

With fp16 loss scaling an infinite gradient is the scaler's business (it skips the step and
lowers the scale), so only the loss is checked there.
"""

from __future__ import annotations

import logging
from typing import Literal

import torch

from siamtext import distributed

logger = logging.getLogger(__name__)

NanPolicy = Literal["raise", "skip"]
_KIND = {1: "loss", 2: "gradient norm"}


class NonFiniteError(FloatingPointError):
    """Training met a NaN or infinite loss or gradient (``nan_policy="raise"``)."""


class NonFiniteGuard:
    """Per-step NaN/inf checks of the loss and gradient norm; see the module docstring.

    Args:
        policy: ``"raise"`` or ``"skip"``.
        device: The training device (decides whether the checks may wait on it).
    """

    def __init__(self, policy: NanPolicy, device: torch.device) -> None:
        self.policy = policy
        self.skipped: list[int] = []  # optimizer steps whose update was dropped
        self._immediate = policy == "skip" or device.type == "cpu"
        self._loss_ok: torch.Tensor | None = None  # this step's micro-batch losses finite
        self._first_bad: torch.Tensor | None = None  # deferred: (step, kind), step -1 if none

    def observe_loss(self, loss: torch.Tensor) -> None:
        """Record one micro-batch loss of the current optimizer step (no device wait)."""
        ok = torch.isfinite(loss.detach()).all()
        self._loss_ok = ok if self._loss_ok is None else self._loss_ok & ok

    def allow_update(self, grad_norm: torch.Tensor | float | None, step: int,
                     last_checkpoint: str | None, check_grad: bool = True) -> bool:
        """Whether optimizer step ``step`` (1-based) may update the weights.

        Raises:
            NonFiniteError: Under ``"raise"`` when the check is immediate and failed.
        """
        loss_ok, self._loss_ok = self._loss_ok, None
        flags = [torch.as_tensor(True) if loss_ok is None else loss_ok]
        if check_grad and grad_norm is not None:
            flags.append(torch.isfinite(torch.as_tensor(grad_norm)).all())
        else:
            flags.append(torch.as_tensor(True))
        device = next((f.device for f in flags if f.device.type != "cpu"), flags[0].device)
        ok = torch.stack([f.to(device) for f in flags])
        if not self._immediate:  # flag the first bad step, read later (no wait here)
            kind = torch.where(~ok[0], 1, torch.where(~ok[1], 2, 0))
            code = torch.stack([torch.as_tensor(step, device=device), kind])
            if self._first_bad is None:
                self._first_bad = torch.tensor([-1, 0], device=device)
            fresh = (self._first_bad[0] < 0) & (kind > 0)
            self._first_bad = torch.where(fresh, code, self._first_bad)
            return True
        ok = _all_ranks_min(ok.to(torch.int32)).tolist()
        if all(ok):
            return True
        what = _KIND[1 if not ok[0] else 2]
        if self.policy == "skip":
            self.skipped.append(step)
            logger.warning("step %d: the %s is NaN or inf; skipped this update (nan_policy="
                           "'skip'; %d skipped so far)", step, what, len(self.skipped))
            return False
        raise NonFiniteError(_message(step, what, last_checkpoint, before_update=True))

    def check(self, last_checkpoint: str | None) -> None:
        """Raise if a deferred check flagged a step (a no-op when checks are immediate).

        Raises:
            NonFiniteError: Naming the first bad step and the last good checkpoint.
        """
        if self._first_bad is None:
            return
        first = self._first_bad
        if distributed.is_distributed():  # every rank stops together, on the earliest step
            marker = torch.where(first[0] < 0, torch.iinfo(torch.int64).max, first[0])
            step = int(_all_ranks_min(marker.reshape(1))[0])
            if step == torch.iinfo(torch.int64).max:
                return
            kind = int(first[1]) if int(first[0]) == step else 0  # another rank's step
        else:
            step, kind = (int(v) for v in first.tolist())
            if step < 0:
                return
        what = _KIND.get(kind, "loss or gradient norm")
        raise NonFiniteError(_message(step, what, last_checkpoint, before_update=False))


def _message(step: int, what: str, last_checkpoint: str | None, before_update: bool) -> str:
    checkpoint = (f"the last good checkpoint is {last_checkpoint} (resume from it, perhaps "
                  "with a lower learning rate)" if last_checkpoint else
                  "no checkpoint was saved before it")
    when = ("before updating the weights" if before_update else
            "and saved nothing after it")
    return (f"training stopped: the {what} is NaN or inf at step {step}; stopped {when}; "
            f"{checkpoint}. Pass nan_policy='skip' (siamtext train --nan-policy skip) to skip "
            "such steps instead.")


def _all_ranks_min(values: torch.Tensor) -> torch.Tensor:
    """Element-wise minimum over the data-parallel processes (``values`` itself alone)."""
    if not distributed.is_distributed():
        return values
    import torch.distributed as dist

    values = values.clone()
    dist.all_reduce(values, op=dist.ReduceOp.MIN)
    return values
