"""Training data: collators, row builders from labelled texts, and batch samplers."""

from __future__ import annotations

from siamtext.data.collators import (
    DEFAULT_COLUMNS,
    LabelledCollator,
    PairCollator,
    TextCollator,
    TokenizedDataset,
    TripletCollator,
    check_columns,
    encode_labels,
    pretokenize,
)
from siamtext.data.pairs import make_anchor_positives, make_pairs, make_triplets
from siamtext.data.samplers import ClassBalancedBatchSampler, LengthGroupedBatchSampler

__all__ = [
    "DEFAULT_COLUMNS",
    "ClassBalancedBatchSampler",
    "LabelledCollator",
    "LengthGroupedBatchSampler",
    "PairCollator",
    "TextCollator",
    "TokenizedDataset",
    "TripletCollator",
    "check_columns",
    "encode_labels",
    "make_anchor_positives",
    "make_pairs",
    "make_triplets",
    "pretokenize",
]
