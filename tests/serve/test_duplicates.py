"""/duplicates routes over a real Index (siamtext.index, local engine)."""

from __future__ import annotations

import pytest

from siamtext.index import Index

QUESTIONS = ["How do I reset my password?", "Where is my parcel?", "I lost my card"]


@pytest.fixture
def dup(make_client, index_path):
    return make_client(index=index_path)


def _add(client, texts, **extra):
    items = [{"text": t, **extra} for t in texts]
    r = client.post("/duplicates", json={"items": items})
    assert r.status_code == 201, r.text
    return r.json()


def test_store_then_check(dup, tiny_model):
    added = _add(dup, QUESTIONS)
    assert added == {"ids": [0, 1, 2], "items": 3}
    r = dup.post("/duplicates/check", json={"texts": ["I lost my card", "zzz qqq"], "k": 2,
                                           "threshold": 0.999})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["threshold"] == 0.999
    same, other = body["results"]
    assert same["is_duplicate"] is True
    assert [h["id"] for h in same["duplicates"]] == [2]
    assert same["duplicates"][0]["score"] == pytest.approx(1.0, abs=1e-5)
    assert same["duplicates"][0]["text"] == "I lost my card"
    assert len(same["nearest"]) == 2
    assert other["is_duplicate"] is False and other["duplicates"] == []
    # the scores are cosines of model.encode
    emb = tiny_model.encode(["zzz qqq", *QUESTIONS])
    best = max(float(emb[0] @ e) for e in emb[1:])
    assert other["nearest"][0]["score"] == pytest.approx(best, abs=1e-5)


def test_default_threshold_is_the_servers(make_client, index_path, settings_with):
    client = make_client(index=index_path, settings=settings_with(duplicate_threshold=0.5))
    assert client.post("/duplicates/check", json={"texts": "a"}).json()["threshold"] == 0.5


def test_labels_metadata_where_and_get(dup):
    r = dup.post("/duplicates", json={"items": [
        {"text": "I lost my card", "id": 10, "label": "cards", "metadata": {"lang": "en"}},
        {"text": "ich habe meine Karte verloren", "id": 11, "label": "cards",
         "metadata": {"lang": "de"}}]})
    assert r.status_code == 201 and r.json()["ids"] == [10, 11]
    hits = dup.post("/duplicates/check", json={"texts": "I lost my card", "k": 5,
                                               "where": {"lang": "de"}}).json()
    assert [h["id"] for h in hits["results"][0]["nearest"]] == [11]
    item = dup.get("/duplicates/10").json()
    assert item["label"] == "cards" and item["metadata"] == {"lang": "en"}


def test_delete(dup):
    _add(dup, QUESTIONS)
    r = dup.delete("/duplicates/1")
    assert r.status_code == 200 and r.json() == {"deleted": 1, "items": 2}
    assert dup.delete("/duplicates/1").status_code == 404
    missing = dup.get("/duplicates/1")
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "item_id"
    nearest = dup.post("/duplicates/check", json={"texts": "Where is my parcel?"}).json()
    assert 1 not in [h["id"] for h in nearest["results"][0]["nearest"]]


def test_duplicate_ids_conflict(dup):
    _add(dup, ["a"], id=5)
    r = dup.post("/duplicates", json={"items": [{"text": "b", "id": 5}]})
    assert r.status_code == 409 and "already stored" in r.json()["error"]["message"]
    r = dup.post("/duplicates", json={"items": [{"text": "b", "id": 6}, {"text": "c", "id": 6}]})
    assert r.status_code == 409 and "repeated" in r.json()["error"]["message"]
    r = dup.post("/duplicates", json={"items": [{"text": "b", "id": 7}, {"text": "c"}]})
    assert r.status_code == 422 and "every item or to none" in r.json()["error"]["message"]
    assert dup.get("/info").json()["index"]["items"] == 1  # nothing half-written


@pytest.mark.parametrize("payload, status, field", [
    ({"texts": []}, 422, "texts"),
    ({"texts": ["a"], "k": 0}, 422, "k"),
    ({"texts": ["a"], "k": 1000}, 422, "k"),
    ({"texts": ["a"], "threshold": 2}, 422, "threshold"),
    ({"texts": ["a"], "where": {"lang": {"x": 1}}}, 422, "where"),
    ({"texts": [3]}, 422, "texts"),
])
def test_bad_checks(dup, payload, status, field):
    r = dup.post("/duplicates/check", json=payload)
    assert r.status_code == status, r.text
    assert r.json()["error"]["field"].startswith(field)


@pytest.mark.parametrize("payload, field", [
    ({"items": [{"id": 1}]}, "items[0].text"),
    ({"items": [{"text": "a", "metadata": [1]}]}, "items[0].metadata"),
    ({"items": [{"text": "a", "label": 1.5}]}, "items[0].label"),
    ({"items": [{"text": "a", "id": 2**63}]}, "items[0].id"),
    ({"items": []}, "items"),
])
def test_bad_items(dup, payload, field):
    r = dup.post("/duplicates", json=payload)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field


def test_bad_path_ids(dup):
    assert dup.delete("/duplicates/abc").status_code == 422
    assert dup.delete(f"/duplicates/{2**64}").status_code == 422
    assert dup.post("/duplicates/0").status_code == 405


def test_without_index_the_routes_say_so(client):
    r = client.post("/duplicates/check", json={"texts": "a"})
    assert r.status_code == 404 and "--index" in r.json()["error"]["message"]


def test_a_stored_item_is_on_disk_when_the_answer_comes(dup, index_path, tiny_model):
    _add(dup, ["durable question"])
    reader = Index.open(index_path, tiny_model, readonly=True)
    try:
        assert [item.text for item in reader] == ["durable question"]
    finally:
        reader.close()


def test_an_open_index_object_is_served(make_client, tmp_path, tiny_model):
    index = Index.create(tmp_path / "given", tiny_model)
    index.add(["I lost my card"])
    client = make_client(index=index)
    assert client.get("/info").json()["index"]["items"] == 1
