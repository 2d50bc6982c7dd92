import numpy as np

from siamtext.cli import main
from siamtext.demo import (
    load_demo_intents,
    load_demo_questions,
    nearest_neighbour_accuracy,
    run_demo,
    split_per_class,
)


def test_demo_data_ships_with_the_package():
    texts, labels = load_demo_intents()
    assert len(texts) == len(labels) >= 300
    assert len(set(labels)) >= 12
    assert all(isinstance(t, str) and t for t in texts)
    assert len(load_demo_questions()) >= 50


def test_split_per_class_is_stratified_and_disjoint():
    labels = ["a"] * 8 + ["b"] * 4
    train, test = split_per_class([""] * 12, labels, test_share=0.25)
    assert sorted(train + test) == list(range(12))
    assert [labels[i] for i in test].count("a") == 2 and [labels[i] for i in test].count("b") == 1


def test_nearest_neighbour_accuracy_by_hand():
    train = np.array([[1.0, 0.0], [0.0, 1.0]])
    test = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    # nearest: row0 -> x, row1 -> y, row2 -> x; labels x, y, y -> 2 of 3 right
    assert nearest_neighbour_accuracy(train, ["x", "y"], test, ["x", "y", "y"]) == 2 / 3


def test_run_demo_on_tiny_model(tiny_model):
    lines: list[str] = []
    figures = run_demo(tiny_model, print_fn=lines.append)
    assert 0.0 <= figures["accuracy"] <= 1.0 and len(figures["pair_scores"]) == 4
    assert any("Nearest-neighbour intent accuracy" in line for line in lines)


def test_cli_demo(tiny_bert_dir, capsys):
    assert main(["demo", "--model", str(tiny_bert_dir), "--device", "cpu"]) == 0
    assert "Nearest-neighbour intent accuracy" in capsys.readouterr().out


def test_cli_reports_a_missing_model_cleanly(tmp_path, capsys):
    assert main(["demo", "--model", str(tmp_path / "nope"), "--device", "cpu"]) == 2
    assert "siamtext demo: error: could not load model" in capsys.readouterr().err
