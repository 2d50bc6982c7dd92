"""Batching for a loss: the sampler ``auto`` picks, and global batches sliced over ranks
(equal slices, the same global batches whatever the number of ranks, no row twice, P x K
balance, exact lengths, errors that name the world size). Pure Python: no processes."""

from __future__ import annotations

import logging
from collections import Counter

import pytest
import torch

from siamtext.data.batching import (
    ShardedBatchSampler,
    choose_batch_sampler,
    make_batch_sampler,
)
from siamtext.data.prepare import DataSpec, TokenizedDataset
from siamtext.data.samplers import LengthGroupedBatchSampler

KINDS = ["length", "random", "no_duplicates", "one_per_class", "class_balanced"]
NO_REPEATS = ["length", "random", "no_duplicates", "one_per_class"]


def _labelled(n: int = 203, classes: int = 20) -> tuple[TokenizedDataset, DataSpec]:
    rows = TokenizedDataset({"text": [f"t{i}" for i in range(n)],
                             "label": [i % classes for i in range(n)]},
                            [i % 17 + 1 for i in range(n)])
    return rows, DataSpec(["text"], "label", torch.long)


def _anchor_positive(n: int = 203, classes: int = 60) -> tuple[TokenizedDataset, DataSpec]:
    rows = TokenizedDataset({"anchor": [[i % 90, 7] for i in range(n)],  # token ids
                             "positive": [f"p{i}" for i in range(n)],
                             "label": [i % classes for i in range(n)]},
                            [i % 13 + 1 for i in range(n)])
    return rows, DataSpec(["anchor", "positive"], "label", torch.long)


def _data(kind: str) -> tuple[TokenizedDataset, DataSpec]:
    return _labelled() if kind == "class_balanced" else _anchor_positive()


def _steps(kind: str, batch_size: int, world: int, epoch: int = 0,
           **kwargs) -> list[list[list[int]]]:
    """Per step, the slice of each rank (in rank order)."""
    rows, spec = _data(kind)
    samplers = [make_batch_sampler(kind, rows, spec, batch_size=batch_size, world_size=world,
                                   rank=r, seed=5, samples_per_class=2, **kwargs)
                for r in range(world)]
    per_rank = []
    for sampler in samplers:
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(sampler) == len(batches)  # exact, as the trainer's step count needs
        per_rank.append(batches)
    return [list(step) for step in zip(*per_rank, strict=True)]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("epoch", [0, 3])
def test_global_batches_do_not_depend_on_the_number_of_ranks(kind: str, epoch: int) -> None:
    one = [b for [b] in _steps(kind, 8, 1, epoch)]
    for world in (2, 4):
        steps = _steps(kind, 8 // world, world, epoch)
        for slices in steps:  # every rank gets the same number of rows at every step
            assert len({len(s) for s in slices}) == 1 and slices[0]
        glued = [[i for s in slices for i in s] for slices in steps]
        assert glued == [b[: len(b) // world * world] for b in one if len(b) >= world]


@pytest.mark.parametrize("kind", NO_REPEATS)
def test_no_row_is_seen_twice_in_an_epoch(kind: str) -> None:
    seen = [i for slices in _steps(kind, 4, 3) for s in slices for i in s]
    assert len(seen) == len(set(seen))
    if kind in ("length", "random"):  # nothing but the cut is left out
        assert len(seen) >= 203 - 11


def test_class_balance_holds_on_the_global_batch() -> None:
    rows, _ = _labelled()
    labels = rows.columns["label"]
    for slices in _steps("class_balanced", 4, 2):  # P = 8 // 2 = 4 classes x K = 2
        counts = Counter(labels[i] for s in slices for i in s)
        assert len(counts) == 4 and set(counts.values()) == {2}
    for slices in _steps("class_balanced", 3, 4, classes_per_batch=6):  # P is global
        counts = Counter(labels[i] for s in slices for i in s)
        assert len(counts) == 6 and set(counts.values()) == {2}


def _texts(n: int) -> tuple[TokenizedDataset, DataSpec]:
    rows = TokenizedDataset({"text": [f"t{i}" for i in range(n)]}, [1] * n)
    return rows, DataSpec(["text"], None)


@pytest.mark.parametrize(("rows", "world", "sizes", "cut", "skipped"), [
    (53, 3, [1, 4, 4, 4, 4], 2, 0),  # global batches 12 x 4 and 5: the 5 cut to 3
    (50, 3, [4, 4, 4, 4], 0, 2),  # global batches 12 x 4 and 2: the 2 skipped
    (48, 3, [4, 4, 4, 4], 0, 0),
])
def test_global_batches_are_cut_to_a_multiple_of_the_world_size(
        caplog, rows: int, world: int, sizes: list[int], cut: int, skipped: int) -> None:
    data, spec = _texts(rows)
    caplog.set_level(logging.WARNING, "siamtext.data.batching")
    sampler = make_batch_sampler("length", data, spec, batch_size=4, world_size=world, rank=2)
    assert isinstance(sampler, ShardedBatchSampler)
    assert (sampler.batch_size, sampler.global_batch_size) == (4, 12)
    assert len(sampler) == len(sizes)
    assert sorted(len(b) for b in sampler) == sizes
    list(sampler)
    sampler.set_epoch(1)
    assert len(sampler) == len(list(sampler)) == len(sizes)
    warnings = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    if cut + skipped == 0:
        assert warnings == []
        return
    assert len(warnings) == 1  # once per sampler, not once per epoch
    assert warnings[0].startswith(f"{cut + skipped} of {rows} rows of epoch 0 are left out on "
                                  f"{world} processes")
    assert f"{cut} cut from global batches to a multiple of {world}, {skipped} in " in warnings[0]


def test_set_epoch_reaches_the_global_sampler_and_len_follows_it() -> None:
    data, spec = _anchor_positive()
    sampler = make_batch_sampler("no_duplicates", data, spec, batch_size=8, world_size=2,
                                 rank=1, drop_last=True)
    first = list(sampler)
    assert list(sampler) == first  # same epoch, same batches (resume needs this)
    sampler.set_epoch(2)
    assert sampler.batch_sampler.epoch == 2
    assert list(sampler) != first and len(sampler) == len(list(sampler))
    assert all(len(b) == 8 for b in sampler)  # drop_last: full global batches of 16


def test_one_process_gets_the_global_sampler_itself() -> None:
    data, spec = _texts(20)
    sampler = make_batch_sampler("length", data, spec, batch_size=8, mega_batches=2)
    assert isinstance(sampler, LengthGroupedBatchSampler)
    assert (sampler.batch_size, sampler.mega_batches) == (8, 2)


# ---------------------------------------------------------------------------- errors
def test_class_balanced_errors_name_the_world_size() -> None:
    rows, spec = _labelled(200, classes=10)
    with pytest.raises(ValueError, match=(
            r"classes_per_batch=16 \(global batch 64 = 2 processes x 32, K = 4\) but the "
            r"data has only 10 class\(es\); lower batch_size or samples_per_class")):
        make_batch_sampler("class_balanced", rows, spec, batch_size=32, world_size=2)
    with pytest.raises(ValueError, match=r"classes_per_batch=12 .* only 10 class\(es\); lower "
                                         r"classes_per_batch"):
        make_batch_sampler("class_balanced", rows, spec, batch_size=32, world_size=2,
                           classes_per_batch=12)
    with pytest.raises(ValueError, match=(
            r"classes_per_batch=1 \(global batch 6 = 2 processes x 3, K = 4\): a class-"
            r"balanced batch needs at least 2 classes .*raise batch_size to 4 or more")):
        make_batch_sampler("class_balanced", rows, spec, batch_size=3, world_size=2)
    with pytest.raises(ValueError, match="classes_per_batch=1 .*set classes_per_batch to 2"):
        make_batch_sampler("class_balanced", rows, spec, batch_size=8, classes_per_batch=1)
    with pytest.raises(ValueError, match=r"= 2 x 2 = 4 rows per global batch cannot give each "
                                         r"of the 8 processes a row"):
        make_batch_sampler("class_balanced", rows, spec, batch_size=1, world_size=8,
                           samples_per_class=2, classes_per_batch=2)
    with pytest.raises(ValueError, match=r"= 5 x 4 = 20 exceeds the global batch 16 = 2 "
                                         r"processes x 8"):
        make_batch_sampler("class_balanced", rows, spec, batch_size=8, world_size=2,
                           classes_per_batch=5)
    with pytest.raises(ValueError, match="batch_sampler='class_balanced' needs a label column"):
        make_batch_sampler("class_balanced", *_texts(8), batch_size=8)


def test_one_process_keeps_the_samplers_messages() -> None:
    rows, spec = _labelled(40, classes=2)
    with pytest.raises(ValueError, match=r"batch_size=8 is smaller than .* 4 x 4 = 16"):
        make_batch_sampler("class_balanced", rows, spec, batch_size=8, classes_per_batch=4)
    with pytest.raises(ValueError, match=r"classes_per_batch=4 but the data has only 2"):
        make_batch_sampler("class_balanced", rows, spec, batch_size=16)
    with pytest.raises(ValueError, match=r"batch_size=64 needs .* the data has 60"):
        make_batch_sampler("one_per_class", *_anchor_positive(), batch_size=64)


@pytest.mark.parametrize(("kind", "unit", "distinct"), [
    ("one_per_class", "class", 60), ("no_duplicates", "text", 293)])
def test_too_few_groups_for_the_global_batch(kind: str, unit: str, distinct: int) -> None:
    rows, spec = _anchor_positive()
    world, per_device = 4, 80 if kind == "no_duplicates" else 16
    make_batch_sampler(kind, rows, spec, batch_size=distinct // world, world_size=world)
    with pytest.raises(ValueError, match=(
            rf"batch_sampler='{kind}' puts no two rows of one {unit} in a global batch, so the "
            rf"global batch {world * per_device} = {world} processes x {per_device} needs at "
            rf"least {world * per_device} distinct {unit}s, but the data has {distinct}")):
        make_batch_sampler(kind, rows, spec, batch_size=per_device, world_size=world)


def test_bad_arguments() -> None:
    rows, spec = _texts(8)
    with pytest.raises(ValueError, match=r"rank must be an int in \[0, 2\) for world_size=2, "
                                         r"got 2"):
        make_batch_sampler("length", rows, spec, batch_size=4, world_size=2, rank=2)
    with pytest.raises(ValueError, match="world_size must be a positive integer, got 0"):
        make_batch_sampler("length", rows, spec, batch_size=4, world_size=0)
    with pytest.raises(ValueError, match=r"kind must be one of \[.*\], got 'auto'"):
        make_batch_sampler("auto", rows, spec, batch_size=4)
    with pytest.raises(ValueError, match="batch_size of at least num_replicas=3 .*got 2"):
        ShardedBatchSampler(LengthGroupedBatchSampler([1] * 8, 2), 3, 0)


# ---------------------------------------------------------------------------- auto
def test_auto_picks_the_sampler_for_the_global_batch(caplog) -> None:
    labelled, lspec = _labelled()
    assert choose_batch_sampler("auto", "labelled", labelled, lspec, 8) == "class_balanced"
    rows, spec = _anchor_positive()  # 60 classes, 293 distinct texts
    assert choose_batch_sampler("auto", "anchor_positive", rows, spec, 60) == "one_per_class"
    with caplog.at_level(logging.WARNING, "siamtext.data.batching"):
        assert choose_batch_sampler("auto", "anchor_positive", rows, spec,
                                    64) == "no_duplicates"
    assert "60 classes < global batch size 64" in caplog.text
    assert choose_batch_sampler("auto", "anchor_positive", rows, spec, 300) == "length"
    no_label = DataSpec(spec.text_columns, None)
    assert choose_batch_sampler("auto", "anchor_positive", rows, no_label, 8) == "no_duplicates"
    assert choose_batch_sampler("auto", "pair", rows, spec, 8) == "length"
    assert choose_batch_sampler("random", "labelled", labelled, lspec, 8) == "random"
    with pytest.raises(ValueError, match="batch_sampler must be one of"):
        choose_batch_sampler("nope", "labelled", labelled, lspec, 8)
