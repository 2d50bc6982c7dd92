"""``engine="milvus"``: the index interface over Milvus, exercised on Milvus Lite.

Milvus Lite (a ``.db`` folder served in this process through the same ``pymilvus`` client
API) is all that runs here: no Milvus server or cluster, no index type but FLAT and Lite's
AUTOINDEX (HNSW), no several writers. Vectors are built by hand so every expected score
can be worked out on paper.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

from siamtext.index import Index, IndexLockedError  # noqa: E402
from siamtext.index.milvus import MilvusStore, milvus_filter  # noqa: E402

E = np.eye(4, dtype=np.float32)


def create(path, **kw) -> Index:
    kw.setdefault("dim", 4)
    kw.setdefault("index_type", "FLAT")
    return Index.create(path, engine="milvus", **kw)


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "items.db")


# ------------------------------------------------------------------ opening
def test_create_exists_open_and_meta(db, tmp_path):
    assert not MilvusStore.exists(db)
    assert not (tmp_path / "items.db").exists()  # asking did not create it
    with pytest.raises(FileNotFoundError, match="no Milvus Lite database"):
        Index.open(db, engine="milvus")
    with create(db, collection="faq") as idx:
        assert idx.dim == 4 and len(idx) == 0 and idx.fingerprint is None
        info = idx.info()
        assert info["engine"] == "milvus" and info["collection"] == "faq"
        assert info["consistency"] == "Strong" and info["metric"] == "IP"
    assert MilvusStore.exists(db, collection="faq")
    assert not MilvusStore.exists(db, collection="other")
    with pytest.raises(FileExistsError, match="already has a Milvus collection 'faq'"):
        create(db, collection="faq")
    with pytest.raises(FileNotFoundError, match="no Milvus collection 'other'"):
        Index.open(db, engine="milvus", collection="other")
    with Index.create(db, dim=4, engine="milvus", collection="faq", exist_ok=True) as idx:
        assert idx.info()["format_version"] == 1


def test_a_newer_format_and_a_foreign_collection_are_refused(db):
    import json

    from pymilvus import MilvusClient

    create(db).close()
    client = MilvusClient(db)
    meta = json.loads(client.describe_collection("siamtext")["properties"]["siamtext.meta"])
    meta.update(format_version=meta["format_version"] + 1, siamtext_version="9.0")
    client.alter_collection_properties("siamtext", properties={"siamtext.meta":
                                                               json.dumps(meta)})
    client.create_collection("theirs", dimension=4)
    client.close()
    with pytest.raises(ValueError, match=r"written by a newer siamtext \(9.0, format 2"):
        Index.open(db, engine="milvus")
    with pytest.raises(ValueError, match="'theirs'.* is not a siamtext collection"):
        Index.open(db, engine="milvus", collection="theirs")


def test_bad_locations_and_options(db, tmp_path):
    with pytest.raises(ValueError, match="server URI .* or a Milvus Lite file ending in .db"):
        create(str(tmp_path / "items"))
    (tmp_path / "plain.db").write_text("x")
    with pytest.raises(ValueError, match="is a file, not a Milvus Lite database"):
        create(str(tmp_path / "plain.db"))
    with pytest.raises(ValueError, match="collection must be a Milvus collection name"):
        create(db, collection="my-items")
    with pytest.raises(TypeError, match="unknown option.*: colection"):
        create(db, colection="x")


def test_missing_extra_names_it(db, monkeypatch):
    monkeypatch.setitem(sys.modules, "pymilvus", None)
    with pytest.raises(ImportError, match=r"pip install 'siamtext\[milvus\]'"):
        create(db)


# ------------------------------------------------------------------ round trips
def test_add_get_keeps_texts_labels_metadata_and_vectors(db):
    with create(db) as idx:
        ids = idx.add(["a", "b", "c"], embeddings=E[:3] * 2,
                      labels=[1, "1", None], metadata=[{"k": [1, 2], "s": 'q"\\'}, None, {}])
        assert ids == [0, 1, 2]
        items = idx.get([2, 0, 1], with_embeddings=True)
        assert [i.id for i in items] == [2, 0, 1]
        assert [i.label for i in items] == [None, 1, "1"]  # 1 and "1" stay distinct
        assert type(items[1].label) is int and type(items[2].label) is str
        assert [i.text for i in items] == ["c", "a", "b"]
        assert [i.metadata for i in items] == [{}, {"k": [1, 2], "s": 'q"\\'}, None]
        np.testing.assert_allclose(items[1].embedding, E[0])  # stored unit-normalised
        assert idx.get(1).text == "b"
        with pytest.raises(KeyError, match="no item has id 7"):
            idx.get([0, 7])
        assert idx.add(embeddings=E[3:]) == [3]
        assert idx.get(3).text is None


def test_upsert_replaces_and_add_refuses_stored_ids(db):
    with create(db) as idx:
        idx.add(["old"], embeddings=E[:1], ids=[5], labels="x", metadata=[{"v": 1}])
        with pytest.raises(ValueError, match="ids already stored: 5"):
            idx.add(["again"], embeddings=E[1:2], ids=[5])
        idx.upsert(["new"], embeddings=E[1:2], ids=[5], labels=2)
        item = idx.get(5, with_embeddings=True)
        assert (item.text, item.label, item.metadata) == ("new", 2, None)
        np.testing.assert_allclose(item.embedding, E[1])
        assert len(idx) == 1
        assert idx.add(embeddings=E[:1]) == [6]  # given ids raise the mark too


def test_remove_existing_count_and_ids_not_reused(db):
    with create(db) as idx:
        idx.add(embeddings=np.vstack([E, E[:2] + E[2:]]))  # ids 0..5
        assert idx.remove([5, 1]) == [1, 5]
        assert len(idx) == 4 and 1 not in idx and 0 in idx
        with pytest.raises(KeyError, match="no item has id 1, 9: nothing was removed"):
            idx.remove([0, 1, 9])
        assert len(idx) == 4
        assert idx.remove([0, 9], missing_ok=True) == [0]
        assert idx.add(embeddings=E[:1]) == [6]  # 5, removed, is not given again
    with Index.open(db, engine="milvus") as idx:  # ... nor after a reopen
        assert [i.id for i in idx] == [2, 3, 4, 6]
        assert idx.add(embeddings=E[:1]) == [7]


def test_text_too_long_for_milvus_writes_nothing(db):
    with create(db) as idx:
        with pytest.raises(ValueError, match="item 1: its text is 65536 bytes"):
            idx.add(["ok", "x" * 65_536], embeddings=E[:2])
        assert len(idx) == 0


# ------------------------------------------------------------------ search
def brute_force(vectors, ids, query, k):
    v = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    q = query / np.linalg.norm(query)
    scores = v @ q
    order = np.argsort(-scores, kind="stable")[:k]
    return [int(ids[i]) for i in order], scores[order]


@pytest.mark.parametrize("index_type", ["FLAT", "AUTOINDEX"])
def test_search_equals_brute_force(db, index_type):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(60, 8)).astype(np.float32)
    queries = rng.normal(size=(5, 8)).astype(np.float32)
    ids = rng.permutation(1000)[:60]
    with create(db, dim=8, index_type=index_type) as idx:
        idx.add(embeddings=vectors, ids=ids.tolist())
        hits = idx.search(queries, k=7)
        assert len(hits) == 5
        for q, got in zip(queries, hits):
            want_ids, want_scores = brute_force(vectors, ids, q, 7)
            assert [h.id for h in got] == want_ids
            np.testing.assert_allclose([h.score for h in got], want_scores, atol=1e-5)
        one = idx.search(queries[0], k=3)  # one vector: one list of hits
        assert [h.id for h in one] == [h.id for h in hits[0][:3]]


def test_search_scores_threshold_and_returned_fields(db):
    with create(db) as idx:
        # cosines to the query (1, 0, 0, 0): 1, 0.6, 0 and -0.8
        idx.add(["e0", "mix", "e2", "neg"], labels=["a", "b", "a", None],
                embeddings=[[1, 0, 0, 0], [3, 4, 0, 0], [0, 0, 1, 0], [-4, 0, 3, 0]],
                metadata=[{"n": 1}, None, None, None])
        hits = idx.search([1.0, 0, 0, 0], k=10)
        assert [h.id for h in hits] == [0, 1, 2, 3]
        np.testing.assert_allclose([h.score for h in hits], [1.0, 0.6, 0.0, -0.8], atol=1e-6)
        assert hits[0].to_dict() == {"id": 0, "score": 1.0, "text": "e0", "label": "a",
                                     "metadata": {"n": 1}}
        assert [h.id for h in idx.search([1.0, 0, 0, 0], k=10, threshold=0.6)] == [0, 1]
        assert [h.id for h in idx.search([1.0, 0, 0, 0], k=1, threshold=0.6)] == [0]
        assert idx.search([1.0, 0, 0, 0], k=10, threshold=1.0)[0].id == 0
        assert idx.search([[0, 1.0, 0, 0]], k=2, threshold=0.9) == [[]]
        with pytest.raises(ValueError, match=r"shape \(n, 4\)"):
            idx.search([1.0, 0, 0], k=1)


def test_where_filters(db):
    with create(db) as idx:
        idx.add(embeddings=np.tile(E[:1], (7, 1)) + np.arange(7)[:, None] * 0.01,
                labels=[1, "1", "x", None, 2, "x", 'we"ird\\'],
                metadata=[{"lang": "en", "b": True}, {"lang": "de", "b": 1},
                          {"lang": "fr", "n": None}, None, {"lang": 'a"b'}, {"b": False},
                          {"lang": "en"}])
        q = E[0]

        def ids(where, **kw):
            return sorted(h.id for h in idx.search(q, k=10, where=where, **kw))

        assert ids({"label": 1}) == [0]
        assert ids({"label": "1"}) == [1]
        assert ids({"label": 1.0}) == [0]
        assert ids({"label": True}) == [] and ids({"label": 1.5}) == []
        assert ids({"label": ["x", 2]}) == [2, 4, 5]
        assert ids({"label": None}) == [3]
        assert ids({"label": 'we"ird\\'}) == [6]
        assert ids({"lang": "en"}) == [0, 6]
        assert ids({"lang": ["de", 'a"b']}) == [1, 4]
        assert ids({"lang": None}) == [3, 5]
        assert ids({"n": None}) == [0, 1, 2, 3, 4, 5, 6]  # null or missing
        assert ids({"b": True}) == [0]  # a bool matches only a bool ...
        assert ids({"b": 1}) == [1]  # ... and an int only a number
        assert ids({"b": False}) == [5]
        assert ids({"lang": "en", "label": 1}) == [0]
        assert ids({"lang": "en", "label": "x"}) == []
        assert [h.id for h in idx.search(q, k=1, where={"b": 1})] == [1]  # refetched past 0
        assert [i.id for i in idx.items(where={"lang": ["en", "fr"]})] == [0, 2, 6]
        assert [i.id for i in idx.items(where={"b": True})] == [0]
        assert list(idx.items(where={"label": True})) == []


def test_milvus_filter_expressions():
    assert milvus_filter({"label": "x"}) == r'label == "\"x\""'
    assert milvus_filter({"label": 3}) == 'label == "3"'
    assert milvus_filter({"label": [None, "a"]}) == r'(label is null or label == "\"a\"")'
    assert milvus_filter({"label": True}) is None
    assert milvus_filter({'k"ey': [1, 2.5]}) == \
        r'(metadata["k\"ey"] == 1 or metadata["k\"ey"] == 2.5)'
    assert milvus_filter({"a": False, "b": None}) == \
        'metadata["a"] == false and metadata["b"] is null'
    assert milvus_filter({"s": "line\nbreak é"}) == 'metadata["s"] == "line\\nbreak é"'


# ------------------------------------------------------------------ iteration, reopen, readers
def test_iter_items_in_id_order_across_pages(db):
    rng = np.random.default_rng(1)
    ids = rng.permutation(500)[:37].tolist()
    with create(db) as idx:
        for part in (ids[:20], ids[20:]):
            idx.add([f"t{i}" for i in part], embeddings=rng.normal(size=(len(part), 4)),
                    ids=part)
        got = list(idx.items(batch_size=5, with_embeddings=True))
        assert [i.id for i in got] == sorted(ids)
        assert [i.text for i in got] == [f"t{i}" for i in sorted(ids)]
        assert got[0].embedding.shape == (4,)
        assert [i.id for i in idx] == sorted(ids)


def test_reopen_keeps_everything_and_readonly_refuses_writes(db):
    with create(db, collection="c1") as idx:
        idx.add(["a", "b"], embeddings=E[:2], labels=["x", 7], metadata=[{"m": 1}, None])
    with Index.open(db, engine="milvus", collection="c1", readonly=True) as idx:
        assert len(idx) == 2
        assert [(i.id, i.text, i.label, i.metadata) for i in idx] == \
            [(0, "a", "x", {"m": 1}), (1, "b", 7, None)]
        assert idx.search(E[1], k=1)[0].id == 1
        with pytest.raises(PermissionError, match="readonly=True"):
            idx.add(embeddings=E[:1])


def test_refresh_counts_another_handles_writes(db):
    writer = create(db)
    reader = Index.open(db, engine="milvus", readonly=True)
    try:
        assert reader.refresh() == 0
        writer.add(embeddings=E[:2])
        assert len(reader) == 2  # Strong consistency: seen without refreshing
        writer.remove([0])
        assert reader.refresh() == 2 and reader.refresh() == 0
        assert writer.refresh() == 0  # its own writes are not news
    finally:
        reader.close()
        writer.close()


def test_fingerprint_refusal(db, tiny_model, tiny_bert_dir):
    from siamtext import SiamText

    with Index.create(db, tiny_model, engine="milvus", index_type="FLAT") as idx:
        idx.add(["how do I reset my password", "where is my parcel"])
        assert idx.fingerprint["model"] == tiny_model.model_name_or_path
    with Index.open(db, tiny_model, engine="milvus") as idx:
        assert idx.search("reset my password", k=1)[0].id == 0
    other = SiamText(tiny_bert_dir, pooling="cls", device="cpu")
    with pytest.raises(ValueError, match="pooling: 'mean' != 'cls'"):
        Index.open(db, other, engine="milvus")
    with pytest.raises(ValueError, match="not by"):
        Index.create(db, other, engine="milvus", exist_ok=True)


def test_a_second_process_is_refused_by_milvus_lites_lock(db, tmp_path):
    create(db).close()
    ready = tmp_path / "ready"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import pathlib, time
        from siamtext.index import Index
        idx = Index.open({db!r}, engine="milvus", readonly=True)
        pathlib.Path({str(ready)!r}).write_text("1")
        time.sleep(60)
    """)])
    try:
        for _ in range(600):
            if ready.exists() or holder.poll() is not None:
                break
            import time

            time.sleep(0.05)
        assert ready.exists(), "the holding process did not open the collection"
        with pytest.raises(IndexLockedError, match="open in another process"):
            Index.open(db, engine="milvus")
    finally:
        holder.kill()
        holder.wait(timeout=30)
    with Index.open(db, engine="milvus") as idx:  # free again once it is gone
        assert len(idx) == 0


def test_live_intents_over_milvus(db, tiny_model):
    """The classifiers use the index through its interface only: a Milvus collection serves
    live intents as the local one does (a class added by the writer, seen after refresh)."""
    from siamtext.classify import IntentClassifier

    writer = Index.create(db, tiny_model, engine="milvus", index_type="FLAT")
    reader = Index.open(db, tiny_model, engine="milvus", readonly=True)
    try:
        clf = IntentClassifier(tiny_model, mode="knn", n_neighbors=1, index=writer).fit(
            ["lost my card", "card stolen", "where is my parcel", "package late"],
            ["card", "card", "delivery", "delivery"])
        live = IntentClassifier.open(reader, tiny_model, mode="knn", n_neighbors=1)
        assert live.predict(["card stolen"]).tolist() == ["card"]
        clf.add_examples(["change my pin", "reset pin"], "pin")
        assert live.refresh() == 1
        assert live.predict(["reset pin"]).tolist() == ["pin"]
        clf.remove_class("pin")
        assert live.refresh() == 1 and live.classes_.tolist() == ["card", "delivery"]
    finally:
        reader.close()
        writer.close()
