"""siamtext.classify.dedup_index: duplicates checked against, and found in, a siamtext.index."""

from __future__ import annotations

import math

import numpy as np
import pytest

from siamtext.classify import DuplicateDetector
from siamtext.index import Index

R = 1 / math.sqrt(2)
# e1, (e1+e2)/sqrt2, e2, e3, and e3 tilted by 0.1 towards e4: cosines by hand
V = np.array([[1, 0, 0, 0], [R, R, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0],
              [0, 0, 1 / math.sqrt(1.01), 0.1 / math.sqrt(1.01)]], dtype=np.float32)
IDS = [10, 20, 30, 40, 50]
COS_45 = 1 / math.sqrt(1.01)  # cos(e3, tilted e3) = 0.99504


@pytest.fixture()
def det(tmp_path):
    det = DuplicateDetector(threshold=0.7, index=tmp_path / "q")
    assert det.add(embeddings=V, ids=IDS) == IDS
    yield det
    det.close()


def hits(found) -> list[tuple[int, float]]:
    return [(h.id, round(h.score, 5)) for h in found]


def test_check_returns_the_stored_items_at_or_above_the_threshold(det):
    assert hits(det.check(V[0])) == [(10, 1.0), (20, round(R, 5))]
    many = det.check(V[[2, 3]])
    assert [hits(h) for h in many] == [[(30, 1.0), (20, round(R, 5))],
                                       [(40, 1.0), (50, round(COS_45, 5))]]
    # a stricter threshold for this call, a cap on the hits, and a text with no duplicate
    assert hits(det.check(V[1], threshold=0.9)) == [(20, 1.0)]
    assert len(det.check(V[1], k=2)) == 2 and len(det.check(V[1])) == 3
    assert det.check(np.array([0, 0, 0, 1], dtype=np.float32), threshold=0.2) == []


def test_added_items_are_checked_against_at_once(det):
    new = np.array([[0, 0, 0, 1]], dtype=np.float32)
    assert det.check(new) == [[]]  # one list per row of a matrix
    det.add(embeddings=new, ids=[60], metadata=[{"url": "/q/60"}])
    found = det.check(new[0])
    assert hits(found) == [(60, 1.0)] and found[0].metadata == {"url": "/q/60"}


def test_find_duplicates_over_the_index_gives_item_ids(det):
    found = det.find_duplicates()
    # pairs by hand: (40, 50) 0.995, (10, 20) and (20, 30) at cos 45 degrees
    assert found.pairs.tolist() == [[40, 50], [10, 20], [20, 30]]
    np.testing.assert_allclose(found.scores, [COS_45, R, R], atol=1e-6)
    assert found.groups == [[10, 20, 30], [40, 50]] and found.n == 5
    assert found.ids.tolist() == IDS
    # the same as the corpus search on the raw vectors, positions mapped to ids
    plain = DuplicateDetector(threshold=0.7).find_duplicates(V)
    assert np.asarray(IDS)[plain.pairs].tolist() == found.pairs.tolist()
    # an item removed is gone from the pairs; top_k and a threshold pass through
    det.index_.remove([20])
    assert det.find_duplicates().pairs.tolist() == [[40, 50]]
    assert det.find_duplicates(threshold=0.999).pairs.shape == (0, 2)
    texts = {i: f"q{i}" for i in IDS}
    assert det.find_duplicates().records(texts)[0] == {
        "i": 40, "j": 50, "score": round(COS_45, 6), "text_i": "q40", "text_j": "q50"}


def test_find_duplicates_over_the_index_with_faiss_equals_exact(det):
    pytest.importorskip("faiss")
    exact = det.find_duplicates()
    flat = det.find_duplicates(method="faiss", faiss_index="Flat")
    assert flat.pairs.tolist() == exact.pairs.tolist() and flat.groups == exact.groups
    capped = det.find_duplicates(top_k=1)
    assert [40, 50] in capped.pairs.tolist()


def test_an_open_index_passed_as_corpus(tmp_path):
    index = Index.create(tmp_path / "i", dim=4)
    index.add(embeddings=V)
    found = DuplicateDetector(threshold=0.7).find_duplicates(index)
    assert found.groups == [[0, 1, 2], [3, 4]]
    empty = Index.create(tmp_path / "e", dim=4)
    none = DuplicateDetector(threshold=0.7).find_duplicates(empty)
    assert none.pairs.shape == (0, 2) and none.groups == [] and none.n == 0
    index.close()
    empty.close()


def test_bad_input(tmp_path, det):
    with pytest.raises(ValueError, match=r"queries must have shape \(n, 4\)"):
        det.check(np.ones((1, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="k must be a positive integer"):
        det.check(V[0], k=0)
    with pytest.raises(ValueError, match="threshold must lie in the cosine-similarity range"):
        det.check(V[0], threshold=2.0)
    with pytest.raises(ValueError, match="ids already stored: 10"):
        det.add(embeddings=V[:1], ids=[10])
    assert len(det.index_) == 5
    with pytest.raises(ValueError, match="first_pass cannot search an index"):
        det.find_duplicates(rerank_top=3)
    with pytest.raises(TypeError, match="index must be a path .* got list"):
        DuplicateDetector(threshold=0.5, index=[1, 2])
    plain = DuplicateDetector(threshold=0.5)
    with pytest.raises(ValueError, match="this DuplicateDetector has no index"):
        plain.check(V[0])
    with pytest.raises(ValueError, match="find_duplicates needs a corpus"):
        plain.find_duplicates()
    with pytest.raises(FileNotFoundError, match="no collection at"):
        DuplicateDetector(threshold=0.5, index=tmp_path / "missing").check(V[0])


def test_end_to_end_on_the_tiny_tower(tmp_path, tiny_model, corpus):
    texts = corpus[:30] + ["I lost my card"]
    path = tmp_path / "questions"
    det = DuplicateDetector(tiny_model, threshold=0.96, index=path)
    assert det.add(texts) == list(range(31))
    found = det.check(["I lost my card", "completely unrelated words here"])
    assert found[0][0].text == "I lost my card" and found[0][0].score == pytest.approx(1.0)
    assert all(h.score >= 0.96 for h in found[0] + found[1])
    whole = det.find_duplicates()
    det.close()
    # the same answers from a reopened detector, and the same pairs as the corpus search
    again = DuplicateDetector(tiny_model, threshold=0.96, index=path)
    assert [hits(h) for h in again.check(["I lost my card"])] == [hits(found[0])]
    corpus_search = DuplicateDetector(tiny_model, threshold=0.96).find_duplicates(texts)
    assert 0 < len(corpus_search)
    assert again.find_duplicates().pairs.tolist() == corpus_search.pairs.tolist() == \
        whole.pairs.tolist()
    np.testing.assert_allclose(whole.scores, corpus_search.scores, atol=1e-5)
    again.close()
    # another encoder's index is refused, naming both
    Index.create(tmp_path / "vectors", dim=tiny_model.embedding_dim).close()
    with pytest.raises(ValueError, match="holds vectors given by the user"):
        DuplicateDetector(tiny_model, threshold=0.9, index=tmp_path / "vectors").check("hi")
    # many checking processes open it read-only, beside the one that adds
    reader = Index.open(path, tiny_model, readonly=True)
    checker = DuplicateDetector(tiny_model, threshold=0.96, index=reader)
    assert hits(checker.check("I lost my card")) == hits(found[0])
    checker.close()  # not its own: still open
    assert len(reader) == 31
    reader.close()


def test_an_open_index_of_another_encoder_is_refused(tmp_path, tiny_model, tiny_bert_dir):
    from siamtext import SiamText
    from siamtext.classify import IntentClassifier

    index = Index.create(tmp_path / "i", tiny_model)
    cls_pooled = SiamText(tiny_bert_dir, pooling="cls", device="cpu")
    with pytest.raises(ValueError, match="the index was filled by encoder .*pooling"):
        DuplicateDetector(cls_pooled, threshold=0.9, index=index).check("hi")
    with pytest.raises(ValueError, match="the index was filled by encoder .*pooling"):
        IntentClassifier.open(index, cls_pooled)
    index.close()


def test_threads_checking_at_first_use_open_the_index_once(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    with DuplicateDetector(threshold=0.7, index=tmp_path / "q") as writer:
        writer.add(embeddings=V)
    det = DuplicateDetector(threshold=0.7, index=tmp_path / "q")
    with ThreadPoolExecutor(4) as pool:
        found = list(pool.map(lambda i: hits(det.check(V[i % 5])), range(16)))
    assert found[0] == [(0, 1.0), (1, round(R, 5))] and found[5] == found[0]
    det.close()
