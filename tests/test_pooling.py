import numpy as np
import pytest
import torch

from siamtext.pooling import cls_pooling, get_pooling, max_pooling, mean_pooling, pool_arrays

# Two sentences, 3 positions, dim 2; the second sentence has one padding position whose
# values are huge so that any leak of padding into the result is obvious.
TOKENS = torch.tensor([
    [[1.0, 2.0], [3.0, 4.0], [5.0, 0.0]],
    [[2.0, -2.0], [4.0, 6.0], [1000.0, 1000.0]],
])
MASK = torch.tensor([[1, 1, 1], [1, 1, 0]])


def test_mean_pooling_ignores_padding():
    # first: ((1+3+5)/3, (2+4+0)/3) = (3, 2); second: ((2+4)/2, (-2+6)/2) = (3, 2)
    out = mean_pooling(TOKENS, MASK)
    assert torch.allclose(out, torch.tensor([[3.0, 2.0], [3.0, 2.0]]))


def test_max_pooling_ignores_padding():
    out = max_pooling(TOKENS, MASK)
    assert torch.equal(out, torch.tensor([[5.0, 4.0], [4.0, 6.0]]))


def test_cls_pooling_takes_first_token():
    assert torch.equal(cls_pooling(TOKENS, MASK), torch.tensor([[1.0, 2.0], [2.0, -2.0]]))


def test_mean_pooling_all_padding_row_is_zero_not_nan():
    out = mean_pooling(TOKENS, torch.zeros_like(MASK))
    assert torch.equal(out, torch.zeros(2, 2))


def test_get_pooling_unknown_name():
    assert get_pooling("mean") is mean_pooling
    expected = r"pooling must be one of \['cls', 'max', 'mean'\], got 'sum'"
    with pytest.raises(ValueError, match=expected):
        get_pooling("sum")


def test_pool_arrays_match_the_hand_computed_and_torch_results():
    tokens, mask = TOKENS.numpy(), MASK.numpy()
    np.testing.assert_allclose(pool_arrays("mean", tokens, mask), [[3.0, 2.0], [3.0, 2.0]])
    np.testing.assert_array_equal(pool_arrays("max", tokens, mask), [[5.0, 4.0], [4.0, 6.0]])
    np.testing.assert_array_equal(pool_arrays("cls", tokens, mask), [[1.0, 2.0], [2.0, -2.0]])
    np.testing.assert_array_equal(pool_arrays("mean", tokens, np.zeros_like(mask)),
                                  np.zeros((2, 2)))  # all padding: zero, not NaN
    rng = np.random.default_rng(0)
    tokens = rng.standard_normal((4, 7, 5)).astype(np.float32)
    mask = (np.arange(7) < np.array([[7], [3], [1], [5]])).astype(np.int64)
    for name in ("mean", "max", "cls"):
        want = get_pooling(name)(torch.from_numpy(tokens), torch.from_numpy(mask)).numpy()
        got = pool_arrays(name, tokens, mask)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_pool_arrays_unknown_name():
    with pytest.raises(ValueError, match="pooling must be one of"):
        pool_arrays("sum", TOKENS.numpy(), MASK.numpy())
