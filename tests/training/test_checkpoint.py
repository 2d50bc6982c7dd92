"""Checkpoints: each is a loadable SiamText folder, resume is exact, the best one is kept."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch

from siamtext import SiamText
from siamtext.training import fit, latest_checkpoint

from .toys import ToyLabelledLoss, ToyPairLoss, toy_rows


def _pairs() -> dict[str, list]:
    texts, labels = toy_rows()
    n = len(texts)
    s1 = [texts[i] for i in range(n)]
    s2 = [texts[(i + 3) % n] for i in range(n)]
    y = [int(labels[i] == labels[(i + 3) % n]) for i in range(n)]
    return {"q1": s1, "q2": s2, "dup": y}


def test_checkpoint_and_resume_give_the_same_weights(tiny_bert_dir: Path, tmp_path: Path) -> None:
    data = _pairs()
    columns = {"sentence1": "q1", "sentence2": "q2", "label": "dup"}
    common = dict(epochs=2, batch_size=8, learning_rate=1e-3, columns=columns,
                  show_progress=False, save_steps=3, save_strategy="steps", seed=7)

    full = SiamText(tiny_bert_dir, device="cpu")
    fit(full, data, ToyPairLoss(full), output_dir=str(tmp_path / "full"), **common)
    checkpoints = sorted(p.name for p in (tmp_path / "full").glob("checkpoint-*"))
    assert "checkpoint-3" in checkpoints
    # a checkpoint is a loadable SiamText folder
    reloaded = SiamText(tmp_path / "full" / "checkpoint-3", device="cpu")
    assert reloaded.embedding_dim == full.embedding_dim

    resumed = SiamText(tiny_bert_dir, device="cpu")
    fit(resumed, data, ToyPairLoss(resumed), output_dir=str(tmp_path / "resumed"),
        resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-3"), **common)
    for (name, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items(),
                                 strict=True):
        assert torch.equal(a, b), f"weights differ at {name}"  # bitwise on CPU
    assert not [p for p in (tmp_path / "full").iterdir() if p.name.startswith(".")]

    fresh = SiamText(tiny_bert_dir, device="cpu")
    assert not torch.equal(fresh.transformer.embeddings.word_embeddings.weight,
                           full.transformer.embeddings.word_embeddings.weight)


def test_best_checkpoint_is_kept_by_metric(tiny_bert_dir: Path, tmp_path: Path) -> None:
    model = SiamText(tiny_bert_dir, device="cpu")
    texts, labels = toy_rows()
    scores = iter([1.0, 5.0, 2.0, 0.0, 0.0])
    fit(model, {"text": texts, "label": labels}, ToyLabelledLoss(model),
        evaluator=lambda m: {"score": next(scores)}, epochs=3, batch_size=8,
        learning_rate=1e-3, output_dir=str(tmp_path), metric_for_best_model="eval_score",
        show_progress=False)
    assert model.card_data.eval_metrics["eval_score"] == 0.0  # final evaluation ran
    state = (tmp_path / "checkpoint-10" / "trainer_state.json").read_text()
    assert '"best_metric": 5.0' in state


def test_latest_checkpoint_skips_incomplete_ones(tiny_bert_dir: Path, tmp_path: Path,
                                                 caplog) -> None:
    model = SiamText(tiny_bert_dir, device="cpu")
    texts, labels = toy_rows()
    fit(model, {"text": texts, "label": labels}, ToyLabelledLoss(model), batch_size=8,
        output_dir=str(tmp_path), save_strategy="steps", save_steps=2, show_progress=False)
    assert latest_checkpoint(tmp_path) == str(tmp_path / "checkpoint-5")
    (tmp_path / "checkpoint-5" / "optimizer.pt").unlink()
    shutil.copytree(tmp_path / "checkpoint-4", tmp_path / "checkpoint-9")
    weights = tmp_path / "checkpoint-9" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # a half-written file, as from old runs
    (tmp_path / ".checkpoint-12.partial").mkdir()  # staging folders never count
    with caplog.at_level(logging.WARNING):
        assert latest_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")
    assert "checkpoint-9: model.safetensors is missing or truncated" in caplog.text
    assert "checkpoint-5: optimizer.pt is missing" in caplog.text
    assert latest_checkpoint(tmp_path / "nowhere") is None

    again = SiamText(tiny_bert_dir, device="cpu")
    with pytest.raises(ValueError, match=r"checkpoint-5' cannot be resumed from: optimizer.pt"):
        fit(again, {"text": texts, "label": labels}, ToyLabelledLoss(again), batch_size=8,
            output_dir=str(tmp_path), show_progress=False,
            resume_from_checkpoint=str(tmp_path / "checkpoint-5"))


def test_resume_latest_without_a_checkpoint_starts_afresh(tiny_bert_dir: Path, tmp_path: Path,
                                                         caplog) -> None:
    texts, labels = toy_rows()
    runs = []
    for resume in (None, True):
        model = SiamText(tiny_bert_dir, device="cpu")
        with caplog.at_level(logging.WARNING):
            fit(model, {"text": texts, "label": labels}, ToyLabelledLoss(model), batch_size=8,
                output_dir=str(tmp_path / str(resume)), show_progress=False, seed=5,
                resume_from_checkpoint=resume)
        runs.append(model.state_dict())
    assert "No complete checkpoint" in caplog.text
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
