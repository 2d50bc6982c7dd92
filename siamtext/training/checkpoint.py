"""Checkpoints: a full :class:`~siamtext.SiamText` folder plus the trainer's state (optimizer,
schedule, random generators, step) and the training arguments (``ARGS_NAME``).

A checkpoint is written into a hidden staging folder (``.checkpoint-N.partial``) and renamed
to ``checkpoint-N`` only when complete and flushed to disk (:mod:`siamtext.atomic`), so a run
killed at any moment leaves only whole checkpoints under their real names.
:func:`latest_checkpoint` still checks each one before it is resumed from, so that folders
written by older versions or damaged by hand are skipped, not trusted.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from safetensors.torch import load_file

from siamtext.distributed import unwrap
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
