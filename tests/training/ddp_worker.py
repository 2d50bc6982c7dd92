"""One process of the data-parallel tests, started by ``torchrun`` (or by hand, with RANK,
WORLD_SIZE, MASTER_ADDR and MASTER_PORT set) from ``test_data_parallel.py``.

Usage: ``python -m torch.distributed.run --nproc_per_node 2 ddp_worker.py SCENARIO CONFIG``,
CONFIG being a JSON file. Results go to the config's ``out`` folder.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import transformers
from safetensors.torch import save_file
from torch.nn.parallel import DistributedDataParallel

from siamtext import SiamText
from siamtext.distributed import gather_batch
from siamtext.losses.in_batch import multiple_negatives_ranking_loss
from siamtext.training import SiamTextTrainer, TrainingArguments, fit, make_loss
from siamtext.training.trainer import _freeze_unused

sys.path.insert(0, str(Path(__file__).parent))
from ddp_cases import LOSS_FACTORIES, ROWS, gradients, train_rows  # noqa: E402


def losses(cfg: dict, out: Path) -> None:
    """Gradients of every gathered loss through DDP, anchors kept with their positives, and
    save_pretrained on rank 0 only."""
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    model = SiamText(cfg["model"], device="cpu")
    model.train()
    _freeze_unused(model)
    ddp = DistributedDataParallel(model)
    values = {}
    for case, factory in LOSS_FACTORIES.items():
        loss = factory(model)
        loss.model = ddp  # embed through DDP, as the trainer does
        values[case], grads = gradients(model, loss, case, world, rank)
        save_file(grads, str(out / f"{case}-rank{rank}.safetensors"))

    # one-hot rows: anchor i and positive i are similar to each other only
    eye = torch.eye(ROWS)
    mine = slice(rank * ROWS // world, (rank + 1) * ROWS // world)
    anchors = eye[mine].clone().requires_grad_()
    (gathered_a, gathered_p), _ = gather_batch([anchors, eye[mine].clone()], None)
    values["one_hot_alignment"] = float(multiple_negatives_ranking_loss(
        gathered_a, gathered_p, scale=20.0))
    values["gathered_rows"] = gathered_a.shape[0]

    try:  # rank 0 brings 3 rows, rank 1 brings 4: refused on every rank, nothing hangs
        gather_batch([torch.zeros(3 + rank, 2, requires_grad=True)], None)
    except ValueError as err:
        values["unequal_rows_error"] = str(err)

    model.save_pretrained(out / f"saved-rank{rank}")  # only rank 0 writes
    (out / f"values-rank{rank}.json").write_text(json.dumps(values))
    dist.barrier()  # both ranks are done before either leaves


def _log_writes(out: Path) -> None:
    """Record which rank writes model weights (every save goes through this method)."""
    original = transformers.PreTrainedModel.save_pretrained

    def logged(self, folder, *args, **kwargs):
        with open(out / f"writes-rank{os.environ['RANK']}.txt", "a", encoding="utf-8") as f:
            f.write(f"{folder}\n")
        return original(self, folder, *args, **kwargs)

    transformers.PreTrainedModel.save_pretrained = logged


def train(cfg: dict, out: Path) -> None:
    """A full run with checkpoints, then a run resumed from its first checkpoint."""
    _log_writes(out)
    common = dict(epochs=cfg["epochs"], batch_size=cfg["batch_size"], learning_rate=1e-3,
                  show_progress=False, seed=3, save_strategy="steps", save_steps=2,
                  logging_steps=1000)
    full = SiamText(cfg["model"], device="cpu")
    fit(full, train_rows(), cfg["loss"], output_dir=str(out / "full"), **common)
    full.save_pretrained(out / "full-final")
    resumed = SiamText(cfg["model"], device="cpu")
    fit(resumed, train_rows(), cfg["loss"], output_dir=str(out / "resumed"),
        resume_from_checkpoint=str(out / "full" / "checkpoint-2"), **common)
    resumed.save_pretrained(out / "resumed-final")
    if dist.get_rank() == 0:
        (out / "card.json").write_text(json.dumps(full.card_data.training))


def script(cfg: dict, out: Path) -> None:
    """What a user's training script does: load, fit, save; nothing about processes."""
    model = SiamText(cfg["model"], device="cpu")
    model.fit(train_rows(), loss="SupervisedContrastiveLoss", batch_size=8, epochs=0.2,
              show_progress=False)
    model.save_pretrained(out / "final")
    (out / f"card-rank{os.environ['RANK']}.json").write_text(
        json.dumps(model.card_data.training))


class _DieAtStep(transformers.TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 2 and os.environ["RANK"] == "1":
            os._exit(3)  # a process killed mid-run: no clean-up, no goodbye


def crash(cfg: dict, out: Path) -> None:
    """Rank 1 dies after two steps; rank 0 must fail with a clear error, not hang."""
    model = SiamText(cfg["model"], device="cpu")
    args = TrainingArguments(output_dir=str(out / "run"), per_device_train_batch_size=4,
                             num_train_epochs=3, disable_tqdm=True, ddp_timeout=60,
                             learning_rate=1e-3)
    loss = make_loss(model, "SupervisedContrastiveLoss")
    SiamTextTrainer(model, args, train_rows(), loss, callbacks=[_DieAtStep()]).train()


if __name__ == "__main__":
    scenario, config = sys.argv[1], json.loads(Path(sys.argv[2]).read_text())
    folder = Path(config["out"])
    {"losses": losses, "train": train, "script": script, "crash": crash}[scenario](config, folder)
    # Leave without tearing down the interpreter: at exit, a DDP reducer that outlives its
    # gloo group can join the group's worker thread while that thread waits for the GIL to
    # free a tensor (seen once in CI as a hang of this worker, torch 2.13).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
