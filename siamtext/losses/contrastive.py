"""Contrastive loss (Hadsell, Chopra and LeCun, 2006) for labelled pairs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

from siamtext.distances import DistanceName, paired_distance
from siamtext.losses.base import (
    InputFormat,
    SiamLoss,
    check_binary_labels,
    check_embeddings,
    check_labels,
    check_margin,
)

if TYPE_CHECKING:
    from siamtext.model import SiamText

#: Cosine distance ``1 - cos`` lies in [0, 2] on any embeddings and is insensitive to scale.
DEFAULT_DISTANCE: DistanceName = "cosine"
#: Dissimilar pairs stop paying once their cosine similarity falls below 0.5.
DEFAULT_MARGIN = 0.5


def contrastive_terms(distances: Tensor, similar: Tensor, margin: float) -> Tensor:
    """Per-pair contrastive terms: ``D^2/2`` if similar, else ``max(0, margin - D)^2/2``."""
    positive = 0.5 * distances.pow(2)
    negative = 0.5 * torch.relu(margin - distances).pow(2)
    return torch.where(similar, positive, negative)


class ContrastiveLoss(SiamLoss):
    """Contrastive loss of Hadsell et al. (2006): pull similar pairs together, push
    dissimilar pairs at least ``margin`` apart.

    For a pair at distance ``D`` with dataset label ``y`` (1 = similar / duplicate /
    same class, 0 = dissimilar)::

        L = y * D^2 / 2 + (1 - y) * max(0, margin - D)^2 / 2

    The paper writes ``Y = 0`` for similar pairs and ``Y = 1`` for dissimilar ones,
    ``L = (1 - Y) * D^2 / 2 + Y * max(0, m - D)^2 / 2``; so ``Y = 1 - y``: pass the dataset's
    labels as they are.

    Inputs:
        Rows ``(sentence1, sentence2, label)`` with label 0 or 1 (``input_format = "pair"``):
        two feature groups and a ``(batch,)`` label tensor.

    Defaults:
        ``distance="cosine"``, ``margin=0.5``. Embeddings are L2-normalised by default, so
        cosine distance ``1 - cos`` lies in [0, 2] (Euclidean in [0, 2] too, equal to
        ``sqrt(2 * cosine distance)``). A margin of 0.5 asks dissimilar pairs for a cosine
        similarity below 0.5, a target well inside the range that pretrained encoders can
        reach, so easy negatives stop contributing (a margin >= 2 could never be met and
        would push every negative forever). With ``distance="euclidean"`` the same target
        is ``margin=1.0``; with ``"manhattan"`` the range grows with the dimension, so pick
        the margin from the distances your model produces.

    Args:
        model: The :class:`siamtext.SiamText` to train.
        distance: ``"cosine"``, ``"euclidean"`` or ``"manhattan"``.
        margin: Distance beyond which dissimilar pairs cost nothing (>= 0).
        size_average: Average over the pairs of the batch (else sum).
        gather_across_devices: Under data-parallel training, score the global batch of every
            rank. ``None``: off, as each row's term does not depend on the others and DDP's
            average of the per-rank means already is the global mean.

    Raises:
        ValueError: For an unknown ``distance`` or a negative ``margin``; when called, for
            labels other than 0 and 1 (naming them) or sizes that do not match.

    Reference:
        Hadsell, Chopra and LeCun, "Dimensionality Reduction by Learning an Invariant
        Mapping", CVPR 2006.

    Related:
        :class:`~siamtext.losses.OnlineContrastiveLoss` (only the hard pairs of the batch),
        :class:`~siamtext.losses.CoSENTLoss` (graded scores instead of 0/1),
        :class:`~siamtext.losses.MultipleNegativesRankingLoss` (positive pairs only).

    Examples:
        >>> import torch
        >>> from siamtext import SiamText
        >>> from siamtext.losses import ContrastiveLoss
        >>> model = SiamText()
        >>> loss = ContrastiveLoss(model)
        >>> features = [model.tokenize(["How do I reset my password?", "Where is my card?"]),
        ...             model.tokenize(["I forgot my password", "What is the weather?"])]
        >>> value = loss(features, torch.tensor([1, 0]))
        >>> value.backward()
    """

    input_format: ClassVar[InputFormat] = "pair"

    def __init__(self, model: SiamText, distance: DistanceName = DEFAULT_DISTANCE,
                 margin: float = DEFAULT_MARGIN, size_average: bool = True,
                 gather_across_devices: bool | None = None) -> None:
        super().__init__(model, gather_across_devices)
        self.distance_fn = paired_distance(distance)
        self.distance = distance
        self.margin = check_margin(margin)
        self.size_average = bool(size_average)

    def compute_loss_from_embeddings(
        self, embeddings: list[Tensor], labels: Tensor | None
    ) -> Tensor:
        """Contrastive loss of two ``(batch, dim)`` embedding groups.

        Args:
            embeddings: ``[first, second]``, each ``(batch, dim)``.
            labels: ``(batch,)`` of 0/1 (1 = similar).

        Returns:
            A scalar: the mean (or sum) of the per-pair terms.
        """
        name = type(self).__name__
        a, b = check_embeddings(embeddings, self.input_format, name)
        similar = check_binary_labels(check_labels(labels, a.shape[0], name, a.device), name)
        distances = self.distance_fn(a, b)
        terms = contrastive_terms(distances, similar, self.margin)
        keep = self.pair_mask(distances.detach(), similar)
        if keep is not None:
            terms = terms * keep
        return terms.mean() if self.size_average else terms.sum()

    def pair_mask(self, distances: Tensor, similar: Tensor) -> Tensor | None:
        """Which pairs pay their terms; ``None`` (the default) means every pair.

        Subclasses that mine the batch (:class:`OnlineContrastiveLoss`) override this.
        """
        return None

    def get_config_dict(self) -> dict[str, Any]:
        return {"distance": self.distance, "margin": self.margin,
                "size_average": self.size_average, **self.gather_config()}
