"""classify_file: streamed intent predictions over a file, equal to predicting the list."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from siamtext.classify import IntentClassifier
from siamtext.corpus import classify as corpus_classify
from siamtext.corpus.classify import classify_file, partial_path

EXAMPLES = [("I lost my card", "card"), ("my card was stolen", "card"),
            ("what is the exchange rate", "rate"), ("euro to dollar rate", "rate"),
            ("open an account", "account"), ("close my account", "account")]
QUERIES = ["lost card", "", "dollar rate today", "open account please", "stolen card",
           "rate", "account", "my card"]


@pytest.fixture(scope="module")
def clf(tiny_model):
    texts, labels = zip(*EXAMPLES, strict=True)
    return IntentClassifier(tiny_model, mode="knn", n_neighbors=2).fit(list(texts), list(labels))


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_rows_equal_predicting_the_list(clf, tmp_path, monkeypatch):
    monkeypatch.setattr(corpus_classify, "_SCORE_ROWS", 2)  # blocks inside each chunk
    source = tmp_path / "q.txt"
    source.write_text("".join(q + "\n" for q in QUERIES), encoding="utf-8")
    out = classify_file(clf, source, tmp_path / "pred.csv", top_k=2, chunk_size=3)
    rows = read_csv(out)
    assert [int(r["id"]) for r in rows] == list(range(len(QUERIES)))
    assert [r["text"] for r in rows] == QUERIES  # the empty line keeps its row
    assert [r["label"] for r in rows] == clf.predict(QUERIES).tolist()
    np.testing.assert_allclose([float(r["similarity"]) for r in rows],
                               clf.similarity(QUERIES), atol=1e-6)
    top, proba = clf.top_k(QUERIES, k=2)
    np.testing.assert_allclose([float(r["probability"]) for r in rows], proba[:, 0], atol=1e-6)
    assert [r["top_k"].split()[1].split(":")[0] for r in rows] == top[:, 1].tolist()
    assert not partial_path(out).exists()


def test_jsonl_column_in_and_jsonl_out(clf, tmp_path):
    source = tmp_path / "q.jsonl"
    source.write_text("".join(json.dumps({"id": i, "body": q}) + "\n"
                              for i, q in enumerate(QUERIES)), encoding="utf-8")
    out = classify_file(clf, source, tmp_path / "pred.jsonl", column="body")
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == list(range(len(QUERIES)))
    assert [r["label"] for r in rows] == clf.predict(QUERIES).tolist()
    assert "top_k" not in rows[0]


def test_stdout_when_no_output(clf, tmp_path, capsys):
    source = tmp_path / "q.txt"
    source.write_text("lost card\nrate\n", encoding="utf-8")
    assert classify_file(clf, source) is None
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "id,text,label,similarity,probability"
    assert [line.split(",")[2] for line in lines[1:]] == clf.predict(["lost card", "rate"]).tolist()


def test_a_crash_leaves_no_output(clf, tmp_path, monkeypatch):
    source = tmp_path / "q.txt"
    source.write_text("".join(q + "\n" for q in QUERIES), encoding="utf-8")
    calls = {"n": 0}
    encode = clf.model.encode

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("killed")
        return encode(*args, **kwargs)

    monkeypatch.setattr(clf.model, "encode", failing)
    out = tmp_path / "pred.csv"
    with pytest.raises(RuntimeError, match="killed"):
        classify_file(clf, source, out, chunk_size=3)
    assert not out.exists() and not partial_path(out).exists()


def test_bad_input(clf, tiny_model, tmp_path):
    source = tmp_path / "q.txt"
    source.write_text("a\n", encoding="utf-8")
    existing = tmp_path / "pred.csv"
    existing.write_text("keep", encoding="utf-8")
    with pytest.raises(ValueError, match="exists; pass overwrite=True"):
        classify_file(clf, source, existing)
    assert existing.read_text(encoding="utf-8") == "keep"
    classify_file(clf, source, existing, overwrite=True)
    assert read_csv(existing)[0]["text"] == "a"
    with pytest.raises(ValueError, match="unsupported file type '.npy'"):
        classify_file(clf, source, tmp_path / "pred.npy")
    with pytest.raises(ValueError, match="top_k"):
        classify_file(clf, source, tmp_path / "x.csv", top_k=0)
    with pytest.raises(ValueError, match="chunk_size"):
        classify_file(clf, source, tmp_path / "x.csv", chunk_size=0)
    with pytest.raises(ValueError, match="needs a classifier with a model"):
        classify_file(IntentClassifier(None).fit(np.eye(2, dtype=np.float32), ["a", "b"]),
                      source, tmp_path / "x.csv")
    with pytest.raises(NotFittedError):
        classify_file(IntentClassifier(tiny_model), source, tmp_path / "x.csv")
    with pytest.raises(FileNotFoundError, match="input file not found"):
        classify_file(clf, tmp_path / "missing.txt", tmp_path / "x.csv")
    with pytest.raises(ValueError, match="no column 'text'"):
        bad = tmp_path / "q.csv"
        bad.write_text("body\nhello\n", encoding="utf-8")
        classify_file(clf, bad, tmp_path / "x.csv")
    assert not (tmp_path / "x.csv").exists()


def test_a_cascade_classifier_gives_its_own_answers(tiny_model, tmp_path):
    pytest.importorskip("model2vec")
    from siamtext.classify.cascade import static_answers, static_queries

    texts, labels = zip(*EXAMPLES, strict=True)
    static = tiny_model.distill_static(pca_dims=8)
    casc = IntentClassifier(tiny_model, mode="knn", n_neighbors=2, first_pass=static,
                            rerank_top=2).fit(list(texts), list(labels))
    # a gate that the static model clears on some queries and not on others
    margin = static_answers(casc, static_queries(casc, QUERIES))[1]
    casc.first_pass_margin = float(np.median(margin))
    assert 0 < (margin > casc.first_pass_gate).sum() < len(QUERIES)
    source = tmp_path / "q.txt"
    source.write_text("".join(q + "\n" for q in QUERIES), encoding="utf-8")
    rows = read_csv(classify_file(casc, source, tmp_path / "pred.csv", top_k=2, chunk_size=3))
    assert [r["label"] for r in rows] == casc.predict(QUERIES).tolist()
    np.testing.assert_allclose([float(r["similarity"]) for r in rows],
                               casc.similarity(QUERIES), atol=1e-6)
    top, proba = casc.top_k(QUERIES, k=2)
    np.testing.assert_allclose([float(r["probability"]) for r in rows], proba[:, 0], atol=1e-6)
