"""Texts to model inputs: token ids under a thread-safe tokenizer call, right-padding, limits.

Pure functions over a Hugging Face tokenizer (no model): :class:`SiamText
<siamtext.model.SiamText>`'s ``token_ids``, ``pad`` and ``max_seq_length`` call them and
keep the once-per-model truncation warning.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

_NO_LIMIT = 100_000  # tokenizers report ~1e30 when they know no maximum length
# A fast tokenizer keeps its truncation length as state that each call sets: two threads
# tokenising at different max_length would truncate with each other's (measured: 320 of 480
# calls wrong). One lock for all models; tokenising is a small share of encoding.
_TOKENIZER_LOCK = threading.Lock()


def model_limit(tokenizer: Any, config: Any) -> int:
    """The longest input in tokens that both ``tokenizer`` and the transformer ``config``
    allow (the position embeddings, less RoBERTa's offset); 512 when neither knows one."""
    limits = [int(tokenizer.model_max_length)]
    positions = getattr(config, "max_position_embeddings", None)
    if positions:
        if "roberta" in config.model_type or config.model_type in {"camembert", "xmod"}:
            positions -= (config.pad_token_id or 0) + 1  # RoBERTa positions start after pad
        limits.append(positions)
    limit = min(limits)
    return limit if limit < _NO_LIMIT else 512


def token_ids(tokenizer: Any, texts: Sequence[str], limit: int,
              check_truncation: bool = True) -> tuple[list[list[int]], bool]:
    """Token ids of each text, truncated to ``limit``, unpadded.

    Returns:
        The ids, one list per text, and whether any text was truncated (always False
        without ``check_truncation``, which skips the look).
    """
    with _TOKENIZER_LOCK:  # a call sets the shared tokenizer's truncation length
        enc = tokenizer(list(texts), truncation=True, max_length=limit,
                        padding=False, return_attention_mask=False,
                        return_token_type_ids=False)
    ids = enc["input_ids"]
    if not check_truncation:
        return ids, False
    encodings = getattr(enc, "encodings", None)
    truncated = (any(e.overflowing for e in encodings) if encodings
                 else any(len(x) >= limit for x in ids))
    return ids, truncated


def pad_arrays(ids: Sequence[Sequence[int]], pad_id: int,
               token_type_ids: bool) -> dict[str, np.ndarray]:
    """Right-pad token id lists into int64 NumPy arrays, the inputs an exported graph takes.

    Args:
        ids: Token ids, one list per text.
        pad_id: The tokenizer's padding id.
        token_type_ids: Add all-zero ``token_type_ids`` (BERT-like models take them).

    Returns:
        ``input_ids`` and ``attention_mask`` (and ``token_type_ids``), each
        ``(len(ids), longest)``.
    """
    length = max(len(x) for x in ids)
    input_ids = np.full((len(ids), length), pad_id, dtype=np.int64)
    mask = np.zeros((len(ids), length), dtype=np.int64)
    for row, seq in enumerate(ids):
        input_ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    batch = {"input_ids": input_ids, "attention_mask": mask}
    if token_type_ids:
        batch["token_type_ids"] = np.zeros_like(input_ids)
    return batch


def as_tensors(arrays: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    """The arrays :func:`pad_arrays` gives, as model inputs on ``device``.

    Args:
        arrays: ``input_ids`` and ``attention_mask`` (and ``token_type_ids``) as int64 arrays.
        device: Where the tensors go.

    Returns:
        The same keys as int64 tensors, sharing memory with the arrays on the CPU.
    """
    batch = {k: torch.from_numpy(v) for k, v in arrays.items()}
    if device.type == "cpu":
        return batch
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}
