"""Cached (GradCache) in-batch losses: a large batch at the activation memory of a small one.

The in-batch losses get better with the batch size, because every other row is a negative,
but the tower's activations grow with it. GradCache (Gao et al. 2021) separates the two:

1. Embed every text column in mini-batches of ``mini_batch_size`` rows *without* a graph,
   remembering the random state before each mini-batch (so that dropout can be replayed).
2. Compute the loss of the whole batch from those embeddings, made leaves that require a
   gradient, and take the gradient of the loss with respect to each embedding (the cache).
3. When ``backward()`` is called on the returned loss, embed each mini-batch again, now with
   a graph and the same random state and autocast setting, and back-propagate its cached
   gradient into the tower, one mini-batch at a time.

The parameter gradients are those of the plain loss on the whole batch (up to float
rounding), at the cost of a second forward pass; only one mini-batch's activations are alive
at any time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from siamtext import distributed
from siamtext.losses.base import check_group_count
from siamtext.losses.in_batch import (
    DEFAULT_SCALE,
    DEFAULT_SIMILARITY,
    MultipleNegativesRankingLoss,
    SimilarityName,
)
from siamtext.losses.supcon import SupervisedContrastiveLoss
from siamtext.validation import check_positive_int

if TYPE_CHECKING:
    from siamtext.model import SiamText

#: Rows embedded at once, the default of sentence-transformers' cached losses: the tower's
#: activation memory is that of a batch of 32, whatever the batch size.
DEFAULT_MINI_BATCH_SIZE = 32


class _RandomState:
    """The CPU (and, for a CUDA device, that device's) random state, to replay dropout."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    @contextmanager
    def replay(self) -> Iterator[None]:
        """Run the body from this state; the global random state is left as it was."""
        devices = [self.device] if self.cuda is not None else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self.cpu)
            if self.cuda is not None:
                torch.cuda.set_rng_state(self.cuda, self.device)
            yield


def mini_batches(features: dict[str, Tensor], size: int) -> list[dict[str, Tensor]]:
    """Cut a tokenised batch into slices of ``size`` rows, each cut, on the CPU, to the last
    column that any of its rows attends to (right padding shared by all its rows is dropped;
    on a GPU the slices keep the batch's width, as reading the mask back would stall it).

    Args:
        features: ``input_ids``, ``attention_mask`` and any other ``(rows, seq)`` tensors.
        size: Rows per slice.

    Returns:
        The slices in row order; the last may be shorter.
    """
    mask = features["attention_mask"]
    rows, seq = mask.shape
    if mask.device.type == "cpu":  # reading the widths is free here; on a GPU it would stall
        # per row: one past its last attended position (0 for a row of padding only)
        ends = ((mask != 0) * torch.arange(1, seq + 1, device=mask.device)).amax(dim=1)
        widths = [max(1, int(w)) for w in
                  torch.stack([ends[i : i + size].max() for i in range(0, rows, size)]).tolist()]
    else:
        widths = [seq] * len(range(0, rows, size))
    return [{k: v[i : i + size, :width] if v.ndim == 2 and v.shape[1] == seq else v[i : i + size]
             for k, v in features.items()}
            for i, width in zip(range(0, rows, size), widths)]


class _GradCache:
    """Mixin that gives an in-batch :class:`~siamtext.losses.SiamLoss` the GradCache
    ``forward``; the loss itself (``compute_loss_from_embeddings``) is the parent's.

    Put it first in the bases: ``class CachedX(_GradCache, X)``.
    """

    mini_batch_size: int
    model: Any
    gathers: bool
    input_format: str
    compute_loss_from_embeddings: Callable[[list[Tensor], Tensor | None], Tensor]

    def __init__(self, model: SiamText, scale: float = DEFAULT_SCALE,
                 similarity: SimilarityName = DEFAULT_SIMILARITY,
                 mini_batch_size: int = DEFAULT_MINI_BATCH_SIZE,
                 gather_across_devices: bool | None = None) -> None:
        check_positive_int(mini_batch_size, "mini_batch_size")
        super().__init__(model, scale, similarity, gather_across_devices)  # type: ignore[call-arg]
        self.mini_batch_size = mini_batch_size

    def forward(self, features: Sequence[dict[str, Tensor]], labels: Tensor | None) -> Tensor:
        """Embed each feature dict in mini-batches and return the scalar loss.

        With gradients enabled, the returned loss is detached from the tower; calling
        ``backward()`` on it (or on anything computed from it) re-embeds each mini-batch
        and back-propagates the cached gradients into the tower. Without gradients
        (evaluation) it is the plain loss value.

        Args:
            features: One tokenised batch dict per text column, in the column order of
                ``input_format``.
            labels: One label per row, or ``None``.

        Returns:
            A scalar tensor.

        Raises:
            ValueError: If the number of feature dicts does not fit ``input_format`` or the
                batch is empty, before anything is embedded.
        """
        name = type(self).__name__
        check_group_count(len(features), self.input_format, name)
        if features[0]["input_ids"].shape[0] == 0:
            raise ValueError(f"{name}: the batch is empty (0 rows)")
        tower = self.model  # the trainer may swap self.model back before backward runs
        pieces = [mini_batches(f, self.mini_batch_size) for f in features]
        if not torch.is_grad_enabled():
            embeddings = [torch.cat([tower(**mb) for mb in column]) for column in pieces]
            return self.compute_loss_from_embeddings(embeddings, labels)

        device = features[0]["input_ids"].device
        states: list[list[_RandomState]] = []
        embeddings = []
        with torch.no_grad():
            for column in pieces:
                states.append([])
                parts = []
                for mb in column:
                    states[-1].append(_RandomState(device))
                    parts.append(tower(**mb))
                embeddings.append(torch.cat(parts))
        leaves = [e.detach().requires_grad_() for e in embeddings]
        scored, scored_labels = leaves, labels
        if self.gathers:
            scored, scored_labels = distributed.gather_batch(leaves, labels)
        loss = self.compute_loss_from_embeddings(scored, scored_labels)
        # the gathered rows' backward is a collective: every rank reaches this line
        grads = torch.autograd.grad(loss, leaves, allow_unused=True)
        cache = [g if g is not None else torch.zeros_like(e) for g, e in zip(grads, leaves)]
        autocast = (device.type, torch.is_autocast_enabled(device.type),
                    torch.get_autocast_dtype(device.type))
        out = loss.detach().requires_grad_()
        out.register_hook(_replay_hook(tower, pieces, states, cache, autocast))
        return out

    def get_config_dict(self) -> dict[str, Any]:
        return {**super().get_config_dict(), "mini_batch_size": self.mini_batch_size}  # type: ignore[misc]


def _replay_hook(tower: Any, pieces: list[list[dict[str, Tensor]]],
                 states: list[list[_RandomState]], cache: list[Tensor],
                 autocast: tuple[str, bool, torch.dtype]) -> Callable[[Tensor], None]:
    """The hook on the returned loss: re-embed each mini-batch with a graph and
    back-propagate ``cached gradient * grad_output`` into the tower, one at a time.

    Under DDP, every mini-batch but the last runs inside ``no_sync`` so that the gradients
    are all-reduced once, after the last.
    """
    device_type, enabled, dtype = autocast
    jobs = [(mb, state, grad[i : i + mb["input_ids"].shape[0]])
            for column, column_states, grad in zip(pieces, states, cache)
            for mb, state, i in zip(column, column_states, _offsets(column))]

    def hook(grad_output: Tensor) -> None:
        with torch.enable_grad(), torch.autocast(device_type, dtype=dtype, enabled=enabled):
            for k, (mb, state, grad) in enumerate(jobs):
                sync = nullcontext() if k == len(jobs) - 1 else distributed.no_sync(tower)
                with sync:
                    with state.replay():
                        emb = tower(**mb)
                    torch.autograd.backward(emb, (grad * grad_output).to(emb.dtype))

    return hook


def _offsets(column: list[dict[str, Tensor]]) -> list[int]:
    """The first row of each mini-batch of a column."""
    starts, row = [], 0
    for mb in column:
        starts.append(row)
        row += mb["input_ids"].shape[0]
    return starts


class CachedMultipleNegativesRankingLoss(_GradCache, MultipleNegativesRankingLoss):
    """:class:`~siamtext.losses.MultipleNegativesRankingLoss` with GradCache: the loss of a
    large batch for the tower activation memory of ``mini_batch_size`` rows.

    The loss, its value and its gradients are those of
    :class:`~siamtext.losses.MultipleNegativesRankingLoss` on the whole batch (up to float
    rounding; dropout is replayed exactly). Each text column is embedded in mini-batches
    without a graph, the loss's gradient with respect to every embedding is cached, and
    ``backward()`` re-embeds one mini-batch at a time to push those gradients into the tower
    (see :mod:`siamtext.losses.cached`). The price is a second forward pass, about a third
    more compute; use it when the batch you want does not fit in memory, since in-batch
    negatives improve with the batch size.

    Inputs:
        Rows ``(anchor, positive)`` or ``(anchor, positive, negative_1, ..., negative_k)``
        (``input_format = "anchor_positive"``); ``labels`` is ``None`` or ``(batch,)`` class
        ids, as for :class:`~siamtext.losses.MultipleNegativesRankingLoss`.

    Defaults:
        ``scale=20.0``, ``similarity="cosine"`` as the plain loss; ``mini_batch_size=32``:
        small enough for a base-size encoder on most GPUs, large enough to keep them busy.
        It changes memory and speed, never the result.

    Args:
        model: The :class:`siamtext.SiamText` to train.
        scale: Inverse temperature (> 0).
        similarity: ``"cosine"`` or ``"dot"``.
        mini_batch_size: Rows embedded at once (a positive integer).
        gather_across_devices: Under data-parallel training, score the global batch of every
            rank (see :class:`~siamtext.losses.SiamLoss`). ``None``: on when more than one
            process trains.

    Raises:
        ValueError: For a ``mini_batch_size`` that is not a positive integer, a non-positive
            ``scale`` or an unknown ``similarity``; when called, as the plain loss.

    Reference:
        Gao, Zhang, Han and Callan, "Scaling Deep Contrastive Learning Batch Size under
        Memory Limited Setup", RepL4NLP 2021, arXiv:2101.06983 (GradCache); Henderson et
        al. 2017 for the loss.

    Related:
        :class:`~siamtext.losses.MultipleNegativesRankingLoss` (the same loss, one pass),
        :class:`~siamtext.losses.CachedSupervisedContrastiveLoss` (class-labelled rows).

    Examples:
        >>> from siamtext import SiamText
        >>> from siamtext.losses import CachedMultipleNegativesRankingLoss
        >>> model = SiamText()
        >>> loss = CachedMultipleNegativesRankingLoss(model, mini_batch_size=1)
        >>> features = [model.tokenize(["How do I reset my password?", "Where is my card?"]),
        ...             model.tokenize(["I forgot my password", "I lost my card"])]
        >>> loss(features, None).backward()
    """


class CachedSupervisedContrastiveLoss(_GradCache, SupervisedContrastiveLoss):
    """:class:`~siamtext.losses.SupervisedContrastiveLoss` with GradCache: the loss of a
    large class-labelled batch for the tower activation memory of ``mini_batch_size`` rows.

    The loss, its value and its gradients are those of
    :class:`~siamtext.losses.SupervisedContrastiveLoss` on the whole batch (up to float
    rounding; dropout is replayed exactly), computed as in
    :class:`~siamtext.losses.CachedMultipleNegativesRankingLoss`: embed in mini-batches
    without a graph, cache the gradient of each embedding, re-embed one mini-batch at a time
    in ``backward()``. Larger P x K batches give every row more negatives.

    Inputs:
        Rows ``(text, label)`` with integer class ids (``input_format = "labelled"``): one
        feature group and a ``(batch,)`` label tensor, in the trainer's P x K batches.

    Defaults:
        ``scale=20.0``, ``similarity="cosine"`` as the plain loss; ``mini_batch_size=32``,
        which changes memory and speed, never the result.

    Args:
        model: The :class:`siamtext.SiamText` to train.
        scale: Inverse temperature (> 0).
        similarity: ``"cosine"`` or ``"dot"``.
        mini_batch_size: Rows embedded at once (a positive integer).
        gather_across_devices: Under data-parallel training, score the global batch of every
            rank (see :class:`~siamtext.losses.SiamLoss`). ``None``: on when more than one
            process trains.

    Raises:
        ValueError: For a ``mini_batch_size`` that is not a positive integer, a non-positive
            ``scale`` or an unknown ``similarity``; when called, as the plain loss.

    Reference:
        Gao et al., arXiv:2101.06983, 2021 (GradCache); Khosla et al., "Supervised
        Contrastive Learning", NeurIPS 2020, for the loss.

    Related:
        :class:`~siamtext.losses.SupervisedContrastiveLoss` (the same loss, one pass),
        :class:`~siamtext.losses.CachedMultipleNegativesRankingLoss` (anchor-positive rows).

    Examples:
        >>> import torch
        >>> from siamtext import SiamText
        >>> from siamtext.losses import CachedSupervisedContrastiveLoss
        >>> model = SiamText()
        >>> loss = CachedSupervisedContrastiveLoss(model, mini_batch_size=2)
        >>> texts = ["reset my password", "forgot my password", "card lost", "lost my card"]
        >>> loss([model.tokenize(texts)], torch.tensor([0, 0, 1, 1])).backward()
    """
