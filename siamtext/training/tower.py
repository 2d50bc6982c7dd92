"""``SubBatchedTower``: embed a batch in length-sorted sub-batches, each padded only to its
own longest row."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from siamtext import distributed
from siamtext.validation import check_positive_int

if TYPE_CHECKING:
    from siamtext.model import SiamText


class SubBatchedTower(nn.Module):
    """Run a tower on length-sorted sub-batches, each trimmed to its own longest row.

    A sentence's embedding does not depend on the other rows of its batch, so splitting a
    right-padded batch by length and trimming the padding changes no embedding (beyond float
    rounding) while computing fewer padded positions. Other attributes are read from the
    model inside the tower (through a DDP wrapper), so a loss can use it in place of the
    model.

    Args:
        tower: The :class:`~siamtext.SiamText` to run, or the DDP module wrapping it.
        size: Rows per sub-batch; ``None`` runs each batch in one pass (only the wrapping).
    """

    def __init__(self, tower: SiamText | nn.Module, size: int | None) -> None:
        super().__init__()
        self.tower = tower
        self.size = check_positive_int(size, "size") if size is not None else None

    def no_sync(self) -> Any:
        """The wrapped DDP module's ``no_sync()`` (a null context without DDP)."""
        return distributed.no_sync(self._modules["tower"])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                **inputs: torch.Tensor) -> torch.Tensor:
        n = input_ids.shape[0]
        if self.size is None or n <= self.size:
            return self.tower(input_ids=input_ids, attention_mask=attention_mask, **inputs)
        lengths = attention_mask.sum(dim=1)
        order = torch.argsort(lengths, descending=True)
        parts = []
        for start in range(0, n, self.size):
            rows = order[start : start + self.size]
            width = max(1, int(lengths[rows].max()))
            parts.append(self.tower(input_ids=input_ids[rows, :width],
                                    attention_mask=attention_mask[rows, :width],
                                    **{k: v[rows, :width] for k, v in inputs.items()}))
        return torch.cat(parts)[torch.argsort(order)]

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(distributed.unwrap(self._modules["tower"]), name)

