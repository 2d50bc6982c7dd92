"""The GPU path: mixed precision by default, fused AdamW, pinned batches, and a loss that
never waits for the device. Marked ``gpu``; they skip on a machine without CUDA (run them
with ``pytest -m gpu`` where one is present, e.g. ``benchmarks/gpu_check.sh``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from siamtext import SiamText, losses
from siamtext.training import SiamTextTrainer, TrainingArguments

from .toys import toy_rows

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def _trainer(tiny_bert_dir: Path, tmp_path: Path) -> SiamTextTrainer:
    model = SiamText(tiny_bert_dir, device="cuda")
    texts, labels = toy_rows()
    # toy_rows has 2 classes: batches of 2 classes x 2 rows for the class-balanced sampler
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4,
                             max_steps=2, disable_tqdm=True)
    return SiamTextTrainer(model, args, {"text": texts, "label": labels},
                           losses.SupervisedContrastiveLoss(model))


def test_mixed_precision_is_on_by_default(tmp_path: Path) -> None:
    args = TrainingArguments(output_dir=str(tmp_path))
    assert args.bf16 == torch.cuda.is_bf16_supported()
    assert args.fp16 == (not torch.cuda.is_bf16_supported())  # fp16 comes with loss scaling


def test_fused_adamw_and_pinned_non_blocking_batches(tiny_bert_dir: Path, tmp_path: Path) -> None:
    trainer = _trainer(tiny_bert_dir, tmp_path)
    trainer.create_optimizer()
    assert trainer.optimizer.defaults.get("fused") is True
    loader = trainer.get_train_dataloader()
    assert loader.pin_memory
    batch = next(iter(loader))
    assert batch["features"][0]["input_ids"].is_cuda
    trainer.train()


@pytest.mark.parametrize("name", ["MultipleNegativesRankingLoss", "SupervisedContrastiveLoss",
                                  "BatchHardTripletLoss", "CoSENTLoss"])
def test_a_loss_step_never_synchronises(name: str, tiny_bert_dir: Path) -> None:
    model = SiamText(tiny_bert_dir, device="cuda")
    model.train()
    loss = getattr(losses, name)(model)
    texts, labels = toy_rows()
    columns = 1 if loss.input_format == "labelled" else 2
    features = [model.tokenize(texts[i:16 + i]) for i in range(columns)]
    ids = torch.tensor([hash(x) % 4 for x in labels[:16]], device="cuda")
    target = ids.float() if loss.input_format == "pair_score" else (
        ids if loss.input_format == "labelled" else None)
    # the loss alone: the transformer's own kernels are not ours to judge
    embeddings = [e.detach().requires_grad_() for e in loss.embed(features)]
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        loss.compute_loss_from_embeddings(embeddings, target).backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
