import pytest
import torch

from siamtext.pooling import cls_pooling, get_pooling, max_pooling, mean_pooling

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
