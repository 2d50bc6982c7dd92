"""``siamtext index create|add|search|check|remove|info`` on the tiny model and small files."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from siamtext.cli import main
from siamtext.index import Index


def index(*argv: str) -> int:
    return main(["index", *argv])


def quiet(*argv: str) -> list[str]:
    """``argv`` with the options that keep the tests offline and silent."""
    return [*argv, "--device", "cpu"]


def lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture
def collection(tmp_path, tiny_bert_dir, corpus, capsys):
    """A local collection of 20 demo texts, ids 100.., labels from a jsonl file."""
    path = tmp_path / "faq.idx"
    data = tmp_path / "faq.jsonl"
    rows = [{"q": t, "qid": 100 + i, "intent": ["billing", 3][i % 2]}
            for i, t in enumerate(corpus[:20])]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert index(*quiet("create", str(path), "--model", str(tiny_bert_dir))) == 0
    assert index(*quiet("add", str(path), str(data), "--column", "q", "--id-column", "qid",
                        "--label-column", "intent", "--chunk-size", "6",
                        "--no-progress")) == 0
    capsys.readouterr()
    return path, rows


def test_create_add_info(collection, tiny_bert_dir, tiny_model, capsys):
    path, rows = collection
    assert index("info", str(path)) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["items"] == 20 and info["dim"] == tiny_model.embedding_dim
    assert info["fingerprint"]["model"] == str(tiny_bert_dir.resolve())
    with Index.open(path, tiny_model, readonly=True) as idx:
        items = list(idx)
        assert [i.id for i in items] == [r["qid"] for r in rows]
        assert [i.text for i in items] == [r["q"] for r in rows]
        assert [i.label for i in items] == [r["intent"] for r in rows]  # 3 stays an int
        np.testing.assert_allclose(idx.get(105, with_embeddings=True).embedding,
                                   tiny_model.encode([rows[5]["q"]], normalize=True)[0],
                                   atol=1e-5)


def test_search_matches_the_library(collection, tiny_model, capsys):
    path, rows = collection
    queries = [rows[3]["q"], "where is my parcel"]
    assert index(*quiet("search", str(path), *queries, "-k", "3", "--json")) == 0
    got = lines(capsys.readouterr().out)
    with Index.open(path, tiny_model, readonly=True) as idx:
        want = idx.search(queries, k=3)
    assert [g["query"] for g in got] == queries
    assert [[h["id"] for h in g["hits"]] for g in got] == [[h.id for h in w] for w in want]
    assert got[0]["hits"][0]["id"] == 103 and got[0]["hits"][0]["score"] == \
        pytest.approx(1.0, abs=1e-5)
    assert index(*quiet("search", str(path), rows[3]["q"], "-k", "2", "--where",
                        '{"label": 3}', "--json")) == 0
    hits = lines(capsys.readouterr().out)[0]["hits"]
    assert len(hits) == 2 and {h["label"] for h in hits} == {3}
    assert index(*quiet("search", str(path), rows[3]["q"], "-k", "1")) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0] == f"# {rows[3]['q']}"
    assert table[1].split("\t")[1:] == ["103", rows[3]["q"], "[3]"]


def test_check_gives_the_stored_items_above_the_threshold(collection, tmp_path, tiny_model,
                                                          capsys):
    path, rows = collection
    new = tmp_path / "new.txt"
    texts = [rows[0]["q"], "zzzz qqqq", rows[7]["q"]]
    new.write_text("\n".join(texts) + "\n")
    out = tmp_path / "dups.jsonl"
    assert index(*quiet("check", str(path), str(new), "--threshold", "0.9", "-o", str(out),
                        "--chunk-size", "2", "--no-progress")) == 0
    got = lines(out.read_text())
    with Index.open(path, tiny_model, readonly=True) as idx:
        want = idx.search(texts, k=10, threshold=0.9)
    assert [g["row"] for g in got] == [0, 1, 2] and [g["text"] for g in got] == texts
    assert [[m["id"] for m in g["matches"]] for g in got] == [[h.id for h in w] for w in want]
    assert got[0]["matches"][0]["id"] == 100 and got[2]["matches"][0]["id"] == 107
    assert all(m["score"] >= 0.9 for g in got for m in g["matches"])
    assert index(*quiet("check", str(path), str(new), "--threshold", "0.9", "-o",
                        str(out))) == 2  # an existing output is not overwritten
    assert "exists" in capsys.readouterr().err


def test_remove_and_unknown_ids(collection, capsys):
    path, _ = collection
    assert index("remove", str(path), "101", "102") == 0
    assert json.loads(capsys.readouterr().out) == {"removed": [101, 102], "items": 18}
    assert index("remove", str(path), "103", "999") == 2
    assert "no item has id 999: nothing was removed" in capsys.readouterr().err
    assert index("remove", str(path), "103", "999", "--missing-ok") == 0
    assert json.loads(capsys.readouterr().out) == {"removed": [103], "items": 17}


def test_a_failing_chunk_keeps_the_chunks_before_it(collection, tmp_path, capsys):
    path, _ = collection
    data = tmp_path / "more.csv"
    data.write_text("text,id\n" + "".join(f"t{i},{i}\n" for i in range(5)) + "again,100\n")
    assert index(*quiet("add", str(path), str(data), "--id-column", "id", "--chunk-size",
                        "2", "--no-progress")) == 2
    err = capsys.readouterr().err
    assert "ids already stored: 100" in err and "the first 4 rows were stored" in err
    with Index.open(path, readonly=True) as idx:
        assert len(idx) == 24 and 3 in idx and 4 not in idx
    assert index(*quiet("add", str(path), str(data), "--id-column", "id", "--upsert",
                        "--no-progress")) == 0
    with Index.open(path, readonly=True) as idx:
        assert len(idx) == 25 and idx.get(100).text == "again"


def test_model_reloads_from_the_fingerprint_and_another_is_refused(
        collection, tmp_path, tiny_bert_dir, tiny_albert_dir, monkeypatch, capsys):
    path, rows = collection
    monkeypatch.chdir(tmp_path)  # the stored path is absolute: found from anywhere
    assert index(*quiet("search", str(path), rows[1]["q"], "-k", "1", "--json")) == 0
    assert lines(capsys.readouterr().out)[0]["hits"][0]["id"] == 101
    moved = tmp_path / "moved_model"
    shutil.copytree(tiny_bert_dir, moved)
    assert index(*quiet("search", str(path), rows[1]["q"], "-k", "1", "--model",
                        str(moved))) == 0  # the same weights elsewhere: accepted
    capsys.readouterr()
    assert index(*quiet("search", str(path), "x", "--model", str(tiny_albert_dir))) == 2
    err = capsys.readouterr().err
    assert "was filled by encoder" in err and "weights_sha256" in err


def test_txt_and_parquet_inputs_and_progress_bar(tmp_path, tiny_bert_dir, corpus, capsys):
    path = tmp_path / "c.idx"
    txt, par = tmp_path / "a.txt", tmp_path / "b.parquet"
    txt.write_text("\n".join(corpus[:4]) + "\n")
    pq.write_table(pa.table({"body": corpus[4:7], "cls": ["x", "y", None]}), par)
    assert index(*quiet("create", str(path), "--model", str(tiny_bert_dir))) == 0
    assert index(*quiet("add", str(path), str(txt))) == 0
    assert "Adding" in capsys.readouterr().err  # the bar, on by default
    assert index(*quiet("add", str(path), str(par), "--column", "body", "--label-column",
                        "cls", "--no-progress")) == 0
    with Index.open(path, readonly=True) as idx:
        assert [(i.id, i.text, i.label) for i in idx] == \
            [(0, corpus[0], None), (1, corpus[1], None), (2, corpus[2], None),
             (3, corpus[3], None), (4, corpus[4], "x"), (5, corpus[5], "y"),
             (6, corpus[6], None)]


def test_pure_embeddings_collection(tmp_path, capsys):
    path = tmp_path / "vec.idx"
    vectors = np.eye(3, dtype=np.float32)
    np.save(tmp_path / "e.npy", vectors)
    (tmp_path / "t.txt").write_text("a\nb\nc\n")
    assert index("create", str(path), "--dim", "3") == 0
    assert json.loads(capsys.readouterr().out)["fingerprint"] is None
    assert index("add", str(path), str(tmp_path / "t.txt"), "--embeddings",
                 str(tmp_path / "e.npy"), "--no-progress") == 0
    assert index("add", str(path), "--embeddings", str(tmp_path / "e.npy"),
                 "--no-progress") == 0
    with Index.open(path, readonly=True) as idx:
        assert [i.text for i in idx] == ["a", "b", "c", None, None, None]
        assert {h.id for h in idx.search([0, 1.0, 0], k=2)} == {1, 4}
    capsys.readouterr()
    assert index("search", str(path), "a") == 2
    assert "holds vectors given by the user" in capsys.readouterr().err


@pytest.fixture(scope="module")
def small(tmp_path_factory, tiny_bert_dir, corpus):
    """A local collection of 3 texts, shared by the tests that only read it."""
    folder = tmp_path_factory.mktemp("small")
    (folder / "t.txt").write_text("\n".join(corpus[:3]) + "\n")
    assert index(*quiet("create", str(folder / "c.idx"), "--model", str(tiny_bert_dir))) == 0
    assert index(*quiet("add", str(folder / "c.idx"), str(folder / "t.txt"),
                        "--no-progress")) == 0
    return folder / "c.idx"


@pytest.mark.parametrize(("argv", "message"), [
    (["add", "{path}", "{data}", "--chunk-size", "0"], "--chunk-size must be a positive"),
    (["add", "{path}", "{csv}", "--column", "body"], "has no column 'body'"),
    (["add", "{path}", "{data}", "--id-column", "id"], "need a .csv, .tsv, .jsonl or "),
    (["add", "{path}"], "add needs FILE"),
    (["search", "{path}", "q", "--where", "[1]"], "--where must be a JSON object"),
    (["search", "{path}", "q", "-k", "0"], "-k must be a positive integer"),
    (["search", "{path}", "q", "--threshold", "2"], r"--threshold must be .*, got 2.0"),
    (["info", "{missing}"], "missing"),
    (["create", "{path}", "--dim", "3"], "already holds a collection.*--exist-ok opens it"),
    (["info", "{path}", "--collection", "x"], "--collection names a Milvus collection"),
])
def test_errors_exit_2(small, tmp_path, capsys, argv, message):
    import re

    path = small
    data = tmp_path / "d.txt"
    data.write_text("hello\n")
    (tmp_path / "d.csv").write_text("text\nhello\n")
    argv = [a.format(path=path, data=data, csv=tmp_path / "d.csv", missing=tmp_path / "missing")
            for a in argv]
    assert index(*quiet(*argv) if argv[0] in ("add", "search") else argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("siamtext index: error: ")  # before a model is loaded
    assert re.search(message, err), err
    with Index.open(path, readonly=True) as idx:
        assert len(idx) == 3


def test_create_needs_a_model_or_a_dim(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        index("create", str(tmp_path / "c"))
    assert exit_.value.code == 2
    assert "one of the arguments --model --dim is required" in capsys.readouterr().err


def test_milvus_lite_path(tmp_path, tiny_bert_dir, corpus, capsys):
    pytest.importorskip("pymilvus")
    pytest.importorskip("milvus_lite")
    db = str(tmp_path / "faq.db")
    data = tmp_path / "faq.txt"
    data.write_text("\n".join(corpus[:5]) + "\n")
    assert index(*quiet("create", db, "--model", str(tiny_bert_dir), "--collection",
                        "faq")) == 0
    assert json.loads(capsys.readouterr().out)["engine"] == "milvus"
    assert index(*quiet("add", db, str(data), "--collection", "faq", "--no-progress")) == 0
    assert index(*quiet("search", db, corpus[2], "-k", "1", "--json", "--collection",
                        "faq")) == 0
    hit = lines(capsys.readouterr().out)[0]["hits"][0]
    assert hit["id"] == 2 and hit["score"] == pytest.approx(1.0, abs=1e-5)
    assert index("info", db, "--collection", "faq") == 0
    assert json.loads(capsys.readouterr().out)["items"] == 5
