"""``siamtext train`` and ``siamtext evaluate`` on the tiny model and small local files."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import pytest

from siamtext.cli import evaluate as evaluate_cli
from siamtext.cli import train as train_cli
from siamtext.cli.train import parse_pairs


def run_cli(module, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="siamtext")
    sub = parser.add_subparsers(dest="command", required=True)
    module.add_parser(sub)
    return module.run(parser.parse_args(argv))


def write_csv(path: Path, rows: list[dict], delimiter: str = ",") -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


INTENTS = [{"utterance": t, "intent": y} for y, ts in {
    "weather": ["will it rain", "is it sunny today", "weather tomorrow", "how cold is it"],
    "music": ["play a song", "put on some jazz", "next track please", "turn the music up"],
}.items() for t in ts]


def test_train_builds_rows_renames_columns_and_saves(tiny_bert_dir, tmp_path, capsys) -> None:
    data = write_csv(tmp_path / "intents.tsv", INTENTS, delimiter="\t")
    out = tmp_path / "model"
    code = run_cli(train_cli, [
        "train", str(data), "--model", str(tiny_bert_dir), "--device", "cpu",
        "--output-dir", str(out), "--loss", "BatchHardTripletLoss", "--loss-param", "margin=0.2",
        "--column", "text=utterance", "--column", "label=intent", "--batch-size", "4",
        "--samples-per-class", "2", "--epochs", "1", "--no-progress",
        "--gradient-checkpointing"])
    assert code == 0
    assert (out / "model.safetensors").is_file() and (out / "siamtext_config.json").is_file()
    assert any((out / "checkpoints").glob("checkpoint-*"))
    printed = capsys.readouterr().out
    assert "Trained BatchHardTripletLoss on 8 rows" in printed


def test_train_with_build_anchor_positives_jsonl(tiny_bert_dir, tmp_path) -> None:
    data = tmp_path / "intents.jsonl"
    data.write_text("".join(json.dumps({"text": r["utterance"], "label": r["intent"]}) + "\n"
                            for r in INTENTS))
    code = run_cli(train_cli, [
        "train", str(data), "--model", str(tiny_bert_dir), "--device", "cpu",
        "--output-dir", str(tmp_path / "m"), "--build", "anchor-positives",
        "--batch-size", "2", "--no-progress", "--max-rows", "6"])
    assert code == 0


def test_train_errors(tiny_bert_dir, tmp_path) -> None:
    bad = tmp_path / "data.xml"
    bad.write_text("<x/>")
    base = ["train", "--model", str(tiny_bert_dir), "--device", "cpu", "--output-dir",
            str(tmp_path / "m")]
    with pytest.raises(ValueError, match=r"unsupported file type '.xml'"):
        run_cli(train_cli, base + [str(bad)])
    data = write_csv(tmp_path / "pairs.csv", [{"sentence1": "a", "sentence2": "b", "label": 3}])
    with pytest.raises(ValueError, match=r"must be 0 or 1 .*\[3\]"):
        run_cli(train_cli, base + [str(data), "--loss", "ContrastiveLoss"])
    with pytest.raises(ValueError, match="--column must look like key=value"):
        parse_pairs(["sentence1"], "--column")
    assert parse_pairs(["margin=0.5", "distance=cosine"], "x") == {"margin": 0.5,
                                                                    "distance": "cosine"}


def test_evaluate_sts_pairs_and_intent(tiny_bert_dir, tmp_path, capsys) -> None:
    sts = write_csv(tmp_path / "sts.csv", [
        {"sentence1": "a cat sits", "sentence2": "a cat sits", "score": 5},
        {"sentence1": "a dog runs", "sentence2": "a bird flies", "score": 2},
        {"sentence1": "the bank", "sentence2": "rain today", "score": 0}])
    common = ["--model", str(tiny_bert_dir), "--device", "cpu"]
    assert run_cli(evaluate_cli, ["evaluate", "sts", str(sts), "--json", *common]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert set(metrics) == {"sts_spearman", "sts_pearson"}

    pairs = write_csv(tmp_path / "pairs.csv", [
        {"q1": "a", "q2": "a", "dup": 1}, {"q1": "a", "q2": "b c d", "dup": 0}])
    cols = ["--column", "sentence1=q1", "--column", "sentence2=q2", "--column", "label=dup"]
    assert run_cli(evaluate_cli, ["evaluate", "pairs", str(pairs), "--fit-data", str(pairs),
                                  *cols, *common]) == 0
    assert "pairs_average_precision" in capsys.readouterr().out
    with pytest.raises(ValueError, match="pairs needs --fit-data"):
        run_cli(evaluate_cli, ["evaluate", "pairs", str(pairs), *cols, *common])

    intents = write_csv(tmp_path / "intents.csv", INTENTS)
    cols = ["--column", "text=utterance", "--column", "label=intent"]
    assert run_cli(evaluate_cli, ["evaluate", "intent", str(intents), "--train-data",
                                  str(intents), *cols, *common]) == 0
    assert "intent_knn_accuracy: 100.0000" in capsys.readouterr().out
    with pytest.raises(ValueError, match=r"missing column\(s\) \['text', 'label'\]"):
        run_cli(evaluate_cli, ["evaluate", "intent", str(intents), "--train-data",
                               str(intents), *common])


def test_train_resume_latest_starts_afresh_with_a_note_then_resumes(tiny_bert_dir, tmp_path,
                                                                    capsys) -> None:
    data = write_csv(tmp_path / "intents.csv", INTENTS)
    argv = ["train", str(data), "--model", str(tiny_bert_dir), "--device", "cpu",
            "--output-dir", str(tmp_path / "m"), "--loss", "BatchHardTripletLoss",
            "--batch-size", "4", "--samples-per-class", "2", "--checkpoint-steps", "1",
            "--column", "text=utterance", "--column", "label=intent",
            "--no-progress", "--resume", "latest", "--nan-policy", "skip"]
    assert run_cli(train_cli, argv) == 0
    assert "No complete checkpoint" in capsys.readouterr().err
    assert run_cli(train_cli, argv) == 0  # resumes from the last checkpoint: no note
    assert "No complete checkpoint" not in capsys.readouterr().err
