"""siamtext.plot and the estimators' plot methods: each figure renders to a PNG of the
expected pixel size with Agg, and what it draws matches hand-computed values."""

from __future__ import annotations

import argparse
import ast
import csv
import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

from siamtext import plot  # noqa: E402
from siamtext.classify import DuplicateDetector, IntentClassifier, ThresholdClassifier  # noqa: E402
from siamtext.cli import evaluate as evaluate_cli  # noqa: E402

SCORES = [0.1, 0.3, 0.4, 0.6, 0.7, 0.9]
LABELS = [0, 0, 1, 0, 1, 1]


def png_size(fig, path: Path) -> tuple[int, int]:
    """Save ``fig`` and read width and height from the PNG header (bytes 16-24)."""
    fig.savefig(path)
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def by_gid(ax, gid: str):
    (line,) = [x for x in ax.get_lines() if x.get_gid() == gid]
    return line


def hide_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("matplotlib", "matplotlib.figure"):
        monkeypatch.setitem(sys.modules, name, None)


# ---------------------------------------------------------------------- pair decisions
def test_threshold_figure_draws_the_threshold_and_its_operating_point(tmp_path: Path) -> None:
    fig = plot.threshold_figure(SCORES, LABELS, 0.5, bins=4, figsize=(8, 3), dpi=50)
    assert png_size(fig, tmp_path / "t.png") == (400, 150)
    hist, pr = fig.axes
    assert list(by_gid(hist, "threshold").get_xdata()) == [0.5, 0.5]
    # 0.6 (label 0), 0.7 and 0.9 (label 1) are at or above 0.5: tp 2, fp 1, fn 1
    point = by_gid(pr, "operating_point")
    assert point.get_xdata()[0] == pytest.approx(2 / 3)  # recall
    assert point.get_ydata()[0] == pytest.approx(2 / 3)  # precision
    heights = [sum(p.get_height() for p in c) for c in hist.containers]
    assert heights == [3, 3]  # negatives, positives
    assert "same (n=3)" in [t.get_text() for t in hist.get_legend().get_texts()]


def test_threshold_figure_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="labels must hold both classes"):
        plot.threshold_figure(SCORES, [1] * 6, 0.5)
    with pytest.raises(ValueError, match="same length"):
        plot.threshold_figure(SCORES, [0, 1], 0.5)
    with pytest.raises(ValueError, match="labels must hold both classes"):
        plot.threshold_figure(SCORES, [0, 0, 2, 0, 2, 2], 0.5, classes=(0, 1))
    with pytest.raises(ValueError, match="threshold must be a finite number"):
        plot.threshold_figure(SCORES, LABELS, float("nan"))
    with pytest.raises(ValueError, match="NaN"):
        plot.threshold_figure([0.1, float("nan")], [0, 1], 0.5)


def test_threshold_classifier_plot(tmp_path: Path) -> None:
    clf = ThresholdClassifier().fit([0.1, 0.4, 0.8, 0.9], ["diff", "diff", "same", "same"])
    held_out = [0.1, 0.3, 0.4, 0.65, 0.7, 0.9]
    fig = clf.plot(held_out, ["diff", "diff", "same", "diff", "same", "same"], dpi=40)
    assert png_size(fig, tmp_path / "c.png") == (400, 160)
    assert by_gid(fig.axes[0], "threshold").get_xdata()[0] == clf.threshold_  # 0.6
    # held-out: 0.65 (diff), 0.7 and 0.9 (same) at or above 0.6
    assert by_gid(fig.axes[1], "operating_point").get_ydata()[0] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="y must hold both classes"):
        clf.plot(SCORES, [0, 0, 1, 0, 1, 1])
    with pytest.raises(NotFittedError):
        ThresholdClassifier().plot(SCORES, LABELS)


def test_duplicate_detector_plot(tiny_model, tmp_path: Path) -> None:
    pairs = [("play a song", "play a song"), ("will it rain", "put on some jazz"),
             ("next track please", "next track"), ("how cold is it", "turn the music up")]
    det = DuplicateDetector(tiny_model, threshold=0.5)
    fig = det.plot(pairs, [1, 0, 1, 0], figsize=(6, 3))
    assert png_size(fig, tmp_path / "d.png") == (600, 300)
    assert by_gid(fig.axes[0], "threshold").get_xdata()[0] == 0.5
    with pytest.raises(NotFittedError, match="no threshold"):
        DuplicateDetector(tiny_model).plot(pairs, [1, 0, 1, 0])
    with pytest.raises(ValueError, match="labels must hold both classes"):
        det.plot(pairs, [1, 1, 1, 1])


def test_sts_figure(tmp_path: Path) -> None:
    fig = plot.sts_figure([0.9, 0.5, 0.1], [5.0, 2.0, 0.0], figsize=(4, 4), dpi=50)
    assert png_size(fig, tmp_path / "s.png") == (200, 200)
    (ax,) = fig.axes
    assert ax.collections[0].get_offsets().tolist() == [[5.0, 0.9], [2.0, 0.5], [0.0, 0.1]]
    assert "Spearman 100.0" in ax.get_title()


# ---------------------------------------------------------------------- intents
def test_confusion_pairs_counts_directions_apart() -> None:
    gold = ["a", "a", "a", "b", "c", "c", "b"]
    pred = ["a", "b", "b", "a", "b", "c", "b"]
    pairs, counts = plot.confusion_pairs(gold, pred)
    assert pairs == [("a", "b"), ("b", "a"), ("c", "b")]  # ties by label text
    assert counts.tolist() == [2, 1, 1]


def intent_classifier() -> IntentClassifier:
    eye = np.eye(3, dtype=np.float32)
    return IntentClassifier().fit(eye, ["a", "b", "c"])


def test_intent_plot_confusions(tmp_path: Path) -> None:
    clf = intent_classifier()
    # rows predicted as the class of their largest coordinate
    x = np.array([[1, 0, 0], [0, 1, 0], [0, 1, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    gold = ["a", "a", "a", "b", "c", "c"]  # a->b twice, b->a once, c->b once
    fig = clf.plot_confusions(x, gold, figsize=(5, 3), dpi=40)
    assert png_size(fig, tmp_path / "i.png") == (200, 120)
    (ax,) = fig.axes
    bars = ax.containers[0]
    assert [b.get_width() for b in bars] == [2, 1, 1]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a \u2192 b", "b \u2192 a",
                                                             "c \u2192 b"]
    assert ax.yaxis_inverted()  # the most confused pair on top
    (ax,) = clf.plot_confusions(x, gold, top=1).axes
    assert [b.get_width() for b in ax.containers[0]] == [2]
    assert "1 of 3 pairs, 2 of 4 errors" in ax.get_title()
    with pytest.raises(ValueError, match="top must be a positive integer"):
        clf.plot_confusions(x, gold, top=0)
    with pytest.raises(NotFittedError):
        IntentClassifier().plot_confusions(x, gold)


def test_confusion_figure_without_confusions(tmp_path: Path) -> None:
    fig = plot.confusion_pairs_figure([], [], dpi=50)
    assert png_size(fig, tmp_path / "n.png") == (350, 125)  # default 7 x 2.5 inches
    assert "no confusions" in [t.get_text() for t in fig.axes[0].texts]


# ---------------------------------------------------------------------- benchmark figure
def test_accuracy_by_shots_figure(tmp_path: Path) -> None:
    results = {"siamtext": {"1": [50.0, 60.0], "8": 80.0, "2": [62.0, 64.0]},
               "peer": {1: 40.0, 2: 50.0, 8: 70.0}}
    fig = plot.accuracy_by_shots_figure(results, dpi=50)
    assert png_size(fig, tmp_path / "a.png") == (300, 200)
    (ax,) = fig.axes
    lines = {x.get_label(): x for x in ax.get_lines()}
    assert list(lines["siamtext"].get_xdata()) == [1, 2, 8]
    assert list(lines["siamtext"].get_ydata()) == [55.0, 63.0, 80.0]  # means of the seeds
    assert list(lines["peer"].get_ydata()) == [40.0, 50.0, 70.0]
    assert len(ax.collections) == 1  # one min-max band: only siamtext has seeds
    with pytest.raises(ValueError, match="results must be a non-empty"):
        plot.accuracy_by_shots_figure({})


# ---------------------------------------------------------------------- training
def write_state(folder: Path, step: int, history: list[dict]) -> None:
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text(json.dumps(
        {"global_step": step, "log_history": history}), encoding="utf-8")


def test_training_curves_from_the_latest_checkpoint(tmp_path: Path) -> None:
    history = [{"loss": 1.0 - 0.1 * s, "learning_rate": 1e-5, "step": s} for s in (1, 2, 3, 4)]
    history += [{"eval_loss": 0.8, "eval_sts_spearman": 40.0, "eval_runtime": 0.1, "step": 2},
                {"eval_loss": 0.7, "eval_sts_spearman": 55.0, "eval_runtime": 0.1, "step": 4}]
    write_state(tmp_path / "checkpoint-2", 2, history[:2])
    write_state(tmp_path / "checkpoint-4", 4, history)
    assert plot.find_trainer_state(tmp_path) == tmp_path / "checkpoint-4" / "trainer_state.json"
    fig = plot.training_curves(tmp_path, figsize=(6, 3), dpi=50)
    assert png_size(fig, tmp_path / "curves.png") == (300, 150)
    loss, metrics = fig.axes
    assert [x.get_label() for x in loss.get_lines()] == ["train loss", "eval_loss"]
    assert list(loss.get_lines()[0].get_xdata()) == [1, 2, 3, 4]
    (spearman,) = metrics.get_lines()
    assert spearman.get_label() == "eval_sts_spearman"
    assert list(spearman.get_ydata()) == [40.0, 55.0]

    write_state(tmp_path / "empty", 1, [{"train_runtime": 1.0, "step": 1}])
    with pytest.raises(ValueError, match="logs no loss"):
        plot.training_curves(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no trainer_state.json"):
        plot.training_curves(tmp_path / "missing")


def test_training_curves_of_a_real_two_step_run(tiny_bert_dir: Path, tmp_path: Path) -> None:
    from siamtext import SiamText, STSEvaluator

    model = SiamText(tiny_bert_dir, device="cpu")
    data = {"anchor": ["play a song", "will it rain", "next track", "how cold is it"],
            "positive": ["put on music", "is it sunny", "skip this song", "weather today"]}
    evaluator = STSEvaluator(["a cat", "a dog", "rain"], ["a cat", "a bird", "jazz"],
                             [5.0, 2.0, 0.0])
    model.fit(data, batch_size=2, output_dir=str(tmp_path / "run"), evaluator=evaluator,
              eval_steps=1, logging_steps=1, show_progress=False)
    fig = plot.training_curves(tmp_path / "run", dpi=30)
    assert png_size(fig, tmp_path / "run.png") == (300, 120)
    loss, metrics = fig.axes
    assert list(loss.get_lines()[0].get_xdata()) == [1, 2]
    assert {x.get_label() for x in metrics.get_lines()} == {"eval_sts_spearman",
                                                            "eval_sts_pearson"}


# ---------------------------------------------------------------------- without matplotlib
def test_missing_matplotlib_names_the_extra_and_changes_nothing(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clf = ThresholdClassifier().fit([0.1, 0.4, 0.8, 0.9], [0, 0, 1, 1])
    before = dict(vars(clf))
    intents = intent_classifier()
    examples = intents.examples_.clone()
    hide_matplotlib(monkeypatch)
    with pytest.raises(ImportError, match=r"pip install 'siamtext\[plot\]'"):
        clf.plot(SCORES, LABELS)
    assert vars(clf) == before
    with pytest.raises(ImportError, match=r"plot_confusions\(\) needs matplotlib"):
        intents.plot_confusions(np.eye(3, dtype=np.float32), ["a", "b", "c"])
    assert (intents.examples_ == examples).all() and not hasattr(intents, "threshold_")
    with pytest.raises(ImportError, match=r"siamtext\[plot\]"):
        DuplicateDetector(threshold=0.5).plot([("a", "b")], [1])  # before any encoding
    for call in (lambda: plot.threshold_figure(SCORES, LABELS, 0.5),
                 lambda: plot.training_curves(tmp_path),
                 lambda: plot.accuracy_by_shots_figure({"m": {1: 1.0}})):
        with pytest.raises(ImportError, match=r"siamtext\[plot\]"):
            call()


def test_import_siamtext_does_not_import_plot() -> None:
    """No module of the package imports siamtext.plot (or matplotlib) at module level."""
    root = Path(plot.__file__).parent
    for path in root.rglob("*.py"):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            bad = [n for n in names if n in ("siamtext.plot", "matplotlib")
                   or n.startswith("matplotlib.")]
            assert not bad, f"{path.relative_to(root)} imports {bad} at module level"


# ---------------------------------------------------------------------- CLI
def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="siamtext")
    evaluate_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    return evaluate_cli.run(parser.parse_args(argv))


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_cli_evaluate_plot(tiny_bert_dir: Path, tmp_path: Path, capsys,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    common = ["--model", str(tiny_bert_dir), "--device", "cpu"]
    sts = write_csv(tmp_path / "sts.csv", [
        {"sentence1": "a cat sits", "sentence2": "a cat sits", "score": 5},
        {"sentence1": "a dog runs", "sentence2": "a bird flies", "score": 2},
        {"sentence1": "the bank", "sentence2": "rain today", "score": 0}])
    out = tmp_path / "sts.png"
    assert run_cli(["evaluate", "sts", str(sts), "--plot", str(out), *common]) == 0
    assert f"figure written to {out}" in capsys.readouterr().err
    assert struct.unpack(">II", out.read_bytes()[16:24]) == (500, 500)

    pairs = write_csv(tmp_path / "pairs.csv", [
        {"sentence1": "a", "sentence2": "a", "label": 1},
        {"sentence1": "a", "sentence2": "b c d", "label": 0}])
    out = tmp_path / "pairs.png"
    assert run_cli(["evaluate", "pairs", str(pairs), "--fit-data", str(pairs),
                    "--plot", str(out), *common]) == 0
    assert struct.unpack(">II", out.read_bytes()[16:24]) == (1000, 400)

    intents = write_csv(tmp_path / "intents.csv", [
        {"text": t, "label": y} for y, ts in {
            "weather": ["will it rain", "is it sunny today", "how cold is it"],
            "music": ["play a song", "put on some jazz", "next track please"]}.items()
        for t in ts])
    out = tmp_path / "intent.png"
    assert run_cli(["evaluate", "intent", str(intents), "--train-data", str(intents),
                    "--plot", str(out), *common]) == 0
    assert struct.unpack(">II", out.read_bytes()[16:24])[0] == 700

    with pytest.raises(ValueError, match="--plot: folder .* does not exist"):
        run_cli(["evaluate", "sts", str(sts), "--plot", str(tmp_path / "no" / "x.png"),
                 *common])
    capsys.readouterr()
    hide_matplotlib(monkeypatch)
    # through the command's entry point, as a user runs it: one line naming the extra
    from siamtext.cli import main

    assert main(["evaluate", "sts", str(tmp_path / "not-loaded.csv"), "--plot",
                 str(tmp_path / "x.png"), *common]) == 2
    assert "pip install 'siamtext[plot]'" in capsys.readouterr().err
