"""Online contrastive loss: the contrastive loss on the hard pairs of each batch only."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from siamtext.losses.contrastive import ContrastiveLoss


def hard_pair_mask(distances: Tensor, similar: Tensor) -> Tensor:
    """Which pairs of the batch are hard, as a bool ``(batch,)`` tensor.

    * A positive (similar) pair is hard when its distance exceeds the smallest distance of a
      negative pair in the batch: some dissimilar pair is closer than it.
    * A negative pair is hard when its distance is below the largest distance of a positive
      pair in the batch.

    When the batch has no negative pairs, the positives farther apart than the mean positive
    distance are hard; when it has no positive pairs, the negatives closer than the mean
    negative distance are (the rule of sentence-transformers' ``OnlineContrastiveLoss``).
    Comparisons are strict, so ties are easy. Nothing here reads a value back to the host.
    """
    dissimilar = ~similar
    has_positive, has_negative = similar.any(), dissimilar.any()
    positive_mean = (distances * similar).sum() / similar.sum().clamp(min=1)
    negative_mean = (distances * dissimilar).sum() / dissimilar.sum().clamp(min=1)
    positive_threshold = torch.where(
        has_negative, distances.masked_fill(similar, float("inf")).amin(), positive_mean)
    negative_threshold = torch.where(
        has_positive, distances.masked_fill(dissimilar, float("-inf")).amax(), negative_mean)
    return (similar & (distances > positive_threshold)) | (
        ~similar & (distances < negative_threshold)
    )


class OnlineContrastiveLoss(ContrastiveLoss):
    """Contrastive loss (Hadsell et al. 2006) on the hard pairs of the batch only.

    Each pair pays the terms of :class:`~siamtext.losses.ContrastiveLoss` (``D^2/2`` for
    similar pairs, ``max(0, margin - D)^2/2`` for dissimilar ones) if it is hard, and nothing
    otherwise:

    * hard positive: a similar pair farther apart than the closest dissimilar pair of the
      batch (``D > min D_negative``);
    * hard negative: a dissimilar pair closer than the farthest similar pair of the batch
      (``D < max D_positive``).

    A batch without dissimilar pairs counts the similar pairs above their mean distance as
    hard; a batch without similar pairs counts the dissimilar pairs below their mean distance
    as hard (so a one-sided batch still trains, on its worse half). When no pair is hard the
    loss is 0, with gradients of 0. Labels follow the dataset convention, 1 = similar (the
    paper's ``Y = 1 - label``).

    The selection is that of sentence-transformers' ``OnlineContrastiveLoss``; unlike it,
    the terms keep Hadsell's 1/2 and ``size_average=True`` divides their sum by the batch
    size, so that the loss equals :class:`ContrastiveLoss` with the easy pairs' terms set
    to 0 (the scale of a loss does not change AdamW's steps).

    Inputs:
        Rows ``(sentence1, sentence2, label)`` with label 0 or 1 (``input_format = "pair"``).

    Defaults:
        ``distance="cosine"``, ``margin=0.5``, as :class:`ContrastiveLoss` and for the same
        reason: on L2-normalised embeddings cosine distance lies in [0, 2] and a dissimilar
        pair can reach a cosine similarity below 0.5, so the margin is attainable.

    Args:
        model: The :class:`siamtext.SiamText` to train.
        distance: ``"cosine"``, ``"euclidean"`` or ``"manhattan"``.
        margin: Distance beyond which dissimilar pairs cost nothing (>= 0).
        size_average: Divide the sum of the hard pairs' terms by the batch size (else sum).
        gather_across_devices: Under data-parallel training, score the global batch of every
            rank (see :class:`~siamtext.losses.SiamLoss`). ``None``: on when more than one
            process trains.

    Raises:
        ValueError: For an unknown ``distance`` or a negative ``margin``; when called, for
            labels other than 0 and 1 (naming them) or sizes that do not match.

    Reference:
        Hadsell, Chopra and LeCun, "Dimensionality Reduction by Learning an Invariant
        Mapping", CVPR 2006; hard-pair selection as in sentence-transformers.

    Related:
        :class:`~siamtext.losses.ContrastiveLoss` (every pair),
        :class:`~siamtext.losses.BatchHardTripletLoss` (hard mining over class labels).

    Examples:
        >>> import torch
        >>> from siamtext import SiamText
        >>> from siamtext.losses import OnlineContrastiveLoss
        >>> model = SiamText()
        >>> loss = OnlineContrastiveLoss(model)
        >>> features = [model.tokenize(["How do I reset my password?", "Where is my card?"]),
        ...             model.tokenize(["I forgot my password", "What is the weather?"])]
        >>> loss(features, torch.tensor([1, 0])).backward()
    """

    compares_rows: ClassVar[bool] = True

    def pair_mask(self, distances: Tensor, similar: Tensor) -> Tensor:
        """The hard pairs of the batch (:func:`hard_pair_mask`)."""
        return hard_pair_mask(distances, similar)
