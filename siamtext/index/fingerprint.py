"""What identifies an encoder, so that a collection is never searched with another one.

Vectors from two encoders live in different spaces: a query embedded by a fine-tuned model
and compared with items embedded by its base model gives scores that look plausible and mean
nothing. A collection therefore stores the fingerprint of the encoder that filled it, and
:class:`siamtext.index.Index` refuses to open it with a different one, naming both.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from siamtext.model import SiamText

#: The fields that must agree for two encoders to give the same vectors (``model`` is the
#: name, reported but not compared: a folder may move).
COMPARED = ("weights_sha256", "dim", "pooling", "normalize", "max_length", "backend",
            "file_name", "precision")


def weights_digest(model: SiamText) -> str:
    """SHA-256 over the tower's parameters and buffers (names, dtypes, shapes and bytes).

    Computed once per model object and cached on it; training the model in place clears
    nothing, so fingerprint a model after its training (as saving does).
    """
    cached = getattr(model, "_siamtext_weights_sha256", None)
    if cached is not None:
        return cached
    h = hashlib.sha256()
    for name, tensor in sorted(model.transformer.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(-1).view(dtype=_byte_dtype()).numpy().tobytes())
    digest = h.hexdigest()
    model._siamtext_weights_sha256 = digest
    return digest


def _byte_dtype() -> Any:
    import torch

    return torch.uint8


def fingerprint(model: SiamText, precision: str = "fp32") -> dict[str, Any]:
    """The fingerprint of ``model`` as a JSON object."""
    return {
        "model": model.model_name_or_path,
        "weights_sha256": weights_digest(model),
        "dim": model.embedding_dim,
        "pooling": model.config.pooling,
        "normalize": bool(model.config.normalize),
        "max_length": model.max_seq_length,
        "backend": model.backend,
        "file_name": model.file_name,
        "precision": precision,
    }


def differences(stored: dict[str, Any], given: dict[str, Any]) -> list[str]:
    """The compared fields on which two fingerprints disagree, as ``"field: a != b"``."""
    out = []
    for key in COMPARED:
        a, b = stored.get(key), given.get(key)
        if a != b:
            if key == "weights_sha256":
                a, b = str(a)[:12], str(b)[:12]
            out.append(f"{key}: {a!r} != {b!r}")
    return out
