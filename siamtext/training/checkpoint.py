"""Checkpoints: a full :class:`~siamtext.SiamText` folder plus the trainer's state (optimizer,
schedule, random generators, step) and the training arguments (``ARGS_NAME``).

A checkpoint is written into a hidden staging folder (``.checkpoint-N.partial``) and renamed
to ``checkpoint-N`` only when complete and flushed to disk (:mod:`siamtext.atomic`), so a run
killed at any moment leaves only whole checkpoints under their real names.
:func:`latest_checkpoint` still checks each one before it is resumed from, so that folders
written by older versions or damaged by hand are skipped, not trusted.

The functions here read and check checkpoint folders; :class:`CheckpointMixin` holds the
trainer's side (writing them atomically, finding the one to resume from, loading weights
back), which :class:`~siamtext.training.trainer.SiamTextTrainer` takes from it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import transformers
from safetensors.torch import load_file
from torch import nn
from transformers.trainer_callback import ExportableState
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, SaveStrategy, rotate_checkpoints

from siamtext import distributed
from siamtext.atomic import commit_folder, write_folder
from siamtext.distributed import unwrap
from siamtext.failpoints import failpoint
from siamtext.finite import check_finite

if TYPE_CHECKING:
    from siamtext.model import SiamText

logger = logging.getLogger(__name__)

ARGS_NAME = "siamtext_training_args.json"
PARTIAL = ".partial"  # suffix of a checkpoint's staging folder, ".checkpoint-N.partial"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def load_weights(model: SiamText, folder: str | os.PathLike) -> None:
    """Load the transformer weights saved by ``model.save_pretrained(folder)`` into ``model``.

    Raises:
        ValueError: If the folder has no ``model.safetensors``, the weights do not fit, or a
            weight holds NaN or inf (naming it).
    """
    model = unwrap(model)  # DDP
    path = os.path.join(folder, "model.safetensors")
    if not os.path.isfile(path):
        raise ValueError(f"checkpoint {folder} has no model.safetensors")
    state = load_file(path, device=str(model.device))
    check_finite(state.items(), f"refusing to load checkpoint {folder}", folder)
    missing, unexpected = model.transformer.load_state_dict(state, strict=False)
    # tied or non-persistent buffers may be absent from the file; real weights may not
    missing = [k for k in missing if not k.endswith(("position_ids", "token_type_ids"))]
    if missing or unexpected:
        raise ValueError(f"checkpoint {folder} does not fit the model: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")


def checkpoint_problem(folder: str | os.PathLike) -> str | None:
    """Why ``folder`` cannot be resumed from (a missing or unreadable file), or None.

    A complete checkpoint has the weights, the trainer state and, unless it was saved with
    ``save_only_model``, the optimizer, schedule and random-generator states.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return "it is not a folder"
    try:
        json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "trainer_state.json is missing or unreadable"
    weights = folder / "model.safetensors"
    try:
        with weights.open("rb") as f:  # the safetensors header: 8-byte length, then JSON
            size = int.from_bytes(f.read(8), "little")
            json.loads(f.read(size))
        if weights.stat().st_size < 8 + size:
            raise ValueError("truncated")
    except (OSError, ValueError):
        return "model.safetensors is missing or truncated"
    try:
        args = json.loads((folder / ARGS_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        args = {}
    if not args.get("save_only_model", False):
        for name in ("optimizer.pt", "scheduler.pt"):
            if not (folder / name).is_file():
                return f"{name} is missing"
        if not any(folder.glob("rng_state*.pth")):
            return "rng_state.pth is missing"
    return None


def latest_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The ``checkpoint-N`` folder of ``output_dir`` with the highest N that is complete
    (:func:`checkpoint_problem`), or None when there is none. Incomplete ones are skipped
    with a warning."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in output_dir.iterdir()
             if (m := _CHECKPOINT.match(p.name)) and p.is_dir()]
    for _, path in sorted(found, reverse=True):
        problem = checkpoint_problem(path)
        if problem is None:
            return str(path)
        logger.warning("Skipping checkpoint %s: %s", path, problem)
    return None


def remove_partial_checkpoints(output_dir: str | os.PathLike) -> None:
    """Delete the staging folders (``.checkpoint-N.partial``) a killed run left behind."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return
    for path in output_dir.glob(f".checkpoint-*{PARTIAL}"):
        shutil.rmtree(path, ignore_errors=True)


class CheckpointMixin:
    """The saving, checkpointing and resuming of
    :class:`~siamtext.training.trainer.SiamTextTrainer` (a ``transformers.Trainer`` with
    ``nan_guard``, ``last_checkpoint`` and ``_staging`` attributes)."""

    def _resolve_checkpoint(self, resume: str | bool | None) -> str | None:
        """The checkpoint folder to resume from: checked, or found (``True``), or None."""
        if resume is None or resume is False:
            return None
        if resume is True:
            found = latest_checkpoint(self.args.output_dir)
            if found is None:
                logger.warning("No complete checkpoint in %s yet: starting from the beginning.",
                               self.args.output_dir)
            return found
        problem = checkpoint_problem(resume)
        if problem is not None:
            raise ValueError(f"resume_from_checkpoint={str(resume)!r} cannot be resumed "
                             f"from: {problem}")
        return str(resume)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Write the model folder and the training arguments: straight into the staging
        folder of a checkpoint, else atomically (:mod:`siamtext.atomic`)."""
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:  # rank 0 (or each node's first with save_on_each_node)
            return
        check_finite(self.model.transformer.state_dict().items(),
                     f"refusing to save {output_dir}")
        if output_dir == self._staging:
            self._write_model(Path(output_dir), os.path.basename(output_dir)[1:-len(PARTIAL)])
        else:
            write_folder(output_dir, lambda tmp: self._write_model(tmp, Path(output_dir).name))

    def _write_model(self, folder: Path, name: str) -> None:
        self.model._write_files(folder, name)
        args = {k: v for k, v in self.args.to_dict().items() if _jsonable(v)}
        with open(folder / ARGS_NAME, "w", encoding="utf-8") as f:
            json.dump(args, f, indent=2)

    def _save_checkpoint(self, model: nn.Module, trial: Any) -> None:
        """``transformers.Trainer._save_checkpoint``, written atomically.

        Every part (model folder, optimizer, schedule, scaler, random-generator states of
        every process, trainer state last) goes into ``.checkpoint-N.partial``; once all are
        in, it is flushed and renamed to ``checkpoint-N``. A run killed at any moment leaves
        the earlier checkpoints as they were and no ``checkpoint-N`` that is half-written.
        """
        self.nan_guard.check(self.last_checkpoint)  # never save weights a NaN step made
        args, state = self.args, self.state
        name = f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        run_dir = self._get_output_dir(trial=trial)
        final = os.path.join(run_dir, name)
        staging = os.path.join(run_dir, f".{name}{PARTIAL}")
        distributed.barrier()
        if args.should_save:
            shutil.rmtree(staging, ignore_errors=True)
            os.makedirs(staging)
        distributed.barrier()  # every process writes its random-generator state into it
        self._staging = staging
        try:
            if self.hp_search_backend is None and trial is None:
                self.store_flos()
            self.save_model(staging, _internal_call=True)
            failpoint("checkpoint", state.global_step)
            if args.save_strategy in (SaveStrategy.STEPS, SaveStrategy.EPOCH,
                                      SaveStrategy.BEST) and state.best_global_step:
                best = os.path.join(run_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.best_global_step}")
                if state.best_global_step == state.global_step or os.path.exists(best):
                    state.best_model_checkpoint = best
            if not args.save_only_model:
                self._save_optimizer_and_scheduler(staging)
                self._save_scaler(staging)
                self._save_rng_state(staging)
            if args.should_save:
                for cb in [cb for cb in self.callback_handler.callbacks + [self.control]
                           if isinstance(cb, ExportableState)]:
                    cb_name = cb.__class__.__name__
                    if isinstance(state.stateful_callbacks[cb_name], list):
                        state.stateful_callbacks[cb_name].append(cb.state())
                    else:
                        state.stateful_callbacks[cb_name] = cb.state()
                state.save_to_json(os.path.join(staging, transformers.trainer.TRAINER_STATE_NAME))
        finally:
            self._staging = None
        distributed.barrier()
        if args.should_save:
            commit_folder(staging, final, keep_others=False)
        distributed.barrier()
        self.last_checkpoint = final
        if args.push_to_hub:
            self._push_from_checkpoint(final)
        if args.should_save:
            rotate_checkpoints(output_dir=run_dir, save_total_limit=args.save_total_limit,
                               best_model_checkpoint=state.best_model_checkpoint, use_mtime=True)

    def _load_from_checkpoint(self, resume_from_checkpoint: str,
                              model: nn.Module | None = None) -> None:
        load_weights(model if model is not None else self.model, resume_from_checkpoint)

    def _load_best_model(self) -> None:
        checkpoint = self.state.best_model_checkpoint
        logger.info("Loading best model from %s (score: %s).", checkpoint,
                    self.state.best_metric)
        load_weights(self.model, checkpoint)


def _jsonable(value: object) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
