"""Keys (read/write, Bearer, constant-time), the bind refusal, body and text limits, CORS."""

from __future__ import annotations

import pytest

from siamtext.serve import ServeSettings
from siamtext.serve.errors import ApiError
from siamtext.serve.security import Keys, check_bind, check_request_texts, is_loopback, load_keys
from tests.serve.conftest import start

READ = "read-key-0123456789abcdef"
WRITE = "write-key-0123456789abcdef"


def _write_keys(path):
    path.write_text(f"# keys of the test server\nread {READ}\n\nwrite {WRITE}\n",
                    encoding="utf-8")
    return path


@pytest.fixture
def key_file(tmp_path):
    return _write_keys(tmp_path / "keys.txt")


def test_load_keys(key_file, tmp_path):
    keys = load_keys(key_file)
    assert keys.scope_of(READ) == "read"
    assert keys.scope_of(WRITE) == "write"
    assert keys.scope_of(WRITE[:-1]) is None and keys.scope_of("") is None
    bare = tmp_path / "bare.txt"
    bare.write_text(WRITE + "\n")
    assert load_keys(bare).scope_of(WRITE) == "write"  # a bare key reads and writes


@pytest.mark.parametrize("text, match", [
    ("admin 0123456789abcdef\n", r"keys.txt:1: expected"),
    ("read short\n", r":1: a key must be at least 16"),
    ("# only a comment\n", "holds no key"),
])
def test_bad_key_files_are_named(tmp_path, text, match):
    path = tmp_path / "keys.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        load_keys(path)


def test_scope_compares_every_key(monkeypatch):
    import hmac

    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: calls.append(b) or real(a, b))
    keys = Keys(read=(b"r" * 16, b"s" * 16), write=(b"w" * 16,))
    assert keys.scope_of("w" * 16) == "write"
    assert len(calls) == 3  # no early exit on the match


@pytest.fixture(scope="module")
def keyed(tiny_model, tmp_path_factory, demo_embeddings):
    """One keyed server for the module (its writes do not disturb the other tests)."""
    from siamtext.classify import IntentClassifier
    from siamtext.serve import create_app

    folder = tmp_path_factory.mktemp("keyed")
    emb, labels = demo_embeddings
    app = create_app(tiny_model, index=folder / "idx",
                     intents=IntentClassifier(tiny_model).fit(emb, labels),
                     settings=ServeSettings(api_keys=_write_keys(folder / "keys.txt")))
    client = start(app)
    yield client
    client.__exit__(None, None, None)


def _auth(key):
    return {"Authorization": f"Bearer {key}"}


READ_ROUTES = [("post", "/v1/embeddings", {"input": "a"}), ("post", "/embed", {"inputs": "a"}),
               ("post", "/similarity", {"inputs": {"source_sentence": "a", "sentences": ["b"]}}),
               ("post", "/duplicates/check", {"texts": "a"}),
               ("post", "/intents/predict", {"texts": "a"}), ("get", "/intents", None),
               ("get", "/info", None), ("get", "/metrics", None),
               ("get", "/openapi.json", None), ("get", "/docs", None)]
WRITE_ROUTES = [("post", "/duplicates", {"items": [{"text": "a"}]}),
                ("post", "/intents/card_lost/examples", {"texts": ["lost it"]})]


@pytest.mark.parametrize("method, path, body", READ_ROUTES + WRITE_ROUTES)
def test_every_route_needs_a_key(keyed, method, path, body):
    kwargs = {"json": body} if body is not None else {}
    r = getattr(keyed, method)(path, **kwargs)
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.json()["error"]["field"] == "Authorization"
    wrong = getattr(keyed, method)(path, headers=_auth("x" * 30), **kwargs)
    assert wrong.status_code == 401 and "not valid" in wrong.json()["error"]["message"]
    basic = getattr(keyed, method)(path, headers={"Authorization": f"Basic {READ}"}, **kwargs)
    assert basic.status_code == 401


@pytest.mark.parametrize("method, path, body", READ_ROUTES)
def test_a_read_key_reads(keyed, method, path, body):
    kwargs = {"json": body} if body is not None else {}
    r = getattr(keyed, method)(path, headers=_auth(READ), **kwargs)
    assert r.status_code == 200, r.text
    assert getattr(keyed, method)(path, headers=_auth(WRITE), **kwargs).status_code == 200


@pytest.mark.parametrize("method, path, body", WRITE_ROUTES)
def test_a_read_key_does_not_write(keyed, method, path, body):
    r = getattr(keyed, method)(path, json=body, headers=_auth(READ))
    assert r.status_code == 403 and "may read but not write" in r.text
    assert getattr(keyed, method)(path, json=body, headers=_auth(WRITE)).status_code == 201


def test_deletes_need_a_write_key(keyed):
    assert keyed.delete("/duplicates/0", headers=_auth(READ)).status_code == 403
    assert keyed.delete("/intents/card_lost", headers=_auth(READ)).status_code == 403
    assert keyed.delete("/intents/weather", headers=_auth(WRITE)).status_code == 200


def test_health_and_ready_need_no_key(keyed):
    assert keyed.get("/health").status_code == 200
    assert keyed.get("/ready").status_code == 200
    assert keyed.get("/").status_code == 200  # the static page holds no data
    assert keyed.get("/info", headers=_auth(READ)).json()["settings"]["keys_required"] is True


def test_bind_refusal():
    check_bind("127.0.0.1", has_keys=False, writes=True, insecure=False)
    check_bind("0.0.0.0", has_keys=True, writes=True, insecure=False)
    check_bind("0.0.0.0", has_keys=False, writes=False, insecure=False)  # embeddings only
    check_bind("0.0.0.0", has_keys=False, writes=True, insecure=True)
    with pytest.raises(ValueError, match="--api-key-file"):
        check_bind("0.0.0.0", has_keys=False, writes=True, insecure=False)
    assert is_loopback("localhost") and is_loopback("127.0.0.2") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")


def test_body_limit(make_client):
    client = make_client(settings=ServeSettings(max_body_bytes=200))
    r = client.post("/embed", json={"inputs": "x" * 300})
    assert r.status_code == 413 and "over the limit of 200" in r.json()["error"]["message"]

    def chunks():  # no Content-Length: counted as it streams
        yield b'{"inputs": "'
        yield b"x" * 300
        yield b'"}'

    r = client.post("/embed", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    small = client.post("/embed", content=iter([b'{"inputs": "a"}']),
                        headers={"Content-Type": "application/json"})
    assert small.status_code == 200


def test_text_limits(make_client):
    client = make_client(settings=ServeSettings(max_texts=3, max_chars=10))
    r = client.post("/embed", json={"inputs": ["a"] * 4})
    assert r.status_code == 413 and r.json()["error"]["field"] == "inputs"
    r = client.post("/v1/embeddings", json={"input": ["short", "x" * 11]})
    assert r.status_code == 422 and r.json()["error"]["field"] == "input[1]"
    assert client.post("/embed", json={"inputs": ["x" * 10] * 3}).status_code == 200


def test_check_request_texts_names_the_field():
    with pytest.raises(ApiError) as err:
        check_request_texts(["ok", "bad \ud800"], "texts", 10, 100)
    assert err.value.status == 422 and err.value.field == "texts[1]"
    assert check_request_texts("one", "texts", 1, 3) == ["one"]


def test_cors_off_by_default(client):
    r = client.options("/embed", headers={"Origin": "http://a.example",
                                          "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in r.headers
    r = client.post("/embed", json={"inputs": "a"}, headers={"Origin": "http://a.example"})
    assert "access-control-allow-origin" not in r.headers


def test_cors_when_configured(make_client):
    client = make_client(settings=ServeSettings(cors_origins=["http://a.example"]))
    r = client.options("/embed", headers={"Origin": "http://a.example",
                                          "Access-Control-Request-Method": "POST"})
    assert r.headers["access-control-allow-origin"] == "http://a.example"
    other = client.post("/embed", json={"inputs": "a"}, headers={"Origin": "http://b.example"})
    assert "access-control-allow-origin" not in other.headers
