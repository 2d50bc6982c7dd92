"""/v1/embeddings (OpenAI), /embed (TEI), /similarity: answers equal model.encode."""

from __future__ import annotations

import base64

import numpy as np
import pytest


def exact_float32(values: object) -> bool:
    """Whether every number the server wrote is a float32 value, written in full (no digits
    dropped: the answer is the embedding, not a rounding of it)."""
    got = np.asarray(values, dtype=np.float64)
    return np.array_equal(got, got.astype(np.float32).astype(np.float64))


def test_openai_float(client, tiny_model):
    texts = ["I lost my card", "where is my parcel", ""]
    r = client.post("/v1/embeddings", json={"input": texts, "model": "whatever"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list"
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    assert all(d["object"] == "embedding" for d in body["data"])
    rows = [d["embedding"] for d in body["data"]]
    assert exact_float32(rows)
    got = np.asarray(rows, dtype=np.float32)
    np.testing.assert_allclose(got, tiny_model.encode(texts), atol=1e-5)
    tokens = sum(len(x) for x in tiny_model.token_ids(texts))
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    assert body["model"] == tiny_model.model_name_or_path


def test_openai_base64_and_single_string(client, tiny_model):
    r = client.post("/v1/embeddings", json={"input": "card lost", "encoding_format": "base64"})
    assert r.status_code == 200, r.text
    (row,) = r.json()["data"]
    vec = np.frombuffer(base64.b64decode(row["embedding"]), dtype="<f4")
    np.testing.assert_allclose(vec, tiny_model.encode("card lost"), atol=1e-5)


def test_openai_dimensions_must_match(client, tiny_model):
    ok = client.post("/v1/embeddings", json={"input": "a", "dimensions": tiny_model.embedding_dim})
    assert ok.status_code == 200
    r = client.post("/v1/embeddings", json={"input": "a", "dimensions": 7})
    assert r.status_code == 422 and r.json()["error"]["field"] == "dimensions"


@pytest.mark.parametrize("payload, field", [
    ({"input": [1, 2]}, "input"),            # token arrays are refused
    ({"input": []}, "input"),                # nothing to embed
    ({"input": ["ok", None]}, "input"),
    ({}, "input"),                           # missing
    ({"input": "a", "encoding_format": "int8"}, "encoding_format"),
])
def test_openai_bad_input(client, payload, field):
    r = client.post("/v1/embeddings", json=payload)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["field"] is not None and err["field"].startswith(field), err
    assert "Traceback" not in r.text


def test_tei_embed(client, tiny_model):
    r = client.post("/embed", json={"inputs": ["I lost my card", "hello"]})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert exact_float32(r.json())
    np.testing.assert_allclose(np.asarray(r.json()), tiny_model.encode(["I lost my card",
                                                                        "hello"]), atol=1e-5)
    one = client.post("/embed", json={"inputs": "hello"}).json()
    assert np.asarray(one).shape == (1, tiny_model.embedding_dim)  # TEI: always a matrix


def test_tei_embed_unnormalised(client, tiny_model):
    r = client.post("/embed", json={"inputs": ["hello"], "normalize": False})
    got = np.asarray(r.json())
    np.testing.assert_allclose(got, tiny_model.encode(["hello"], normalize=False), atol=1e-4)
    assert abs(np.linalg.norm(got) - 1) > 1e-3  # really not normalised


def test_tei_embed_rejects_unknown_field(client):
    r = client.post("/embed", json={"inputs": "a", "normalise": True})
    assert r.status_code == 422 and r.json()["error"]["field"] == "normalise"


def test_similarity(client, tiny_model):
    r = client.post("/similarity", json={"inputs": {"source_sentence": "I lost my card",
                                                    "sentences": ["I lost my card", "hi"]}})
    assert r.status_code == 200, r.text
    emb = tiny_model.encode(["I lost my card", "I lost my card", "hi"])
    np.testing.assert_allclose(r.json(), [emb[0] @ emb[1], emb[0] @ emb[2]], atol=1e-5)
    assert r.json()[0] == pytest.approx(1.0, abs=1e-5)


def test_similarity_needs_sentences(client):
    r = client.post("/similarity", json={"inputs": {"source_sentence": "a", "sentences": []}})
    assert r.status_code == 422
    assert r.json()["error"]["field"] == "inputs.sentences"


def test_an_onnx_int8_model_is_served(make_client, tiny_model, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from siamtext import SiamText

    int8 = tiny_model.export("onnx", path=tmp_path / "onnx", quantize="int8")
    model = SiamText(tmp_path / "onnx", backend="onnx", file_name=int8.name)
    client = make_client(model=model)
    texts = ["I lost my card", "where is my parcel", "hi"]
    r = client.post("/embed", json={"inputs": texts})
    assert r.status_code == 200
    np.testing.assert_allclose(np.asarray(r.json()), model.encode(texts), atol=1e-5)
    info = client.get("/info").json()["model"]
    assert info["backend"] == "onnx" and info["file_name"] == int8.name
