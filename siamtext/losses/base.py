"""The base class of every siamtext loss, and the input checks they share.

A loss is an ``nn.Module`` that holds the model it trains. Its :meth:`SiamLoss.forward` takes
what a collator yields, one tokenised batch dict per text column plus the label tensor, embeds
each dict with the shared tower and hands the embeddings to
:meth:`SiamLoss.compute_loss_from_embeddings`, a pure function of the embeddings that the
tests check against values computed by hand.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from siamtext import distributed

if TYPE_CHECKING:
    from siamtext.model import SiamText

logger = logging.getLogger(__name__)

InputFormat = Literal["pair", "triplet", "pair_score", "labelled", "anchor_positive"]

#: How many text columns (feature dicts) each input format carries: (at least, at most).
#: ``None`` means no upper bound (anchor, positive and any number of hard negatives).
GROUPS: dict[str, tuple[int, int | None]] = {
    "pair": (2, 2),
    "pair_score": (2, 2),
    "triplet": (3, 3),
    "labelled": (1, 1),
    "anchor_positive": (2, None),
}

#: What the rows of each input format look like, for error messages and collators.
ROWS: dict[str, str] = {
    "pair": "(sentence1, sentence2, label 0/1)",
    "pair_score": "(sentence1, sentence2, float score)",
    "triplet": "(anchor, positive, negative)",
    "labelled": "(text, class label)",
    "anchor_positive": "(anchor, positive[, negative, ...][, class label])",
}


class SiamLoss(nn.Module):
    """Base class: embed every text column with the shared tower, then score the embeddings.

    Subclasses set :attr:`input_format` and implement :meth:`compute_loss_from_embeddings`
    and :meth:`get_config_dict`.

    Under data-parallel training (``torchrun``, ``accelerate launch``) a loss that compares
    the rows of a batch with each other (:attr:`compares_rows`: in-batch negatives, batch
    mining, CoSENT) gathers every rank's embeddings before scoring them, so it sees the
    global batch, and the gradient of each row flows back to the rank that embedded it
    (:mod:`siamtext.distributed`). Gathering happens in training only (with gradients
    enabled); evaluation losses are per process.

    Label checks that read values (class ids, 0/1, a single class) run on CPU label tensors,
    which is what the trainer passes; labels already on a GPU are checked for their size
    only, so that a training step never waits for the GPU to answer.

    Args:
        model: The :class:`siamtext.SiamText` being trained. Its ``forward`` normalises the
            embeddings when ``model.config.normalize`` is set (the default), so distances on
            unit vectors are what the default margins are chosen for.
        gather_across_devices: Score the global batch of all ranks instead of this rank's
            slice. ``None``: on for losses that compare rows (:attr:`compares_rows`) when
            more than one process trains, a no-op in one process.

    Attributes:
        input_format: What rows the loss expects: ``"pair"`` (s1, s2, label 0/1),
            ``"pair_score"`` (s1, s2, float score), ``"triplet"`` (anchor, positive,
            negative), ``"labelled"`` (text, class label) or ``"anchor_positive"``
            (anchor, positive[, negatives...], optional class label). Collators and the
            trainer read it to check that the data fits.
        samples_per_class: K of the P x K class-balanced batches the trainer builds for
            ``"labelled"`` rows when ``TrainingArguments.samples_per_class`` is not set.
        compares_rows: Whether a row's loss depends on the other rows of the batch, so that
            gathering the global batch changes (and improves) the loss. False for losses
            made of independent per-row terms, whose mean DDP already averages exactly.
    """

    input_format: ClassVar[InputFormat]
    samples_per_class: ClassVar[int] = 4
    compares_rows: ClassVar[bool] = False

    def __init__(self, model: SiamText, gather_across_devices: bool | None = None) -> None:
        super().__init__()
        if gather_across_devices is not None and not isinstance(gather_across_devices, bool):
            raise TypeError(f"gather_across_devices must be True, False or None, got "
                            f"{gather_across_devices!r}")
        self.model = model
        self.gather_across_devices = gather_across_devices

    @property
    def gathers(self) -> bool:
        """Whether the next training call gathers the global batch from every rank."""
        wanted = self.gather_across_devices
        if wanted is None:
            wanted = self.compares_rows
        return wanted and torch.is_grad_enabled() and distributed.is_distributed()

    def embed(self, features: Sequence[dict[str, Tensor]]) -> list[Tensor]:
        """One ``(batch, dim)`` embedding per feature dict, through the shared tower."""
        return [self.model(**f) for f in features]

    def forward(self, features: Sequence[dict[str, Tensor]], labels: Tensor | None) -> Tensor:
        """Embed each feature dict and return the scalar loss.

        Args:
            features: One tokenised batch dict per text column (``model.tokenize(texts)``),
                in the column order of :attr:`input_format`.
            labels: One label per row, or ``None`` where the loss needs none.

        Returns:
            A scalar tensor.

        Raises:
            ValueError: If the number of feature dicts does not fit :attr:`input_format`,
                before anything is embedded.
        """
        check_group_count(len(features), self.input_format, type(self).__name__)
        embeddings = self.embed(features)
        if self.gathers:
            embeddings, labels = distributed.gather_batch(embeddings, labels)
        return self.compute_loss_from_embeddings(embeddings, labels)

    def compute_loss_from_embeddings(
        self, embeddings: list[Tensor], labels: Tensor | None
    ) -> Tensor:
        """The loss of already computed embeddings (one ``(batch, dim)`` tensor per column)."""
        raise NotImplementedError

    def get_config_dict(self) -> dict[str, Any]:
        """The loss's parameters as JSON-serialisable values, for the model card."""
        return {}

    def gather_config(self) -> dict[str, Any]:
        """``{"gather_across_devices": ...}`` for :meth:`get_config_dict` of the losses that
        compare rows (omitted when left to the default)."""
        if self.gather_across_devices is None:
            return {}
        return {"gather_across_devices": self.gather_across_devices}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.get_config_dict().items())


# ---------------------------------------------------------------------- shared checks
def check_group_count(count: int, input_format: str, loss_name: str) -> None:
    """Raise ``ValueError`` unless ``count`` text columns fit ``input_format``."""
    low, high = GROUPS[input_format]
    if count < low or (high is not None and count > high):
        expected = f"{low}" if low == high else f"at least {low}"
        raise ValueError(
            f"{loss_name} expects {expected} feature groups for {input_format!r} rows "
            f"{ROWS[input_format]}, got {count}"
        )


def check_embeddings(embeddings: Sequence[Tensor], input_format: str,
                     loss_name: str) -> list[Tensor]:
    """Check the number and shapes of the embedding groups; return them as float32+.

    Every group must be a 2-D ``(batch, dim)`` tensor with the same batch size and dim as the
    first, and the batch must not be empty. Half-precision embeddings (from autocast) are
    cast to float32 so that exponentials and squares do not overflow.
    """
    check_group_count(len(embeddings), input_format, loss_name)
    first = embeddings[0]
    for i, emb in enumerate(embeddings):
        if not isinstance(emb, Tensor) or emb.ndim != 2:
            shape = tuple(emb.shape) if isinstance(emb, Tensor) else type(emb).__name__
            raise ValueError(f"{loss_name}: embeddings[{i}] must be a 2-D (batch, dim) tensor, "
                             f"got {shape}")
        if emb.shape != first.shape:
            raise ValueError(f"{loss_name}: embeddings[{i}] has shape {tuple(emb.shape)}, but "
                             f"embeddings[0] has {tuple(first.shape)}; every column needs the "
                             "same number of rows")
    if first.shape[0] == 0:
        raise ValueError(f"{loss_name}: the batch is empty (0 rows)")
    return [e.float() if e.dtype in (torch.float16, torch.bfloat16) else e for e in embeddings]


def check_labels(labels: Tensor | None, batch_size: int, loss_name: str,
                 device: torch.device) -> Tensor:
    """Return ``labels`` flattened to ``(batch_size,)`` on ``device`` (a copy that does not
    block the host).

    Raises:
        ValueError: If ``labels`` is ``None`` or has a different number of elements.
    """
    if labels is None:
        raise ValueError(f"{loss_name} needs labels (one per row), got None")
    labels = torch.as_tensor(labels)
    if labels.numel() != batch_size:
        raise ValueError(f"{loss_name} expects {batch_size} labels (one per row), got "
                         f"{labels.numel()} with shape {tuple(labels.shape)}")
    return labels.reshape(-1).to(device, non_blocking=True)


def readable(tensor: Tensor) -> bool:
    """Whether reading ``tensor``'s values is free: it lives on the CPU.

    Value checks on a GPU tensor would make the host wait for the device on every training
    step, so the checks that read label values run only where this is true; the trainer has
    checked the whole dataset before training.
    """
    return tensor.device.type == "cpu"


def check_binary_labels(labels: Tensor, loss_name: str) -> Tensor:
    """Return 0/1 ``labels`` as a bool tensor (True = similar).

    Raises:
        ValueError: Naming the values that are neither 0 nor 1.
    """
    if labels.dtype == torch.bool:
        return labels
    if not readable(labels):
        return labels == 1
    bad = labels[(labels != 0) & (labels != 1)]
    if bad.numel():
        values = torch.unique(bad).tolist()[:10]
        raise ValueError(f"{loss_name}: labels must be 0 (dissimilar) or 1 (similar), got "
                         f"other values {values}")
    return labels == 1


def check_margin(margin: object, name: str = "margin") -> float:
    """Return ``margin`` as a float if it is a finite number >= 0 (else ``ValueError``)."""
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not (
        0 <= float(margin) < float("inf")
    ):
        raise ValueError(f"{name} must be a finite number >= 0, got {margin!r}")
    return float(margin)


def check_scale(scale: object, name: str = "scale") -> float:
    """Return ``scale`` as a float if it is a finite number > 0 (else ``ValueError``)."""
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not (
        0 < float(scale) < float("inf")
    ):
        raise ValueError(f"{name} must be a finite number > 0, got {scale!r}")
    return float(scale)


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` where ``mask`` is true; 0 (attached to the graph) where it never is.

    Unlike ``values[mask].mean()`` this never reads the mask back to the host, so a GPU step
    does not wait on it.
    """
    values = torch.where(mask, values, torch.zeros((), dtype=values.dtype, device=values.device))
    return values.sum() / mask.sum().clamp(min=1)


def check_class_labels(labels: Tensor, loss_name: str) -> Tensor:
    """Check that ``labels`` are class ids with at least two distinct classes.

    Raises:
        ValueError: If the labels are not whole numbers, or all rows share one class (no
            negative exists for any anchor).
    """
    if not readable(labels):
        return labels
    if labels.is_floating_point() and not bool((labels == labels.round()).all()):
        raise ValueError(f"{loss_name}: labels must be class ids (whole numbers), got "
                         f"{labels[:10].tolist()}")
    classes = torch.unique(labels)
    if classes.numel() < 2:
        raise ValueError(
            f"{loss_name}: all {labels.numel()} rows of the batch have the same label "
            f"{classes.tolist()}, so no anchor has a negative; a batch needs at least two "
            "classes (use the class-balanced P x K batch sampler)"
        )
    return labels


class LabelledLoss(SiamLoss):
    """Base class of the losses on class-labelled rows ``(text, label)``: one feature group
    and a ``(batch,)`` tensor of class ids, checked by :meth:`labelled_batch`."""

    input_format: ClassVar[InputFormat] = "labelled"

    compares_rows: ClassVar[bool] = True

    def __init__(self, model: SiamText, gather_across_devices: bool | None = None) -> None:
        super().__init__(model, gather_across_devices)
        self._warned_no_positive = False

    def labelled_batch(self, embeddings: Sequence[Tensor],
                       labels: Tensor | None) -> tuple[Tensor, Tensor]:
        """The batch's one ``(batch, dim)`` embedding tensor and its checked class ids.

        Warns once when no two rows share a label (no positive pair: a zero loss).

        Raises:
            ValueError: If labels are missing, of the wrong size, not class ids, or all the
                same (no negatives), or there is not exactly one feature group.
        """
        name = type(self).__name__
        (emb,) = check_embeddings(embeddings, self.input_format, name)
        labels = check_class_labels(check_labels(labels, emb.shape[0], name, emb.device), name)
        if (not self._warned_no_positive and readable(labels)
                and torch.unique(labels).numel() == labels.numel()):
            self._warned_no_positive = True
            logger.warning("%s: a batch in which no two rows share a label has no positive "
                           "pair and gives a zero loss; use the class-balanced P x K batch "
                           "sampler (shown once).", name)
        return emb, labels
