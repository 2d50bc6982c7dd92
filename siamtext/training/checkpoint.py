"""Checkpoints: a full :class:`~siamtext.SiamText` folder plus the training arguments
(``ARGS_NAME``); ``load_weights`` reads the weights back into a model."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from safetensors.torch import load_file

from siamtext.distributed import unwrap

if TYPE_CHECKING:
    from siamtext.model import SiamText

ARGS_NAME = "siamtext_training_args.json"


def load_weights(model: SiamText, folder: str | os.PathLike) -> None:
    """Load the transformer weights saved by ``model.save_pretrained(folder)`` into ``model``.

    Raises:
        ValueError: If the folder has no ``model.safetensors`` or the weights do not fit.
    """
    model = unwrap(model)  # DDP
    path = os.path.join(folder, "model.safetensors")
    if not os.path.isfile(path):
        raise ValueError(f"checkpoint {folder} has no model.safetensors")
    state = load_file(path, device=str(model.device))
    missing, unexpected = model.transformer.load_state_dict(state, strict=False)
    # tied or non-persistent buffers may be absent from the file; real weights may not
    missing = [k for k in missing if not k.endswith(("position_ids", "token_type_ids"))]
    if missing or unexpected:
        raise ValueError(f"checkpoint {folder} does not fit the model: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
