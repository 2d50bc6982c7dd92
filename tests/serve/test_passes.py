"""Forward passes of a merged batch: sorted by length, cut before much shorter texts and at
the token budget, halved for several threads."""

from __future__ import annotations

from siamtext.serve.passes import (
    SPLIT_AFTER,
    SPLIT_BELOW,
    plan_passes,
    same_length_run,
    split_passes,
)


def _texts(*lengths: int) -> list[list[int]]:
    return [[0] * n for n in lengths]


def test_the_constants_these_expectations_assume():
    assert (SPLIT_BELOW, SPLIT_AFTER) == (0.85, 4)


def test_a_pass_ends_before_a_much_shorter_text():
    # sorted longest first; 0.85 of 20 is 17: the pass ends before the first text shorter
    # than 17 once it holds 4 texts
    flat = _texts(20, 19, 18, 17, 17, 16, 10, 9)
    order = list(range(len(flat)))
    assert same_length_run(flat, order, 0, 8) == 5  # 20 19 18 17 17 | 16 10 9
    assert same_length_run(flat, order, 5, 3) == 3  # 16 10 9: too few to split
    assert same_length_run(flat, order, 0, 3) == 3  # the token budget's cap comes first
    # short texts inside the first 4 stay in the pass
    assert same_length_run(_texts(10, 2, 2, 2, 2, 2), list(range(6)), 0, 6) == 4


def test_plan_sorts_cuts_and_keeps_the_token_budget():
    flat = _texts(3, 20, 9, 17, 18, 10, 19, 16, 17)
    # longest first: 20 19 18 17 17 | 16 10 9 3 (cut at 0.85 x 20 = 17; then 0.85 x 16 =
    # 13.6 would cut before 10 only after 4 texts: 16 10 9 3 is 4, so it stays one pass)
    assert plan_passes(flat, 10_000) == [[1, 6, 4, 3, 8], [7, 5, 2, 0]]
    # a budget of 60 padded tokens: 60 // 20 = 3 texts, then 60 // 17 = 3, then 60 // 10 = 6
    assert plan_passes(flat, 60) == [[1, 6, 4], [3, 8, 7], [5, 2, 0]]
    # a text over the budget goes alone; every text once
    got = plan_passes(_texts(50, 5, 5), 20)
    assert got[0] == [0] and sorted(i for p in got for i in p) == [0, 1, 2]
    assert plan_passes([], 100) == []


def test_split_passes_halves_the_largest_until_every_worker_has_one():
    flat = _texts(9, 8, 7, 6, 5, 4)
    assert split_passes([[0, 1, 2, 3, 4, 5]], 2, flat) == [[0, 1, 2], [3, 4, 5]]
    # enough passes already: the larger padded work (texts x longest: 4 x 7 = 28 against
    # 2 x 9 = 18) goes first
    assert split_passes([[0, 1], [2, 3, 4, 5]], 2, flat) == [[2, 3, 4, 5], [0, 1]]
    assert split_passes([[0, 1, 2]], 4, flat) == [[0], [1], [2]]  # none below one text
    assert split_passes([[0, 1, 2]], 1, flat) == [[0, 1, 2]]
