"""The batching behind ``SiamText.encode``: texts in, embeddings out, in input order.

Texts are tokenised once, sorted by token length, embedded ``batch_size`` at a time (each
batch padded to its own longest text) under ``torch.inference_mode`` and optional autocast,
with a progress bar; a batch that runs out of memory is embedded in halves; ``devices=``
hands the work to one process per device (:mod:`siamtext.pool`), and an exported engine
with ``concurrency > 1`` runs several batches at once on threads. :class:`SiamText
<siamtext.model.SiamText>` keeps the public ``encode`` method (its docstring documents the
arguments) and calls :func:`encode` here; this module only reaches the model through its
methods (``token_ids``, ``pad``, ``embed``), so a subclass that overrides them (a projected
model) is encoded through its own.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from siamtext.validation import check_choice, check_positive_int, check_texts

if TYPE_CHECKING:
    from siamtext.model import SiamText

# The name encode's warnings had before this module was split out of siamtext.model: a
# script that sets that logger's level still controls them.
logger = logging.getLogger("siamtext.model")

Precision = Literal["fp32", "bf16", "fp16"]
_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}
Embed = Callable[..., torch.Tensor]


class _PieceSize:
    """The texts per forward pass of one ``encode`` call: the batch size, halved after an
    out-of-memory error (shared by concurrent batches, with one warning)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._warned = False
        self._lock = threading.Lock()

    def halve(self, failed: int, kind: str) -> None:
        with self._lock:
            if not self._warned:
                logger.warning("encode ran out of memory at batch_size=%d (%s); going on in "
                               "smaller pieces (halved until they fit)", failed, kind)
                self._warned = True
            self.size = min(self.size, max(1, failed // 2))


def encode(
    model: SiamText,
    sentences: str | Sequence[str],
    batch_size: int = 32,
    normalize: bool | None = None,
    convert_to: Literal["numpy", "torch"] = "numpy",
    show_progress: bool | None = None,
    max_length: int | None = None,
    precision: Precision = "fp32",
    devices: Sequence[str | torch.device] | None = None,
) -> np.ndarray | torch.Tensor:
    """Embed ``sentences`` with ``model``: :meth:`SiamText.encode
    <siamtext.model.SiamText.encode>`, which documents the arguments, calls this.

    Returns:
        ``(dim,)`` for a single string, else ``(len(sentences), dim)``.

    Raises:
        TypeError: If ``sentences`` is not a string or a list of strings.
        ValueError: For a bad ``batch_size``, ``convert_to`` or ``precision``.
    """
    single = isinstance(sentences, str)
    texts = check_texts(sentences)
    check_positive_int(batch_size, "batch_size")
    check_choice(convert_to, ("numpy", "torch"), "convert_to")
    check_choice(precision, ("fp32", "bf16", "fp16"), "precision")
    if max_length is not None:
        check_positive_int(max_length, "max_length")
    if model.backend != "torch" and precision != "fp32":
        raise ValueError(f"backend={model.backend!r} runs the exported file's precision: "
                         f"got precision={precision!r}; pick an int8 file with "
                         "file_name= instead")
    normalize = model.config.normalize if normalize is None else normalize
    if devices is not None:
        from siamtext.pool import encode_on_devices

        emb = torch.from_numpy(encode_on_devices(
            model, texts, devices, batch_size=batch_size, normalize=normalize,
            max_length=max_length, precision=precision))
        emb = emb[0] if single else emb
        return emb.to(model.device) if convert_to == "torch" else emb.numpy()

    out = torch.empty((len(texts), model.embedding_dim), dtype=torch.float32,
                      device=model.device)
    if texts:
        ids = model.token_ids(texts, max_length)
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        if show_progress is None:
            show_progress = len(texts) >= 8 * batch_size and sys.stderr.isatty()
        autocast = (torch.autocast(model.device.type, dtype=_AUTOCAST[precision])
                    if precision in _AUTOCAST else nullcontext())
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode(), autocast, tqdm(
                    total=len(order), desc="Encoding", unit="text",
                    disable=not show_progress) as bar:
                encode_batches(model, ids, order, out, batch_size, normalize, bar)
        finally:
            model.train(was_training)
    if single:
        out = out[0]
    return out if convert_to == "torch" else out.cpu().numpy()


def encode_batches(model: SiamText, ids: list[list[int]], order: list[int], out: torch.Tensor,
                   batch_size: int, normalize: bool, bar: tqdm) -> None:
    """Embed ``ids`` in ``order``, ``batch_size`` at a time, into the rows of ``out``.

    A batch that runs out of memory (``torch.cuda.OutOfMemoryError``, ``MemoryError`` on
    the CPU) is embedded in pieces of half the size, halved again as needed down to one
    text (then the error is raised), with one warning; later batches keep the smaller
    pieces. Each piece is padded to its whole batch's length, so every text is embedded
    with exactly the input of an uninterrupted run: the result is the same bit for bit
    while pieces hold two or more texts, and within the last bit when
    memory holds only one (9e-8 measured), as torch runs single-row kernels then.

    An exported engine with ``concurrency > 1`` (ONNX Runtime, OpenVINO) runs that many
    batches at once, each on one thread, instead of one batch at a time on all threads: the
    same batches, so the same embeddings, and on small batches the threads wait less for
    each other (:mod:`siamtext.backends.onnx` has the measurement).
    """
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    state = _PieceSize(batch_size)
    engine = model._engine
    workers = getattr(engine, "concurrency", 1) if engine is not None else 1
    if workers > 1 and len(batches) > 1:
        from concurrent.futures import ThreadPoolExecutor

        def run(batch: list[int]) -> None:
            encode_batch(model, ids, batch, out, normalize, bar, state,
                         model._embed_one_thread)

        with ThreadPoolExecutor(min(workers, len(batches))) as pool:
            for _ in pool.map(run, batches):  # re-raises a worker's error
                pass
        return
    for batch in batches:
        encode_batch(model, ids, batch, out, normalize, bar, state, model.embed)


def encode_batch(model: SiamText, ids: list[list[int]], batch: list[int], out: torch.Tensor,
                 normalize: bool, bar: tqdm, state: _PieceSize, embed: Embed) -> None:
    """Embed one batch (in pieces of ``state.size`` after an out-of-memory error)."""
    length = max(len(ids[i]) for i in batch)
    pad_id = model.tokenizer.pad_token_id or 0
    done = 0
    with torch.inference_mode():  # thread-local: set again in worker threads
        while done < len(batch):
            size = state.size
            index = batch[done : done + size]
            inputs = model.pad([ids[i] for i in index])
            extra = length - inputs["input_ids"].shape[1]
            if extra:
                inputs = {k: F.pad(v, (0, extra), value=pad_id if k == "input_ids" else 0)
                          for k, v in inputs.items()}
            try:
                emb = embed(**inputs).float()
            except (torch.cuda.OutOfMemoryError, MemoryError) as err:
                if size == 1:
                    raise
                emb, kind = None, type(err).__name__
            if emb is None:  # out of the except block: the failed piece's memory is free
                if model.device.type == "cuda":
                    torch.cuda.empty_cache()
                state.halve(size, kind)
                continue
            if normalize:
                emb = F.normalize(emb, p=2, dim=-1)
            out[torch.as_tensor(index, device=model.device)] = emb
            done += len(index)
            bar.update(len(index))
