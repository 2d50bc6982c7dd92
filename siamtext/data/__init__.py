"""Training data: preparation for a loss, collators, row builders from labelled texts, batch
samplers, and batching over data-parallel ranks."""

from __future__ import annotations

from siamtext.data.batching import ShardedBatchSampler, choose_batch_sampler, make_batch_sampler
from siamtext.data.collators import LabelledCollator, PairCollator, TextCollator, TripletCollator
from siamtext.data.pairs import make_anchor_positives, make_pairs, make_triplets
from siamtext.data.prepare import (
    DEFAULT_COLUMNS,
    DataSpec,
    TokenizedDataset,
    check_columns,
    check_data,
    check_finite,
    column_names,
    encode_labels,
    prepare_dataset,
    pretokenize,
    resolve_columns,
)
from siamtext.data.samplers import ClassBalancedBatchSampler, LengthGroupedBatchSampler

__all__ = [
    "DEFAULT_COLUMNS",
    "ClassBalancedBatchSampler",
    "DataSpec",
    "LabelledCollator",
    "LengthGroupedBatchSampler",
    "PairCollator",
    "ShardedBatchSampler",
    "TextCollator",
    "TokenizedDataset",
    "TripletCollator",
    "check_columns",
    "check_data",
    "check_finite",
    "choose_batch_sampler",
    "column_names",
    "encode_labels",
    "make_anchor_positives",
    "make_batch_sampler",
    "make_pairs",
    "make_triplets",
    "prepare_dataset",
    "pretokenize",
    "resolve_columns",
]
