"""``siamtext dedup`` and ``siamtext classify`` on the tiny model and small files."""

from __future__ import annotations

import argparse
import csv
import json

import numpy as np
import pytest

from siamtext.classify.dedup import DuplicateDetector
from siamtext.classify.intent import IntentClassifier
from siamtext.cli import classify as classify_cli
from siamtext.cli import dedup as dedup_cli


def run_cli(module, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="siamtext")
    sub = parser.add_subparsers(dest="command", required=True)
    module.add_parser(sub)
    return module.run(parser.parse_args(argv))


def test_dedup_txt_to_csv_and_groups_jsonl(tiny_bert_dir, tmp_path, capsys):
    corpus = tmp_path / "q.txt"
    corpus.write_text("I lost my card\nhow do I top up\nI lost my card\n\nfreeze my card\n")
    pairs, groups = tmp_path / "pairs.csv", tmp_path / "groups.jsonl"
    code = run_cli(dedup_cli, ["dedup", str(corpus), "--model", str(tiny_bert_dir),
                               "--device", "cpu", "--threshold", "0.999999", "-o", str(pairs),
                               "--groups", str(groups), "--no-progress"])
    assert code == 0
    rows = list(csv.DictReader(pairs.open()))
    assert {"i", "j", "score", "text_i", "text_j"} <= set(rows[0])
    assert any(r["i"] == "0" and r["j"] == "2" for r in rows)  # blank line skipped
    got = [json.loads(line) for line in groups.read_text().splitlines()]
    assert any(g["members"].split()[:2] == ["0", "2"] for g in got)
    assert "4 texts:" in capsys.readouterr().err


def test_dedup_with_a_saved_detector_and_csv_column(tiny_model, tmp_path, capsys):
    folder = DuplicateDetector(tiny_model, threshold=0.999999).save(tmp_path / "det")
    data = tmp_path / "q.csv"
    data.write_text("id,question\n1,same words\n2,other words here\n3,same words\n")
    assert run_cli(dedup_cli, ["dedup", str(data), "--column", "question", "--detector",
                               str(folder), "--device", "cpu"]) == 0
    out = capsys.readouterr()
    assert out.out.splitlines()[0] == "i,j,score,text_i,text_j"
    assert "same words,same words" in out.out
    with pytest.raises(ValueError, match="no column 'text'"):
        run_cli(dedup_cli, ["dedup", str(data), "--detector", str(folder)])
    with pytest.raises(ValueError, match="--top-k must be 0 or more"):
        run_cli(dedup_cli, ["dedup", str(data), "--detector", str(folder), "--top-k", "-1"])
    with pytest.raises(ValueError, match=r"--threshold must lie in .* got 3.0"):
        run_cli(dedup_cli, ["dedup", str(data), "--threshold", "3"])
    with pytest.raises(FileNotFoundError, match="input file not found"):
        run_cli(dedup_cli, ["dedup", str(tmp_path / "missing.txt")])


def two_intents(tmp_path):
    """A 2-class training file and a 2-line query file: (train, queries)."""
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in [
        ("I lost my card", "card_lost"), ("my card was stolen", "card_lost"),
        ("what is the exchange rate", "exchange_rate"), ("euro to dollar rate", "exchange_rate"),
    ]))
    queries = tmp_path / "q.txt"
    queries.write_text("I lost my card\neuro to dollar rate\n")
    return train, queries


def test_classify_train_predict_save_load(tiny_bert_dir, tmp_path, capsys):
    train, queries = two_intents(tmp_path)
    out, folder = tmp_path / "pred.csv", tmp_path / "clf"
    args = ["classify", "--train", str(train), "--predict", str(queries), "--model",
            str(tiny_bert_dir), "--device", "cpu", "--mode", "knn", "--n-neighbors", "1",
            "--top-k", "2", "-o", str(out), "--save", str(folder)]
    assert run_cli(classify_cli, args) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["text"] for r in rows] == ["I lost my card", "euro to dollar rate"]
    assert [r["id"] for r in rows] == ["0", "1"]
    assert float(rows[0]["similarity"]) == pytest.approx(1.0, abs=1e-4)
    assert len(rows[0]["top_k"].split()) == 2
    assert "fitted 2 classes from 4 examples" in capsys.readouterr().err
    # reload with a rejection threshold above every similarity: all unknown
    args = ["classify", "--load", str(folder), "--predict", str(queries), "--threshold", "1.0",
            "--device", "cpu"]
    assert run_cli(classify_cli, args) == 0
    labels = [line.split(",")[2] for line in capsys.readouterr().out.splitlines()[1:]]
    sims = np.array([float(line.split(",")[3]) for line in out.read_text().splitlines()[1:]])
    assert all(lab == "unknown" for lab, s in zip(labels, sims) if s < 1.0)


def test_classify_logistic_mode(tiny_bert_dir, tmp_path):
    train, queries = two_intents(tmp_path)
    out, folder = tmp_path / "pred.csv", tmp_path / "clf"
    args = ["classify", "--train", str(train), "--predict", str(queries), "--model",
            str(tiny_bert_dir), "--device", "cpu", "--mode", "logistic", "--C", "100",
            "--class-weight", "none", "-o", str(out), "--save", str(folder)]
    assert run_cli(classify_cli, args) == 0
    assert [r["label"] for r in csv.DictReader(out.open())] == ["card_lost", "exchange_rate"]
    loaded = IntentClassifier.load(folder)
    assert loaded.mode == "logistic" and loaded.C_ == 100.0
    assert loaded.class_weight is None and loaded.head_.info["class_weight"] is None


def test_classify_errors(tmp_path):
    txt = tmp_path / "plain.txt"
    txt.write_text("a\nb\n")
    with pytest.raises(ValueError, match="nothing to do"):
        run_cli(classify_cli, ["classify", "--train", str(txt)])
    with pytest.raises(ValueError, match="needs a csv/tsv/jsonl file"):
        run_cli(classify_cli, ["classify", "--train", str(txt), "--predict", str(txt)])
    with pytest.raises(ValueError, match="--threshold must lie"):
        run_cli(classify_cli, ["classify", "--train", str(txt), "--predict", str(txt),
                               "--threshold", "-1.5"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    with pytest.raises(ValueError, match="bad.jsonl:1: not a JSON object"):
        run_cli(classify_cli, ["classify", "--train", str(bad), "--predict", str(txt)])
    with pytest.raises(SystemExit):
        run_cli(classify_cli, ["classify", "--predict", str(txt)])  # --train or --load required


def test_dedup_searches_an_embeddings_file_without_a_model(tiny_model, tmp_path, capsys):
    """Encode once (siamtext encode), search at any threshold: no model is loaded."""
    from siamtext.corpus import encode_file

    texts = tmp_path / "q.txt"
    texts.write_text("I lost my card\nhow do I top up\nI lost my card\nfreeze my card\n")
    for suffix in (".npy", ".safetensors", ".parquet"):
        emb = encode_file(tiny_model, texts, tmp_path / f"q{suffix}", chunk_size=3,
                          show_progress=False)
        out = tmp_path / f"pairs{suffix}.csv"
        assert run_cli(dedup_cli, ["dedup", str(emb), "--threshold", "0.999999", "--texts",
                                   str(texts), "-o", str(out), "--no-progress"]) == 0
        rows = list(csv.DictReader(out.open()))
        assert [(r["i"], r["j"], r["text_i"]) for r in rows] == [("0", "2", "I lost my card")]
    assert "4 texts: 1 duplicate pairs" in capsys.readouterr().err
    bare = tmp_path / "bare.csv"
    assert run_cli(dedup_cli, ["dedup", str(tmp_path / "q.npy"), "--threshold", "0.999999",
                               "-o", str(bare)]) == 0
    assert bare.read_text().splitlines()[0] == "i,j,score"


def test_dedup_refuses_embeddings_of_another_model_or_length(tiny_model, tmp_path):
    folder = DuplicateDetector(tiny_model, threshold=0.9).save(tmp_path / "det")
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.ones((3, 7), dtype=np.float32))
    with pytest.raises(ValueError, match="dimension 7, but the model embeds in 32"):
        run_cli(dedup_cli, ["dedup", str(wrong), "--detector", str(folder)])
    texts = tmp_path / "two.txt"
    texts.write_text("a\nb\n")
    with pytest.raises(ValueError, match="has 2 texts but .* has 3 embeddings"):
        run_cli(dedup_cli, ["dedup", str(wrong), "--texts", str(texts)])
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(ValueError):
        run_cli(dedup_cli, ["dedup", str(tmp_path / "bad.npy")])
