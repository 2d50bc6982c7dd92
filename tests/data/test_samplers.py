"""Batch samplers: coverage, length grouping, no repeats in a batch, P x K balance, errors."""

from __future__ import annotations

from collections import Counter

import pytest

from siamtext.data.samplers import ClassBalancedBatchSampler, LengthGroupedBatchSampler


def test_length_grouped_batches_cover_every_row_once() -> None:
    lengths = [i % 37 for i in range(200)]
    sampler = LengthGroupedBatchSampler(lengths, 16, seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 13
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(200))
    # rows sorted within mega-batches: the spread of lengths inside a batch is small
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches)
    random_like = LengthGroupedBatchSampler(lengths, 16, seed=3, mega_batches=1)
    random_spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b)
                        for b in random_like)
    assert spread < random_spread / 2


def test_length_grouped_is_seeded_per_epoch() -> None:
    sampler = LengthGroupedBatchSampler(list(range(100)), 10, seed=1)
    first = list(sampler)
    assert list(sampler) == first  # same epoch, same batches (resume needs this)
    sampler.set_epoch(1)
    assert list(sampler) != first


def test_groups_keep_a_key_out_of_a_batch_twice() -> None:
    labels = [i % 20 for i in range(300)]
    sampler = LengthGroupedBatchSampler([i % 13 for i in range(300)], 16, groups=labels)
    batches = list(sampler)
    assert all(len({labels[i] for i in b}) == len(b) for b in batches)
    assert sorted(i for b in batches for i in b) == list(range(300))  # every row, once
    assert len(sampler) == len(batches)


def test_grouped_batches_keep_every_row_when_groups_are_lopsided() -> None:
    """One class with half the rows cannot fill every batch: its rows end in the epoch's
    last batches instead of being dropped."""
    labels = [0] * 50 + list(range(1, 51))
    for epoch in range(3):
        sampler = LengthGroupedBatchSampler([5] * 100, 8, groups=labels, seed=1)
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert sorted(i for b in batches for i in b) == list(range(100))
        assert all(sum(labels[i] == 0 for i in b) <= 1 for b in batches)
        assert len(sampler) == len(batches)


def test_drop_last() -> None:
    batches = list(LengthGroupedBatchSampler([1] * 25, 10, drop_last=True))
    assert [len(b) for b in batches] == [10, 10]


def test_class_balanced_batches_are_p_by_k_without_duplicate_texts() -> None:
    labels = [i % 10 for i in range(400)]
    texts = [f"t{i % 150}" for i in range(400)]  # duplicates across rows
    sampler = ClassBalancedBatchSampler(labels, 32, samples_per_class=4, texts=texts, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 13
    for b in batches:
        counts = Counter(labels[i] for i in b)
        assert len(counts) == 8 and set(counts.values()) == {4}
        assert len({texts[i] for i in b}) == len(b)


def test_minority_classes_are_not_starved() -> None:
    labels = ["big"] * 900 + [f"small{i}" for i in range(9) for _ in range(5)]
    sampler = ClassBalancedBatchSampler(labels, 8, samples_per_class=2, seed=0)
    seen = Counter(labels[i] for b in sampler for i in b)
    # classes are drawn uniformly: each small class is seen about as often as the big one
    assert min(seen[f"small{i}"] for i in range(9)) > seen["big"] / 3


def test_small_class_gives_what_it_has() -> None:
    labels = ["a"] * 10 + ["b"] * 10 + ["c"]
    for batch in ClassBalancedBatchSampler(labels, 12, samples_per_class=4, seed=2):
        counts = Counter(labels[i] for i in batch)
        assert counts.get("c", 0) <= 1 and len(set(batch)) == len(batch)


def test_class_balanced_errors() -> None:
    with pytest.raises(ValueError, match=r"batch_size=8 is smaller than .* = 4 x 4 = 16"):
        ClassBalancedBatchSampler([0, 1] * 10, 8, samples_per_class=4, classes_per_batch=4)
    with pytest.raises(ValueError, match="classes_per_batch=4 but the data has only 2"):
        ClassBalancedBatchSampler([0, 1] * 10, 16, samples_per_class=4)
    with pytest.raises(ValueError, match="every class has a single example"):
        ClassBalancedBatchSampler([0, 1, 2], 2, samples_per_class=2, classes_per_batch=1)
    with pytest.raises(ValueError, match="labels is empty"):
        ClassBalancedBatchSampler([], 4)
    with pytest.raises(ValueError, match="samples_per_class must be a positive integer"):
        ClassBalancedBatchSampler([0, 1], 4, samples_per_class=0)


def test_length_grouped_errors() -> None:
    with pytest.raises(ValueError, match="lengths is empty"):
        LengthGroupedBatchSampler([], 4)
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        LengthGroupedBatchSampler([1], 0)
    with pytest.raises(ValueError, match="groups has 1 entries but there are 2 rows"):
        LengthGroupedBatchSampler([1, 2], 1, groups=[0])
    with pytest.raises(ValueError, match=r"batch_size=4 needs .* the data has 2"):
        LengthGroupedBatchSampler([1, 2, 3], 4, groups=[0, 1, 0])
