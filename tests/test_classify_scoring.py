"""siamtext.classify.scoring: each mode's scores on tiny tensors, by hand."""

from __future__ import annotations

import math

import pytest
import torch

from siamtext.classify import scoring
from siamtext.classify.logistic import LogisticHead

# unit vectors in 2-D; cosine similarities are dot products
EXAMPLES = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]])
EXAMPLE_CLASSES = torch.tensor([0, 1, 1, 2])


def softmax(xs: list[float]) -> list[float]:
    e = [math.exp(x - max(xs)) for x in xs]
    return [v / sum(e) for v in e]


def test_prototype_scores_two_queries_two_prototypes():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    prototypes = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    # sim = [[1, 0.6], [0, 0.8]]
    proba, best, pred = scoring.prototype_scores(q, prototypes, temperature=0.1)
    assert pred.tolist() == [0, 1]
    torch.testing.assert_close(best, torch.tensor([1.0, 0.8]))
    expected = [softmax([0.0, -0.4 / 0.1]), softmax([-0.8 / 0.1, 0.0])]
    torch.testing.assert_close(proba, torch.tensor(expected))


@pytest.mark.parametrize("temperature, winner", [(0.2, 0), (10.0, 1)])
def test_knn_votes_weighted_by_softmax_of_gap_to_top(temperature, winner):
    q = torch.tensor([[1.0, 0.0]])
    # sim = [1, 0.8, 0.6, 0]; the 3 nearest are examples 0 (class 0), 1 and 2 (class 1)
    proba, best, pred = scoring.knn_scores(q, EXAMPLES, EXAMPLE_CLASSES, n_classes=3,
                                           n_neighbors=3, temperature=temperature)
    w = softmax([0.0 / temperature, -0.2 / temperature, -0.4 / temperature])
    torch.testing.assert_close(proba, torch.tensor([[w[0], w[1] + w[2], 0.0]]))
    # a cold vote follows the nearest example; a warm one the class with more neighbours
    assert pred.tolist() == [winner]
    assert best.tolist() == [1.0]  # the nearest example, whoever wins the vote


def test_knn_neighbours_capped_at_the_examples():
    q = torch.tensor([[0.0, 1.0]])
    proba, _, _ = scoring.knn_scores(q, EXAMPLES, EXAMPLE_CLASSES, n_classes=3,
                                     n_neighbors=10, temperature=1.0)
    # sim = [0, 0.6, 0.8, 1]: every example votes, weighted by its gap to the top
    w = softmax([-1.0, -0.4, -0.2, 0.0])
    torch.testing.assert_close(proba, torch.tensor([[w[0], w[1] + w[2], w[3]]]))


def test_logistic_argmax_of_logits_and_best_example_similarity():
    head = LogisticHead(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]),
                        torch.tensor([0.0, 0.0, 0.5]), C=1.0)
    q = torch.tensor([[0.6, 0.8]])
    # logits = [0.6, 0.8, -0.6 + 0.5]; sim to EXAMPLES = [0.6, 0.96, 1, 0.8]
    proba, best, pred = scoring.logistic_scores(q, head, EXAMPLES, EXAMPLE_CLASSES)
    assert pred.tolist() == [1]
    torch.testing.assert_close(best, torch.tensor([1.0]))
    torch.testing.assert_close(proba, torch.tensor([softmax([0.6, 0.8, -0.1])]))


def test_ok_mask_limits_each_query_to_its_classes():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    ok = torch.tensor([[False, True, True], [True, False, False]])
    # prototypes: class 0 is best for query 0 but masked out
    prototypes = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    proba, best, pred = scoring.prototype_scores(q, prototypes, 0.1, ok=ok)
    assert pred.tolist() == [1, 0]
    torch.testing.assert_close(best, torch.tensor([0.6, 0.0]))
    torch.testing.assert_close(proba, torch.tensor(
        [[0.0, *softmax([0.0, -0.6 / 0.1])], [1.0, 0.0, 0.0]]))
    # knn: query 0 may not see example 0 (class 0), query 1 sees only example 0
    proba, best, pred = scoring.knn_scores(q, EXAMPLES, EXAMPLE_CLASSES, 3, 2, 1.0, ok=ok)
    assert pred.tolist() == [1, 0]
    torch.testing.assert_close(best, torch.tensor([0.8, 0.0]))
    torch.testing.assert_close(proba, torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]))
    # logistic: masked logits, and best only over examples of allowed classes
    # logits = [q0, q1, 0.5]: query 0 gets class 2 though its nearest allowed example is
    # of class 1
    head = LogisticHead(torch.eye(3, 2), torch.tensor([0.0, 0.0, 0.5]), C=1.0)
    proba, best, pred = scoring.logistic_scores(q, head, EXAMPLES, EXAMPLE_CLASSES, ok=ok)
    assert pred.tolist() == [2, 0]
    torch.testing.assert_close(best, torch.tensor([0.8, 0.0]))
    torch.testing.assert_close(proba, torch.tensor(
        [[0.0, *softmax([0.0, 0.5])], [1.0, 0.0, 0.0]]))


@pytest.mark.parametrize("mode", ["prototype", "logistic", "knn"])
def test_score_dispatches_by_mode(mode):
    q = torch.tensor([[0.6, 0.8], [1.0, 0.0]])
    prototypes = torch.tensor([[1.0, 0.0], [0.70710678, 0.70710678], [0.0, 1.0]])
    head = LogisticHead(torch.eye(3, 2), torch.zeros(3), C=1.0)
    direct = {
        "prototype": lambda: scoring.prototype_scores(q, prototypes, 0.5),
        "logistic": lambda: scoring.logistic_scores(q, head, EXAMPLES, EXAMPLE_CLASSES),
        "knn": lambda: scoring.knn_scores(q, EXAMPLES, EXAMPLE_CLASSES, 3, 2, 0.5),
    }[mode]()
    kwargs = {"n_classes": 3, "prototypes": prototypes, "examples": EXAMPLES,
              "example_classes": EXAMPLE_CLASSES, "head": head, "n_neighbors": 2,
              "temperature": 0.5}
    got = scoring.score(mode, q, **kwargs)
    for a, b in zip(got, direct):
        assert torch.equal(a, b)
    proba, best, pred = scoring.score(mode, q, proba=False, **kwargs)
    assert proba is None
    assert torch.equal(best, direct[1]) and torch.equal(pred, direct[2])
