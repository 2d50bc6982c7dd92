import math

import pytest
import torch

from siamtext.distances import (
    cosine_similarity_matrix,
    paired_distance,
    pairwise_distance,
)

A = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
B = torch.tensor([[0.0, 0.0], [0.0, 2.0]])


def test_paired_distances_by_hand():
    # rows: (3,4)-(0,0) and (1,0)-(0,2)
    assert torch.allclose(paired_distance("euclidean")(A, B), torch.tensor([5.0, math.sqrt(5)]))
    assert torch.allclose(paired_distance("manhattan")(A, B), torch.tensor([7.0, 3.0]))
    # cos((3,4),(3,4)) = 1 -> 0; cos((1,0),(0,1)) = 0 -> 1
    assert torch.allclose(paired_distance("cosine")(A, A), torch.zeros(2), atol=1e-6)
    assert torch.allclose(paired_distance("cosine")(A[1:], B[1:]), torch.tensor([1.0]))


def test_pairwise_distances_by_hand():
    eu = pairwise_distance("euclidean")(A, B)
    # (3,4) to (0,0)=5, to (0,2)=sqrt(9+4); (1,0) to (0,0)=1, to (0,2)=sqrt(5)
    expected = torch.tensor([[5.0, math.sqrt(13)], [1.0, math.sqrt(5)]])
    assert torch.allclose(eu, expected, atol=1e-5)
    man = pairwise_distance("manhattan")(A, B)
    assert torch.allclose(man, torch.tensor([[7.0, 5.0], [1.0, 3.0]]))
    cos = pairwise_distance("cosine")(A, torch.tensor([[0.0, 1.0]]))
    assert torch.allclose(cos, torch.tensor([[1 - 0.8], [1.0]]), atol=1e-6)


def test_pairwise_euclidean_diagonal_has_finite_gradient():
    x = torch.randn(4, 3, requires_grad=True)
    pairwise_distance("euclidean")(x, x).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_cosine_similarity_matrix_shape_and_range():
    sim = cosine_similarity_matrix(torch.randn(5, 8), torch.randn(3, 8))
    assert sim.shape == (5, 3)
    assert (sim.abs() <= 1 + 1e-6).all()


@pytest.mark.parametrize("lookup", [paired_distance, pairwise_distance])
def test_unknown_distance(lookup):
    with pytest.raises(ValueError, match="distance must be one of .*got 'chebyshev'"):
        lookup("chebyshev")
