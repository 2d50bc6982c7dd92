"""Folders for fitted classifiers: the encoder, JSON settings and safetensors arrays.

A save writes everything into a fresh sibling folder and only then swaps it into place, so
a save that fails half-way leaves what was stored before untouched. Nothing is pickled.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from siamtext.atomic import write_folder
from siamtext.folder_checks import check_safetensors, read_json_file

if TYPE_CHECKING:
    from siamtext.model import SiamText

ENCODER_DIR = "encoder"
FORMAT_VERSION = 1


def save_folder(folder: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a fresh folder beside ``folder``, then swap it into place
    (:func:`siamtext.atomic.write_folder`: flushed to disk, one atomic exchange on Linux).

    Returns:
        ``folder`` as a Path.
    """
    return write_folder(folder, write, keep_others=False)


def write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def read_json(folder: str | Path, name: str, kind: str) -> dict:
    """Read ``folder/name``; a clear error when it is missing or not a ``kind`` folder."""
    path = Path(folder) / name
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a saved {kind}: {name} is missing")
    payload = read_json_file(path)
    if not isinstance(payload, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(payload).__name__}")
    if payload.get("kind") != kind:
        raise ValueError(f"{path} holds a {payload.get('kind')!r}, expected {kind!r}")
    if not isinstance(payload.get("format_version", 0), int):
        raise ValueError(f"{path}: format_version must be an integer")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{path} was written by a newer siamtext (format "
                         f"{payload['format_version']}, this one reads {FORMAT_VERSION})")
    return payload


def load_tensors(path: Path) -> dict:
    """The tensors of a safetensors file, after checking that it is whole.

    Raises:
        ValueError: Naming the file, if it is truncated or not safetensors.
    """
    from safetensors.torch import load_file

    check_safetensors(path)
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors' own errors name no file
        raise ValueError(f"{path} is not a readable safetensors file: {err}") from None


def save_encoder(model: SiamText | None, folder: Path, *, kind: str, usage: str) -> None:
    """Save the encoder to ``folder/encoder`` and a model card for the classifier folder.

    The card says ``library_name: siamtext``: sentence-transformers cannot load the folder
    as a whole (the encoder sits in a subfolder); its ``usage`` shows how siamtext does.
    """
    if model is None:
        return
    from siamtext.model_card import write_model_card

    model.save_pretrained(folder / ENCODER_DIR)
    write_model_card(
        folder, model.card_data, embedding_dim=model.embedding_dim,
        max_seq_length=model.max_seq_length, pooling=model.config.pooling,
        normalize=model.config.normalize, library_name="siamtext",
        pipeline_tag="text-classification",
        description=f"A siamtext `{kind}`: a Siamese sentence encoder (in `encoder/`) with "
                    "the decision state fitted on top of it, in safetensors and JSON.",
        usage=usage,
    )


def load_encoder(folder: str | Path, **kwargs) -> SiamText | None:
    path = Path(folder) / ENCODER_DIR
    if not path.is_dir():
        return None
    from siamtext.model import SiamText

    return SiamText(path, **kwargs)


def json_label(label: object, name: str = "label") -> str | int:
    """A label as a JSON-safe ``str`` or ``int`` (numpy integers and strings included)."""
    from siamtext.validation import check_label

    return check_label(label, name)
