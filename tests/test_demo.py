from siamtext.cli import main
from siamtext.demo import (
    load_demo_intents,
    load_demo_question_groups,
    load_demo_questions,
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


def test_run_demo_on_tiny_model(tiny_bert_dir):
    from siamtext import SiamText

    model = SiamText(tiny_bert_dir, device="cpu")  # fine-tuning changes it: not the shared one
    lines: list[str] = []
    figures = run_demo(model, print_fn=lines.append)
    assert len(figures["pair_scores"]) == 4
    for key in ("accuracy_before", "accuracy_after"):
        assert all(0.0 <= value <= 100.0 for value in figures[key])
    assert any("zero-shot: 1-NN" in line for line in lines)
    assert any("fine-tuned: 1-NN" in line for line in lines)
    assert 0.0 <= figures["duplicate_precision"] <= 1.0
    assert len(figures["new_intent_predictions"]) == 3
    assert any("New intent 'exchange_rate' added from 2 examples" in line for line in lines)


def test_demo_question_groups_are_valid_line_indices():
    groups = load_demo_question_groups()
    n = len(load_demo_questions())
    flat = [i for group in groups for i in group]
    assert len(flat) == len(set(flat)) and all(0 <= i < n for i in flat)
    assert all(len(group) >= 2 for group in groups)


def test_cli_demo(tiny_bert_dir, capsys):
    assert main(["demo", "--model", str(tiny_bert_dir), "--device", "cpu", "--no-fine-tune"]) == 0
    assert "Intent accuracy, zero-shot" in capsys.readouterr().out


def test_cli_reports_a_missing_model_cleanly(tmp_path, capsys):
    assert main(["demo", "--model", str(tmp_path / "nope"), "--device", "cpu"]) == 2
    assert "siamtext demo: error: could not load model" in capsys.readouterr().err
