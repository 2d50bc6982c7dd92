"""``siamtext distill TEACHER CORPUS -o STUDENT``, end to end on the tiny tower."""

from __future__ import annotations

import csv

import pytest
import torch

from siamtext import SiamText
from siamtext.cli import main
from siamtext.cli.distill import parse_eval_size, parse_layers


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory, corpus):
    from siamtext.testing import tiny_bert

    return tiny_bert(tmp_path_factory.mktemp("teacher"), corpus, num_layers=4)


def test_txt_corpus_end_to_end(teacher_dir, corpus, tmp_path, capsys):
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(corpus[:100]) + "\n", encoding="utf-8")
    out = tmp_path / "student"
    code = main(["distill", str(teacher_dir), str(path), "-o", str(out), "--layers", "2",
                 "--epochs", "1", "--batch-size", "16", "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "Distilled 4 -> 2 layers [0, 3] on 90 texts" in printed
    assert "held-out teacher-student cosine" in printed and f"Saved to {out}" in printed
    student = SiamText(out, device="cpu")
    assert student.transformer.config.num_hidden_layers == 2
    assert student.card_data.training["distillation"]["held_out"] == 10
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["checkpoint-6"]
    teacher = SiamText(teacher_dir, device="cpu")
    layer = student.transformer.encoder.layer[1].state_dict()
    assert not all(torch.equal(v, teacher.transformer.encoder.layer[3].state_dict()[k])
                   for k, v in layer.items())  # trained from the teacher's layer 3


def test_csv_column_indices_and_count(teacher_dir, corpus, tmp_path, capsys):
    path = tmp_path / "corpus.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "question"])
        writer.writerows([i, t] for i, t in enumerate(corpus[:200]))
    out = tmp_path / "student"
    code = main(["distill", str(teacher_dir), str(path), "-o", str(out), "--layers", "1,2",
                 "--column", "question", "--max-texts", "50", "--eval-size", "5",
                 "--epochs", "1", "--loss", "cosine", "--no-progress"])
    assert code == 0
    assert "on 45 texts" in capsys.readouterr().out
    info = SiamText(out, device="cpu").card_data.training["distillation"]
    assert info["layers"] == [1, 2] and info["held_out"] == 5 and info["loss"] == "cosine"


@pytest.mark.parametrize(("options", "message"), [
    (["--layers", "9"], "layers=9: the teacher has 4 layers"),
    (["--layers", "1,1"], "given more than once"),
    (["--layers", "1,x"], "--layers must be a count (3) or comma-separated"),
    (["--eval-size", "half"], "--eval-size must be a share"),
    (["--max-texts", "5"], "texts: 5 distinct texts are too few"),
    (["--column", "nope"], "has no column 'nope'"),
])
def test_bad_options(teacher_dir, corpus, tmp_path, capsys, options, message):
    path = tmp_path / "corpus.csv"
    path.write_text("text\n" + "\n".join(t.replace(",", " ") for t in corpus[:40]) + "\n",
                    encoding="utf-8")
    code = main(["distill", str(teacher_dir), str(path), "-o", str(tmp_path / "s"), *options])
    assert code == 2
    err = capsys.readouterr().err
    assert "siamtext distill: error: " in err and message in err
    assert not (tmp_path / "s").exists()


def test_parsers():
    assert parse_layers("3") == 3 and parse_layers("0, 2,5") == [0, 2, 5]
    assert parse_eval_size("0.2") == 0.2 and parse_eval_size("100") == 100


def test_dims(teacher_dir, corpus, tmp_path, capsys):
    from siamtext.training.projection import ProjectedSiamText

    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(corpus[:60]) + "\n", encoding="utf-8")
    out = tmp_path / "narrow"
    code = main(["distill", str(teacher_dir), str(path), "-o", str(out), "--layers", "1",
                 "--dims", "6", "--epochs", "1", "--no-progress"])
    assert code == 0
    assert "; 6 dimensions" in capsys.readouterr().out
    assert ProjectedSiamText(out, device="cpu").encode(["card lost"]).shape == (1, 6)
    code = main(["distill", str(teacher_dir), str(path), "-o", str(out), "--dims", "6",
                 "--resume", str(out / "checkpoints" / "checkpoint-2")])
    assert code == 2 and "resume_from_checkpoint" in capsys.readouterr().err
