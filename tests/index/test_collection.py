"""siamtext.index.Index: round trips per operation, the checks on input, the fingerprint."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from siamtext.index import FORMAT_VERSION, Hit, Index, Item


@pytest.fixture()
def index(tmp_path, square):
    idx = Index.create(tmp_path / "c", dim=2)
    idx.add(embeddings=square, labels=["a", "a", "b", 7],
            metadata=[{"lang": "en"}, {"lang": "de", "n": 1}, None, {"flag": True}])
    yield idx
    idx.close()


def test_add_gives_increasing_ids_and_get_returns_rows(index, square):
    assert len(index) == 4
    assert index.add(embeddings=square[:1]) == [4]
    item = index.get(1, with_embeddings=True)
    assert (item.id, item.text, item.label, item.metadata) == (1, None, "a", {"lang": "de", "n": 1})
    np.testing.assert_allclose(item.embedding, [np.sqrt(3) / 2, 0.5], atol=1e-6)
    assert [i.id for i in index.get([3, 0])] == [3, 0]
    assert index.get(3).label == 7  # an int label stays an int


def test_search_scores_are_the_cosines_by_hand(index):
    hits = index.search(np.array([1.0, 0.0]), k=4)
    assert [h.id for h in hits] == [0, 1, 2, 3]
    np.testing.assert_allclose([h.score for h in hits], [1.0, np.sqrt(3) / 2, 0.0, -1.0],
                               atol=1e-6)
    assert hits[0] == Hit(0, hits[0].score, None, "a", {"lang": "en"})


def test_search_threshold_k_and_many_queries(index):
    q = np.array([[1.0, 0.0], [0.0, 1.0]])
    hits = index.search(q, k=2, threshold=0.5)
    assert [[h.id for h in row] for row in hits] == [[0, 1], [2, 1]]
    # (0, 1) . (cos30, sin30) = 0.5 exactly: kept at threshold 0.5, dropped just above
    assert [h.id for h in index.search(q[1], k=4, threshold=0.5 + 1e-4)] == [2]


def test_where_filters_on_label_and_metadata(index):
    q = np.array([1.0, 0.0])
    assert [h.id for h in index.search(q, where={"label": "a"})] == [0, 1]
    assert [h.id for h in index.search(q, where={"label": ["b", 7]})] == [2, 3]
    assert [h.id for h in index.search(q, where={"label": 7})] == [3]
    assert index.search(q, where={"label": "7"}) == []  # 7 and "7" are different labels
    assert [h.id for h in index.search(q, where={"lang": "de"})] == [1]
    assert [h.id for h in index.search(q, where={"n": 1, "lang": "de"})] == [1]
    assert [h.id for h in index.search(q, where={"flag": True})] == [3]
    assert index.search(q, where={"flag": 1}) == []  # true is not the number 1
    assert [h.id for h in index.search(q, where={"lang": None})] == [2, 3]
    assert [i.id for i in index.items(where={"label": "a"})] == [0, 1]


def test_upsert_replaces_and_remove_deletes(index):
    index.upsert(embeddings=np.array([[0.0, -1.0]]), ids=[0], texts=["moved"], labels="z")
    assert index.get(0) == Item(0, "moved", "z", None)
    assert index.search(np.array([0.0, -1.0]), k=1)[0].id == 0
    assert index.remove([0, 2]) == [0, 2]
    assert len(index) == 2 and 0 not in index and 1 in index
    assert [h.id for h in index.search(np.array([1.0, 0.0]), k=4)] == [1, 3]
    assert [i.id for i in index] == [1, 3]


def test_remove_of_an_unknown_id_changes_nothing(index):
    with pytest.raises(KeyError, match="no item has id 99: nothing was removed"):
        index.remove([1, 99])
    assert len(index) == 4 and 1 in index
    assert index.remove([1, 99], missing_ok=True) == [1]
    assert len(index) == 3


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"embeddings": np.eye(2), "ids": [5, 5]}, ValueError, "ids repeated in one call: 5"),
    ({"embeddings": np.eye(2), "ids": [1, 9]}, ValueError, r"ids already stored: 1 \(use upsert"),
    ({"embeddings": np.ones((1, 3))}, ValueError, r"shape \(n, 2\)"),
    ({"embeddings": np.array([[np.nan, 1.0]])}, ValueError, "row 0 holds NaN"),
    ({"embeddings": np.zeros((1, 2))}, ValueError, "row 0 is all zeros"),
    ({"embeddings": np.eye(2), "labels": [True, "a"]}, TypeError, "got bool"),
    ({"embeddings": np.eye(2), "labels": ["a"]}, ValueError, "labels has 1 items for 2"),
    ({"embeddings": np.eye(1, 2), "metadata": [{"x": {1, 2}}]}, TypeError, "JSON"),
    ({"embeddings": np.eye(1, 2), "ids": ["7"]}, TypeError, r"ids\[0\] must be an integer"),
    ({"embeddings": np.eye(1, 2), "ids": [2**63]}, ValueError, "does not fit in int64"),
    ({"texts": ["a"]}, ValueError, "without a model"),
    ({}, ValueError, "pass texts, embeddings, or both"),
])
def test_bad_writes_are_refused_before_anything_is_written(index, kwargs, error, match):
    with pytest.raises(error, match=match):
        index.add(**kwargs)
    assert len(index) == 4
    assert [i.id for i in index] == [0, 1, 2, 3]


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"queries": np.ones(3)}, ValueError, r"shape \(n, 2\)"),
    ({"queries": np.ones(2), "k": 0}, ValueError, "k must be a positive integer"),
    ({"queries": np.ones(2), "threshold": 1.5}, ValueError, r"in \[-1, 1\]"),
    ({"queries": np.ones(2), "where": {"lang": {"en"}}}, TypeError, r"where\['lang'\]"),
    ({"queries": np.ones(2), "where": "lang=en"}, TypeError, "where must be a dict"),
    ({"queries": "a text"}, ValueError, "without a model"),
])
def test_bad_searches_name_the_argument(index, kwargs, error, match):
    with pytest.raises(error, match=match):
        index.search(**kwargs)


def test_get_of_unknown_ids_names_them(index):
    with pytest.raises(KeyError, match="no item has id 8, 9"):
        index.get([0, 8, 9])


def test_reopen_keeps_everything(tmp_path, square):
    with Index.create(tmp_path / "c", dim=2) as idx:
        idx.add(embeddings=square, texts=["a", "b", "c", "d"])
        before = idx.search(square, k=4)
    with Index.open(tmp_path / "c") as idx:
        assert idx.search(square, k=4) == before
        assert [i.text for i in idx] == ["a", "b", "c", "d"]
        assert idx.add(embeddings=square[:1]) == [4]  # ids go on after the stored ones


def test_create_refuses_an_existing_collection_and_a_file(tmp_path, square):
    Index.create(tmp_path / "c", dim=2).close()
    with pytest.raises(FileExistsError, match="already holds a collection"):
        Index.create(tmp_path / "c", dim=2)
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        Index.create(tmp_path / "f", dim=2)
    with pytest.raises(ValueError, match="is a file"):
        Index.open(tmp_path / "f")
    with pytest.raises(FileNotFoundError, match="no collection at"):
        Index.open(tmp_path / "missing")
    with pytest.raises(ValueError, match="needs dim"):
        Index.create(tmp_path / "d")
    with Index.create(tmp_path / "c", dim=2, exist_ok=True) as idx:
        assert len(idx) == 0


def test_a_newer_format_is_refused_naming_it(tmp_path):
    Index.create(tmp_path / "c", dim=2).close()
    db = sqlite3.connect(tmp_path / "c" / "items.sqlite")
    meta = json.loads(db.execute("SELECT value FROM meta WHERE key='settings'").fetchone()[0])
    meta.update(format_version=FORMAT_VERSION + 1, siamtext_version="9.0")
    db.execute("UPDATE meta SET value=? WHERE key='settings'", (json.dumps(meta),))
    db.commit()
    db.close()
    with pytest.raises(ValueError, match=r"written by a newer siamtext \(9.0, format 2"):
        Index.open(tmp_path / "c")


def test_readonly_handle_refuses_writes(tmp_path, square):
    Index.create(tmp_path / "c", dim=2).close()
    with Index.open(tmp_path / "c", readonly=True) as idx:
        with pytest.raises(PermissionError, match="readonly=True"):
            idx.add(embeddings=square)


# --------------------------------------------------------------------------- with a model
def test_texts_are_embedded_and_found(tmp_path, tiny_model):
    texts = ["reset my password", "where is my parcel", "cancel my card"]
    with Index.create(tmp_path / "c", tiny_model) as idx:
        assert idx.add(texts, labels=["pw", "parcel", "card"]) == [0, 1, 2]
        hits = idx.search(texts, k=1)
        assert [row[0].id for row in hits] == [0, 1, 2]
        assert [row[0].text for row in hits] == texts
        np.testing.assert_allclose([row[0].score for row in hits], 1.0, atol=1e-5)
        expected = tiny_model.encode(texts[:1], normalize=True)
        np.testing.assert_allclose(idx.get(0, with_embeddings=True).embedding, expected[0],
                                   atol=1e-6)
        assert idx.fingerprint["dim"] == tiny_model.embedding_dim


def test_another_encoder_is_refused_naming_both(tmp_path, tiny_model, tiny_bert_dir):
    from siamtext import SiamText

    with Index.create(tmp_path / "c", tiny_model) as idx:
        idx.add(["a text"])
    other = SiamText(tiny_bert_dir, pooling="max")  # same weights, other pooling
    with pytest.raises(ValueError, match=r"pooling: 'mean' != 'max'.*not be comparable"):
        Index.open(tmp_path / "c", other)
    changed = SiamText(tiny_bert_dir)
    with __import__("torch").no_grad():
        next(changed.transformer.parameters()).add_(1.0)
    with pytest.raises(ValueError, match="weights_sha256"):
        Index.open(tmp_path / "c", changed)
    with Index.open(tmp_path / "c") as idx:  # by vectors alone, no model: allowed
        assert len(idx) == 1
    with Index.open(tmp_path / "c", tiny_model) as idx:
        assert idx.search("a text", k=1)[0].text == "a text"


def test_a_pure_embeddings_collection_refuses_a_model(tmp_path, tiny_model):
    Index.create(tmp_path / "c", dim=tiny_model.embedding_dim).close()
    with pytest.raises(ValueError, match="open it with model=None"):
        Index.open(tmp_path / "c", tiny_model)


def test_iteration_reads_one_state_while_writes_go_on(tmp_path):
    x = np.random.default_rng(0).standard_normal((50, 2)).astype(np.float32)
    with Index.create(tmp_path / "c", dim=2) as idx:
        idx.add(embeddings=x[:30])
        items = idx.items(batch_size=7)
        first = [next(items).id for _ in range(3)]
        idx.add(embeddings=x[30:])  # in the middle of the iteration
        idx.remove([29])
        assert first + [i.id for i in items] == list(range(30))
        assert [i.id for i in idx] == list(range(29)) + list(range(30, 50))
