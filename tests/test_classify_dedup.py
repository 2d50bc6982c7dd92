"""Duplicate search (exact tiles, faiss) against brute force; DuplicateDetector API."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError

from siamtext.classify import storage
from siamtext.classify.approximate import faiss_pairs
from siamtext.classify.dedup import DuplicateDetector
from siamtext.classify.search import connected_groups, exact_pairs


def brute_force(emb: torch.Tensor, threshold: float, top_k: int | None) -> dict:
    """Every pair by the O(n^2) definition: j in top_k(i) or i in top_k(j), score >= t."""
    e = torch.nn.functional.normalize(emb.double(), dim=1)
    sim = e @ e.T
    n = len(e)
    out = {}
    for i in range(n):
        others = [(sim[i, j].item(), j) for j in range(n) if j != i]
        others.sort(reverse=True)
        chosen = others if top_k is None else others[:top_k]
        for s, j in chosen:
            if s >= threshold:
                out[(min(i, j), max(i, j))] = s
    return out


def as_dict(pairs: np.ndarray, scores: np.ndarray) -> dict:
    return {tuple(p): s for p, s in zip(pairs.tolist(), scores.tolist())}


@pytest.mark.parametrize("n,dim,top_k,threshold,block", [
    (60, 8, 3, -1.0, 16), (150, 16, 5, 0.2, 32), (97, 4, 10, -1.0, 40), (40, 6, 1, 0.0, 7),
    (120, 8, None, 0.5, 50), (5, 3, 10, -1.0, 2), (30, 5, 4, 0.3, 1000),
])
def test_exact_pairs_equal_brute_force(n, dim, top_k, threshold, block):
    emb = torch.randn(n, dim, generator=torch.Generator().manual_seed(n))
    got = as_dict(*exact_pairs(emb, threshold, top_k, block_size=block))
    expected = brute_force(emb, threshold, top_k)
    assert set(got) == set(expected)
    for key, s in got.items():
        assert s == pytest.approx(expected[key], abs=1e-5)


def test_pairs_are_sorted_with_i_below_j():
    pairs, scores = exact_pairs(torch.randn(50, 4), -1.0, 3, block_size=8)
    assert (pairs[:, 0] < pairs[:, 1]).all()
    assert (np.diff(scores) <= 0).all()
    assert pairs.dtype == np.int64 and scores.dtype == np.float32


def test_exact_pairs_tiny_inputs():
    for n in (0, 1):
        pairs, scores = exact_pairs(torch.zeros(n, 4), -1.0, 5)
        assert pairs.shape == (0, 2) and scores.shape == (0,)


@pytest.mark.parametrize("top_k,threshold", [(3, -1.0), (5, 0.3)])
def test_faiss_flat_equals_brute_force(top_k, threshold):
    pytest.importorskip("faiss")
    emb = torch.randn(120, 16, generator=torch.Generator().manual_seed(3))
    got = as_dict(*faiss_pairs(emb.numpy(), threshold, top_k, index_factory="Flat"))
    assert set(got) == set(brute_force(emb, threshold, top_k))


@pytest.mark.parametrize("threshold", [0.2, 0.5])
def test_faiss_flat_range_search_keeps_every_pair_above_the_threshold(threshold):
    pytest.importorskip("faiss")
    emb = torch.randn(150, 8, generator=torch.Generator().manual_seed(4))
    got = as_dict(*faiss_pairs(emb.numpy(), threshold, None, index_factory="Flat"))
    want = brute_force(emb, threshold, None)
    assert len(want) > 100 and set(got) == set(want)
    assert all(abs(got[p] - want[p]) < 1e-5 for p in want)


def test_faiss_hnsw_finds_planted_duplicates():
    pytest.importorskip("faiss")
    emb, groups = planted(300, 24)
    det = DuplicateDetector(threshold=0.9)
    found = det.find_duplicates(emb, method="faiss", top_k=5)
    assert found.groups == groups


def test_connected_groups_by_hand():
    pairs = np.array([[0, 3], [3, 5], [1, 2], [7, 8], [5, 0]])
    assert connected_groups(pairs, 10) == [[0, 3, 5], [1, 2], [7, 8]]
    assert connected_groups(np.zeros((0, 2), dtype=np.int64), 4) == []


def planted(n: int, dim: int, seed: int = 0) -> tuple[torch.Tensor, list[list[int]]]:
    """Random unit vectors with a few near-copies planted; returns the planted groups."""
    g = torch.Generator().manual_seed(seed)
    emb = torch.nn.functional.normalize(torch.randn(n, dim, generator=g), dim=1)
    groups = [[2, 10, 40], [5, 6], [100, 250]]
    for group in groups:
        for j in group[1:]:
            emb[j] = emb[group[0]] + 0.05 * torch.randn(dim, generator=g)
    return emb, groups


def test_find_duplicates_recovers_planted_groups_and_progress(capsys):
    emb, groups = planted(300, 24)
    found = DuplicateDetector(threshold=0.9).find_duplicates(emb.numpy(), block_size=64,
                                                             show_progress=True)
    assert found.groups == groups
    assert len(found) == 5 and found.n == 300
    assert "Finding duplicates" in capsys.readouterr().err
    rec = found.records(texts=[f"t{i}" for i in range(300)])[0]
    assert set(rec) == {"i", "j", "score", "text_i", "text_j"}


def test_top_k_none_keeps_all_pairs_above_threshold():
    emb = torch.nn.functional.normalize(torch.ones(6, 4) + 0.01 * torch.randn(6, 4), dim=1)
    found = DuplicateDetector(threshold=0.5).find_duplicates(emb, top_k=None, block_size=4)
    assert len(found) == 15 and found.groups == [[0, 1, 2, 3, 4, 5]]


def test_empty_corpus_gives_no_pairs(tiny_model):
    det = DuplicateDetector(tiny_model, threshold=0.9)
    for corpus in ([], np.zeros((0, 32), dtype=np.float32)):
        found = det.find_duplicates(corpus)
        assert len(found) == 0 and found.groups == []


def test_detector_on_texts(tiny_model):
    det = DuplicateDetector(tiny_model, threshold=0.999999)
    texts = ["I lost my card", "how do I top up", "I lost my card", "freeze my card"]
    found = det.find_duplicates(texts)
    assert [0, 2] in found.groups
    assert det.is_duplicate("I lost my card", "I lost my card") is True
    assert det.is_duplicate(["a", "b"], ["a", "b"]).tolist() == [True, True]
    assert det.score("same text", "same text") == pytest.approx(1.0, abs=1e-5)


def test_fit_sets_threshold_and_failure_keeps_it(tiny_model):
    det = DuplicateDetector(tiny_model)
    with pytest.raises(NotFittedError, match="no threshold"):
        det.is_duplicate("a", "b")
    pairs = [("I lost my card", "I lost my card"), ("top up", "freeze my card"),
             ("exchange rate", "exchange rate"), ("card", "what is the exchange rate today")]
    det.fit(pairs, [1, 0, 1, 0])
    scores = det.score([a for a, _ in pairs], [b for _, b in pairs])
    assert det.is_duplicate([a for a, _ in pairs], [b for _, b in pairs]).tolist() == (
        scores >= det.threshold_).tolist()
    p = det.predict_proba("card", "card")
    assert 0.0 <= p <= 1.0
    before = det.threshold_
    with pytest.raises(ValueError, match="single class"):
        det.fit(pairs, [1, 1, 1, 1])
    assert det.threshold_ == before


@pytest.mark.parametrize("kwargs,error,match", [
    ({"threshold": 1.5}, ValueError, r"range \[-1, 1\]"),
    ({"threshold": -2}, ValueError, r"range \[-1, 1\]"),
    ({"threshold": "high"}, TypeError, "must be a number"),
    ({"batch_size": 0}, ValueError, "batch_size"),
])
def test_constructor_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        DuplicateDetector(None, **kwargs)


@pytest.mark.parametrize("kwargs,error,match", [
    ({"threshold": 2.0}, ValueError, r"range \[-1, 1\]"),
    ({"top_k": 0}, ValueError, "top_k"),
    ({"method": "annoy"}, ValueError, "method must be one of"),
    ({"method": "faiss", "threshold": -1.0}, ValueError, "every pair of the corpus"),
    ({"block_size": -1}, ValueError, "block_size"),
])
def test_find_duplicates_errors(kwargs, error, match):
    det = DuplicateDetector(threshold=0.5)
    with pytest.raises(error, match=match):
        det.find_duplicates(np.ones((3, 4), dtype=np.float32), **kwargs)


def test_other_errors(tiny_model):
    with pytest.raises(NotFittedError, match="no threshold"):
        DuplicateDetector().find_duplicates(np.ones((3, 4)))
    with pytest.raises(ValueError, match="no model"):
        DuplicateDetector(threshold=0.5).find_duplicates(["a", "b"])
    with pytest.raises(ValueError, match="2-D"):
        DuplicateDetector(threshold=0.5).find_duplicates(np.ones(4))
    with pytest.raises(ValueError, match="same length"):
        DuplicateDetector(tiny_model, threshold=0.5).score(["a", "b"], ["a"])
    with pytest.raises(NotFittedError, match="fitted calibration"):
        DuplicateDetector(tiny_model, threshold=0.5).predict_proba("a", "b")


def test_save_load_round_trip(tiny_model, tmp_path):
    pairs = [("I lost my card", "I lost my card"), ("top up", "freeze my card"),
             ("exchange rate", "exchange rate"), ("card", "what is the exchange rate today")]
    det = DuplicateDetector(tiny_model, threshold=0.3).fit(pairs, [1, 0, 1, 0])
    folder = det.save(tmp_path / "det")
    assert (folder / "encoder" / "model.safetensors").is_file()
    assert not list(folder.rglob("*.bin")) and not list(folder.rglob("*.pkl"))
    loaded = DuplicateDetector.load(folder, device="cpu")
    assert loaded.threshold == 0.3 and loaded.threshold_ == det.threshold_
    a, b = [p[0] for p in pairs], [p[1] for p in pairs]
    np.testing.assert_allclose(loaded.score(a, b), det.score(a, b), atol=1e-6)
    np.testing.assert_allclose(loaded.predict_proba(a, b), det.predict_proba(a, b), atol=1e-6)


def test_failed_save_keeps_the_stored_folder(tmp_path, monkeypatch):
    folder = DuplicateDetector(threshold=0.7).save(tmp_path / "det")
    before = (folder / "duplicate_detector.json").read_text()

    def broken(path, payload):
        raise OSError("disk full")

    monkeypatch.setattr(storage, "write_json", broken)
    with pytest.raises(OSError, match="disk full"):
        DuplicateDetector(threshold=0.2).save(folder)
    assert (folder / "duplicate_detector.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["det"]
    assert DuplicateDetector.load(folder).threshold == 0.7


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a saved DuplicateDetector"):
        DuplicateDetector.load(tmp_path)
    (tmp_path / "duplicate_detector.json").write_text(json.dumps({"kind": "Other"}))
    with pytest.raises(ValueError, match="expected 'DuplicateDetector'"):
        DuplicateDetector.load(tmp_path)


def _clusters(n_clusters: int = 6, size: int = 30, noise: int = 40, seed: int = 0) -> torch.Tensor:
    """Clusters of ``size`` near-identical vectors (cosine ~0.99 within) plus loners."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_clusters, 64, generator=gen)
    members = centres.repeat_interleave(size, 0) + 0.05 * torch.randn(n_clusters * size, 64,
                                                                       generator=gen)
    loners = torch.randn(noise, 64, generator=gen)
    return torch.nn.functional.normalize(torch.cat([members, loners]), dim=1)


def test_by_default_every_pair_above_the_threshold_is_returned():
    """A cluster of 30 near-identical texts has 435 pairs: a top-10 cap would cut most."""
    emb = _clusters()
    found = DuplicateDetector(threshold=0.9).find_duplicates(emb, block_size=64)
    assert set(as_dict(found.pairs, found.scores)) == set(brute_force(emb, 0.9, None))
    assert len(found) == 6 * 435
    assert [len(g) for g in found.groups] == [30] * 6


def test_a_top_k_cap_that_drops_pairs_says_how_many(caplog):
    emb = _clusters()
    det = DuplicateDetector(threshold=0.9)
    with caplog.at_level("WARNING", logger="siamtext.classify.search"):
        found = det.find_duplicates(emb, top_k=10, block_size=64)
    dropped = 6 * 435 - len(found)
    assert dropped > 0
    assert f"kept {len(found)} of the {6 * 435} pairs" in caplog.text
    assert f"{dropped} pairs above it were left out" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="siamtext.classify.search"):
        det.find_duplicates(emb, top_k=40, block_size=64)  # 29 neighbours: nothing cut
    assert "left out" not in caplog.text


def test_connected_groups_follow_chains_and_scale():
    chain = np.array([[5, 6], [0, 1], [1, 2], [2, 3], [9, 8]])
    assert connected_groups(chain, 10) == [[0, 1, 2, 3], [5, 6], [8, 9]]
    rng = np.random.default_rng(0)
    n = 200_000
    pairs = np.stack([np.arange(0, n - 1, 2), np.arange(1, n, 2)], axis=1)  # 100,000 couples
    pairs = np.concatenate([pairs, rng.integers(0, n, size=(1000, 2))])
    groups = connected_groups(pairs, n)
    assert sum(len(g) for g in groups) == len(np.unique(pairs))
    assert all(g == sorted(g) for g in groups)
    assert [g[0] for g in groups] == sorted(g[0] for g in groups)


def _duplicates_corpus(seed: int = 0) -> torch.Tensor:
    """4,000 vectors: 600 groups of 5 near-duplicates (cosine ~0.8) and 1,000 loners."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(600, 48, generator=gen)
    dups = centres.repeat_interleave(5, 0) + 0.5 * torch.randn(3000, 48, generator=gen)
    return torch.nn.functional.normalize(
        torch.cat([dups, torch.randn(1000, 48, generator=gen)]), dim=1)


@pytest.mark.parametrize("factory", ["IVF64,Flat", "HNSW32"])
def test_approximate_search_tuned_to_a_recall_target_finds_the_pairs(factory, caplog):
    pytest.importorskip("faiss")
    emb = _duplicates_corpus()
    exact = set(as_dict(*exact_pairs(emb, 0.5, 10)))
    with caplog.at_level("INFO", logger="siamtext.classify.approximate"):
        approx = set(as_dict(*faiss_pairs(emb.numpy(), 0.5, 10, factory, recall_target=0.95)))
    assert len(exact) > 5000
    assert len(approx & exact) / len(exact) >= 0.95  # the documented target, on every pair
    assert approx <= exact  # nothing invented
    depth = int(caplog.text.split("search depth ")[1].split(":")[0])
    assert depth < (64 if factory.startswith("IVF") else 2048)  # tuned, not the maximum


@pytest.mark.parametrize("factory", ["IVF64,Flat", "HNSW32"])
def test_approximate_range_search_without_a_cap_finds_the_pairs(factory):
    pytest.importorskip("faiss")
    emb = _duplicates_corpus()
    exact = set(as_dict(*exact_pairs(emb, 0.5, None)))
    approx = set(as_dict(*faiss_pairs(emb.numpy(), 0.5, None, factory, recall_target=0.95)))
    assert len(exact) > 5000
    assert len(approx & exact) / len(exact) >= 0.95
    assert approx <= exact


def test_auto_index_follows_the_corpus_size():
    from siamtext.classify.approximate import auto_index

    assert auto_index(10_000) == "Flat"
    assert auto_index(100_000) == "IVF1024,Flat"  # 4 sqrt(1e5) = 1265 -> 1024
    assert auto_index(1_000_000) == "IVF4096,Flat"
    with pytest.raises(ValueError, match=r"recall_target must be in \(0, 1\]"):
        pytest.importorskip("faiss")
        faiss_pairs(np.ones((4, 2), dtype=np.float32), recall_target=1.5)
