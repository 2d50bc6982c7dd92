"""Triplet loss (FaceNet, Schroff et al. 2015) on explicit (anchor, positive, negative) rows."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

from siamtext.distances import DistanceName, paired_distance
from siamtext.losses.base import InputFormat, SiamLoss, check_embeddings, check_margin

if TYPE_CHECKING:
    from siamtext.model import SiamText

#: FaceNet's choice: Euclidean distance between unit vectors.
DEFAULT_DISTANCE: DistanceName = "euclidean"
#: FaceNet's alpha, on squared Euclidean distances of unit vectors (which lie in [0, 4]).
DEFAULT_MARGIN = 0.2


def triplet_terms(d_ap: Tensor, d_an: Tensor, margin: float, squared: bool) -> Tensor:
    """Per-row triplet terms ``max(0, d(a,p)^k - d(a,n)^k + margin)``, ``k = 2 if squared``."""
    if squared:
        d_ap, d_an = d_ap.pow(2), d_an.pow(2)
    return torch.relu(d_ap - d_an + margin)


class TripletLoss(SiamLoss):
    """FaceNet triplet loss: each anchor must be closer to its positive than to its negative
    by at least ``margin``.

    For each row ``(a, p, n)``::

        L = max(0, d(a, p)^2 - d(a, n)^2 + margin)

    averaged over the batch. As in FaceNet the distances are **squared** (``squared=True``);
    ``squared=False`` gives the plain-distance variant ``max(0, d(a,p) - d(a,n) + margin)``
    of sentence-transformers' ``TripletLoss``.

    Inputs:
        Rows ``(anchor, positive, negative)`` (``input_format = "triplet"``): three
        feature groups; no labels (``labels`` is ignored, ``None`` is fine).

    Defaults:
        ``distance="euclidean"``, ``margin=0.2``, ``squared=True``: FaceNet's own setting,
        made for L2-normalised embeddings like siamtext's. On unit vectors the squared
        Euclidean distance is ``2 - 2 cos`` and lies in [0, 4], so a margin of 0.2 asks the
        positive's cosine similarity to beat the negative's by 0.1: attainable, and a
        triplet that meets it stops contributing. (sentence-transformers' default, Euclidean
        with margin 5, can never be met on unit vectors and keeps pushing every triplet.)
        With ``distance="cosine"`` and ``squared=False``, margin 0.1 is the same target.

    Args:
        model: The :class:`siamtext.SiamText` to train.
        distance: ``"euclidean"``, ``"cosine"`` or ``"manhattan"``.
        margin: The ``alpha`` of FaceNet (>= 0), in units of the (squared) distance.
        squared: Square the distances, as FaceNet does.
        gather_across_devices: Under data-parallel training, score the global batch of every
            rank. ``None``: off, as each row's term does not depend on the others and DDP's
            average of the per-rank means already is the global mean.

    Raises:
        ValueError: For an unknown ``distance`` or a negative ``margin``; when called, for a
            number of feature groups other than 3 or groups of different sizes.

    Reference:
        Schroff, Kalenichenko and Philbin, "FaceNet: A Unified Embedding for Face Recognition
        and Clustering", CVPR 2015.

    Related:
        :class:`~siamtext.losses.BatchHardTripletLoss` and friends (triplets mined from
        class-labelled batches), :class:`~siamtext.losses.MultipleNegativesRankingLoss`
        (the same rows, with every other row's positive as an extra negative).

    Examples:
        >>> import torch
        >>> from siamtext import SiamText
        >>> from siamtext.losses import TripletLoss
        >>> model = SiamText()
        >>> loss = TripletLoss(model)
        >>> features = [model.tokenize(["How do I reset my password?"]),
        ...             model.tokenize(["I forgot my password"]),
        ...             model.tokenize(["Where is my card?"])]
        >>> loss(features, None).backward()
    """

    input_format: ClassVar[InputFormat] = "triplet"

    def __init__(self, model: SiamText, distance: DistanceName = DEFAULT_DISTANCE,
                 margin: float = DEFAULT_MARGIN, squared: bool = True,
                 gather_across_devices: bool | None = None) -> None:
        super().__init__(model, gather_across_devices)
        self.distance_fn = paired_distance(distance)
        self.distance = distance
        self.margin = check_margin(margin)
        self.squared = bool(squared)

    def compute_loss_from_embeddings(
        self, embeddings: list[Tensor], labels: Tensor | None
    ) -> Tensor:
        """Triplet loss of three ``(batch, dim)`` groups ``[anchor, positive, negative]``.

        Args:
            embeddings: ``[anchor, positive, negative]``, each ``(batch, dim)``.
            labels: Ignored.

        Returns:
            A scalar: the mean of the per-row terms.
        """
        anchor, positive, negative = check_embeddings(embeddings, self.input_format,
                                                      type(self).__name__)
        d_ap = self.distance_fn(anchor, positive)
        d_an = self.distance_fn(anchor, negative)
        return triplet_terms(d_ap, d_an, self.margin, self.squared).mean()

    def get_config_dict(self) -> dict[str, Any]:
        return {"distance": self.distance, "margin": self.margin, "squared": self.squared,
                **self.gather_config()}
