"""Losses that train a SiamText tower, one per module.

Each loss is called as ``loss(features, labels)`` with one tokenised batch dict per text
column; its ``input_format`` says which rows it expects:

===========================================  =====================  ===============================
loss                                         ``input_format``       rows
===========================================  =====================  ===============================
:class:`ContrastiveLoss`                     ``"pair"``             (s1, s2, label 0/1)
:class:`OnlineContrastiveLoss`               ``"pair"``             (s1, s2, label 0/1)
:class:`CoSENTLoss`                          ``"pair_score"``       (s1, s2, float score)
:class:`TripletLoss`                         ``"triplet"``          (anchor, positive, negative)
:class:`BatchHardTripletLoss`                ``"labelled"``         (text, class label)
:class:`BatchSemiHardTripletLoss`            ``"labelled"``         (text, class label)
:class:`BatchAllTripletLoss`                 ``"labelled"``         (text, class label)
:class:`MultipleNegativesRankingLoss`        ``"anchor_positive"``  (anchor, positive[, negatives])
:class:`SupervisedContrastiveLoss`           ``"labelled"``         (text, class label)
:class:`PrototypicalLoss`                    ``"labelled"``         (text, class label)
:class:`CachedMultipleNegativesRankingLoss`  ``"anchor_positive"``  (anchor, positive[, negatives])
:class:`CachedSupervisedContrastiveLoss`     ``"labelled"``         (text, class label)
===========================================  =====================  ===============================
"""

from __future__ import annotations

from siamtext.losses.base import GROUPS, ROWS, InputFormat, LabelledLoss, SiamLoss
from siamtext.losses.batch_triplet import (
    BatchAllTripletLoss,
    BatchHardTripletLoss,
    BatchSemiHardTripletLoss,
)
from siamtext.losses.cached import (
    CachedMultipleNegativesRankingLoss,
    CachedSupervisedContrastiveLoss,
)
from siamtext.losses.contrastive import ContrastiveLoss
from siamtext.losses.cosent import CoSENTLoss
from siamtext.losses.in_batch import MultipleNegativesRankingLoss
from siamtext.losses.online_contrastive import OnlineContrastiveLoss
from siamtext.losses.prototypical import PrototypicalLoss
from siamtext.losses.supcon import SupervisedContrastiveLoss
from siamtext.losses.triplet import TripletLoss

#: Loss classes by name, for the CLI and configs (``--loss batch_hard_triplet``).
LOSSES: dict[str, type[SiamLoss]] = {
    "contrastive": ContrastiveLoss,
    "online_contrastive": OnlineContrastiveLoss,
    "cosent": CoSENTLoss,
    "triplet": TripletLoss,
    "batch_hard_triplet": BatchHardTripletLoss,
    "batch_semi_hard_triplet": BatchSemiHardTripletLoss,
    "batch_all_triplet": BatchAllTripletLoss,
    "multiple_negatives_ranking": MultipleNegativesRankingLoss,
    "supervised_contrastive": SupervisedContrastiveLoss,
    "prototypical": PrototypicalLoss,
    "cached_multiple_negatives_ranking": CachedMultipleNegativesRankingLoss,
    "cached_supervised_contrastive": CachedSupervisedContrastiveLoss,
}

__all__ = [
    "GROUPS",
    "LOSSES",
    "ROWS",
    "BatchAllTripletLoss",
    "BatchHardTripletLoss",
    "BatchSemiHardTripletLoss",
    "CachedMultipleNegativesRankingLoss",
    "CachedSupervisedContrastiveLoss",
    "CoSENTLoss",
    "ContrastiveLoss",
    "InputFormat",
    "LabelledLoss",
    "MultipleNegativesRankingLoss",
    "OnlineContrastiveLoss",
    "PrototypicalLoss",
    "SiamLoss",
    "SupervisedContrastiveLoss",
    "TripletLoss",
]
