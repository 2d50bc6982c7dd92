"""/intents routes: predictions equal the classifier's, changes are live and written back."""

from __future__ import annotations

import numpy as np
import pytest

from siamtext.classify import IntentClassifier


@pytest.fixture
def live(make_client, intents):
    return make_client(intents=intents)


def test_predict_equals_the_classifier(live, intents):
    texts = ["I lost my card", "what is the weather tomorrow", "play some jazz"]
    r = live.post("/intents/predict", json={"texts": texts, "k": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    labels, probas = intents.top_k(texts, 3)
    best = intents.similarity(texts)
    for i, result in enumerate(body["results"]):
        assert [c["label"] for c in result["top"]] == labels[i].tolist()
        np.testing.assert_allclose([c["probability"] for c in result["top"]], probas[i],
                                   atol=1e-5)
        assert result["score"] == pytest.approx(float(best[i]), abs=1e-5)
        assert result["label"] == intents.predict([texts[i]])[0]
        assert result["out_of_scope"] is False  # no threshold: nothing is rejected
    assert body["threshold"] is None and body["unknown_label"] == "unknown"


def test_out_of_scope_under_the_threshold(make_client, intents):
    intents.set_params(threshold=0.999)
    client = make_client(intents=intents)
    result = client.post("/intents/predict", json={"texts": "zzz qqq xxx"}).json()["results"][0]
    assert result["out_of_scope"] is True and result["label"] == "unknown"
    assert result["score"] < 0.999
    assert len(result["top"]) == 3  # the candidates are still shown


def test_add_examples_is_live(live):
    before = live.post("/intents/predict", json={"texts": "quantum flux capacitor"}).json()
    assert before["results"][0]["label"] != "physics"
    r = live.post("/intents/physics/examples", json={"texts": ["quantum flux capacitor"]})
    assert r.status_code == 201, r.text
    assert r.json() == {"label": "physics", "added": 1, "classes": 17}
    after = live.post("/intents/predict", json={"texts": "quantum flux capacitor"}).json()
    assert after["results"][0]["label"] == "physics"
    listed = live.get("/intents").json()
    assert listed["classes"][-1] == "physics" and listed["counts"][-1] == 1


def test_remove_class(live):
    r = live.delete("/intents/card_lost")
    assert r.status_code == 200 and r.json()["classes"] == 15
    assert "card_lost" not in live.get("/intents").json()["classes"]
    again = live.delete("/intents/card_lost")
    assert again.status_code == 404 and again.json()["error"]["field"] == "label"
    top = live.post("/intents/predict", json={"texts": "I lost my card", "k": 16}).json()
    assert "card_lost" not in [c["label"] for c in top["results"][0]["top"]]


def test_the_last_class_cannot_go(make_client, tiny_model):
    clf = IntentClassifier(tiny_model).fit(["hi", "hello"], ["greet", "greet"])
    client = make_client(intents=clf)
    assert client.delete("/intents/greet").status_code == 409


def test_a_missing_path_becomes_a_collection_of_examples(make_client, tmp_path, tiny_model):
    path = tmp_path / "intents.idx"
    client = make_client(intents=path)  # missing: starts empty, on the served model
    r = client.post("/intents/predict", json={"texts": "hi"})
    assert r.status_code == 409 and "no class yet" in r.json()["error"]["message"]
    assert client.get("/intents").json()["classes"] == []
    assert client.post("/intents/greet/examples",
                       json={"texts": ["hello", "hi there"]}).status_code == 201
    assert client.post("/intents/bye/examples", json={"texts": ["goodbye"]}).status_code == 201
    reader = IntentClassifier.open(path, tiny_model, mode="knn", readonly=True)
    try:  # another handle reads the increments while the server holds the collection
        assert sorted(reader.classes_.tolist()) == ["bye", "greet"]
        assert reader.examples_.shape[0] == 3
        assert client.delete("/intents/bye").status_code == 200
        reader.refresh()
        assert reader.classes_.tolist() == ["greet"]
    finally:
        reader.close()


def test_a_collection_is_served_again(make_client, tmp_path, tiny_model):
    path = tmp_path / "intents.idx"
    IntentClassifier(tiny_model, mode="knn", index=path).fit(["hi", "bye"], ["greet", "bye"]
                                                              ).close()
    client = make_client(intents=path)
    assert sorted(client.get("/intents").json()["classes"]) == ["bye", "greet"]
    result = client.post("/intents/predict", json={"texts": "bye"}).json()["results"][0]
    assert result["label"] == "bye"


def test_changes_are_written_to_a_saved_folder(make_client, tmp_path, intents):
    folder = tmp_path / "saved"
    intents.save(folder)
    client = make_client(intents=folder)
    assert client.post("/intents/physics/examples",
                       json={"texts": ["quantum flux"]}).status_code == 201
    assert IntentClassifier.load(folder).classes_.tolist()[-1] == "physics"
    assert client.delete("/intents/physics").status_code == 200
    assert "physics" not in IntentClassifier.load(folder).classes_.tolist()


def test_a_saved_folder_is_served_on_the_same_weights(make_client, tmp_path, intents,
                                                      tiny_model):
    intents.save(tmp_path / "saved")
    client = make_client(intents=tmp_path / "saved")
    service = client.app.state.service
    assert service.intents.model is tiny_model  # one encoder, one batcher
    info = client.get("/info").json()["intents"]
    assert info["classes"] == 16 and info["examples"] == intents.examples_.shape[0]


def test_integer_labels(make_client, tiny_model):
    clf = IntentClassifier(tiny_model).fit(["hi", "bye"], [1, 2])
    client = make_client(intents=clf)
    assert client.post("/intents/3/examples", json={"texts": ["thanks"]}).status_code == 201
    assert client.get("/intents").json()["classes"] == [1, 2, 3]
    assert client.delete("/intents/abc").status_code == 404
    assert client.delete("/intents/3").status_code == 200


@pytest.mark.parametrize("payload, field", [
    ({"texts": []}, "texts"), ({"texts": ["a"], "k": 0}, "k"), ({"text": "a"}, "text"),
    ({"texts": [None]}, "texts"),
])
def test_bad_predictions(live, payload, field):
    r = live.post("/intents/predict", json=payload)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"].startswith(field)


def test_bad_examples(live):
    r = live.post("/intents/unknown/examples", json={"texts": ["x"]})
    assert r.status_code == 422 and "out-of-scope" in r.json()["error"]["message"]
    assert live.post("/intents/x/examples", json={"texts": []}).status_code == 422
    assert live.post("/intents/x/examples", json={}).status_code == 422


def test_without_intents_the_routes_say_so(client):
    r = client.post("/intents/predict", json={"texts": "a"})
    assert r.status_code == 404 and "--intents" in r.json()["error"]["message"]
