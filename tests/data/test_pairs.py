"""Row builders from labelled texts: balance, caps, hard negatives, errors."""

from __future__ import annotations

import numpy as np
import pytest

from siamtext.data.pairs import make_anchor_positives, make_pairs, make_triplets

TEXTS = [f"{c}{i}" for c in "abcd" for i in range(6)]
LABELS = [c for c in "abcd" for _ in range(6)]


def test_make_pairs_is_balanced_capped_and_correct() -> None:
    ds = make_pairs(TEXTS, LABELS, max_pairs=40, seed=1)
    assert ds.column_names == ["sentence1", "sentence2", "label"]
    assert len(ds) == 40 and sum(ds["label"]) == 20
    label_of = dict(zip(TEXTS, LABELS, strict=True))
    for a, b, y in zip(ds["sentence1"], ds["sentence2"], ds["label"], strict=True):
        assert a != b and y == int(label_of[a] == label_of[b])
    keys = {tuple(sorted(p)) for p in zip(ds["sentence1"], ds["sentence2"], strict=True)}
    assert len(keys) == 40  # no pair twice
    assert make_pairs(TEXTS, LABELS, max_pairs=40, seed=1)["sentence1"] == ds["sentence1"]


def test_make_pairs_stops_at_what_exists() -> None:
    ds = make_pairs(["a", "b", "c"], [0, 0, 1], max_pairs=100)
    assert sorted(ds["label"]) == [0, 0, 1]  # 1 positive pair and 2 negatives exist


def test_make_triplets_random_and_hard() -> None:
    ds = make_triplets(TEXTS, LABELS, seed=0)
    assert len(ds) == len(TEXTS)
    label_of = dict(zip(TEXTS, LABELS, strict=True))
    for a, p, n in zip(ds["anchor"], ds["positive"], ds["negative"], strict=True):
        assert a != p and label_of[a] == label_of[p] != label_of[n]
    assert len(make_triplets(TEXTS, LABELS, max_triplets=5)) == 5


class FakeModel:
    """Embeds 'a*' texts next to 'b*' texts, so the hardest negative of an a is a b."""

    def encode(self, texts, batch_size=64, normalize=True):
        angle = {"a": 0.0, "b": 0.2, "c": 2.0, "d": 3.0}
        v = np.array([[np.cos(angle[t[0]]), np.sin(angle[t[0]])] for t in texts])
        return v.astype(np.float32)


def test_make_triplets_mines_the_hardest_negative() -> None:
    ds = make_triplets(TEXTS, LABELS, model=FakeModel())
    for a, n in zip(ds["anchor"], ds["negative"], strict=True):
        if a[0] == "a":
            assert n[0] == "b"
        if a[0] == "b":
            assert n[0] == "a"


def test_make_anchor_positives() -> None:
    ds = make_anchor_positives(TEXTS + ["lonely"], LABELS + ["e"], seed=0)
    assert len(ds) == len(TEXTS)  # the single-text class has no positive
    for a, p, y in zip(ds["anchor"], ds["positive"], ds["label"], strict=True):
        assert a != p and a[0] == p[0] == y


def test_builder_errors() -> None:
    with pytest.raises(ValueError, match="single class"):
        make_pairs(["a", "b"], [1, 1])
    with pytest.raises(ValueError, match="single class"):
        make_triplets(["a", "b"], [1, 1])
    with pytest.raises(ValueError, match="every class has a single text"):
        make_pairs(["a", "b"], [1, 2])
    with pytest.raises(ValueError, match="texts is empty"):
        make_anchor_positives([], [])
    with pytest.raises(ValueError, match="labels has 1 entries but texts has 2"):
        make_triplets(["a", "b"], [1])
    with pytest.raises(ValueError, match="max_pairs must be a positive integer"):
        make_pairs(TEXTS, LABELS, max_pairs=0)
    with pytest.raises(TypeError, match=r"texts\[1\] must be a string"):
        make_pairs(["a", 2], [0, 1])
