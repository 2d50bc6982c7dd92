"""Encoding on several devices at once: one process per device, each with its own model.

``SiamText.encode(texts, devices=["cuda:0", "cuda:1"])`` (or ``devices=["cpu"] * k``) calls
:func:`encode_on_devices`. The model is saved once to a temporary folder (safetensors and
JSON, nothing pickled) and every worker process loads it from there onto its device; the
texts are cut into contiguous chunks, the workers encode them as they come free, and the
rows come back in input order. An embedding does not depend on its batch neighbours, so the
result equals one process's (up to float rounding).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import tempfile
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from siamtext.model import SiamText

logger = logging.getLogger(__name__)

_worker: dict[str, Any] = {}  # the model of this worker process


def check_devices(devices: object, cpu_only: str | None = None) -> list[torch.device]:
    """Return ``devices`` as torch devices, each one usable here.

    Args:
        devices: The devices to check.
        cpu_only: What runs on CPU only (``"backend='onnx'"``); a device of another type
            is then refused, naming it.

    Raises:
        TypeError: If ``devices`` is not a list of device names or ``torch.device``.
        ValueError: For an empty list, an unknown device name, a CUDA device this
            machine does not have, or with ``cpu_only`` a device that is not a CPU.
    """
    if isinstance(devices, (str, torch.device)) or not isinstance(devices, Sequence):
        raise TypeError(f"devices must be a list of devices, e.g. ['cuda:0', 'cuda:1'] or "
                        f"['cpu'] * 4, got {devices!r}")
    if not devices:
        raise ValueError("devices is empty; give at least one device, e.g. ['cpu']")
    out = []
    for d in devices:
        try:
            device = torch.device(d)
        except (RuntimeError, TypeError) as err:
            raise ValueError(f"devices has {d!r}, which is not a device name: {err}") from err
        if cpu_only and device.type != "cpu":
            raise ValueError(f"{cpu_only} runs on CPU: pass devices=['cpu'] * k, got "
                             f"{list(devices)!r}")
        if device.type == "cuda":
            count = torch.cuda.device_count()
            if (device.index or 0) >= count:
                raise ValueError(f"devices has {d!r}, but this machine has {count} CUDA "
                                 "device(s)")
        out.append(device)
    return out


def encode_on_devices(model: SiamText, texts: list[str], devices: Sequence[str | torch.device],
                      chunk_size: int | None = None, **encode_args: Any) -> np.ndarray:
    """Encode ``texts`` with one process per device; rows in input order.

    Args:
        model: The model to copy into every worker.
        texts: The texts (already checked).
        devices: One entry per worker process, e.g. ``["cuda:0", "cuda:1"]`` or
            ``["cpu"] * 4`` (each CPU worker then gets ``cores // 4`` threads).
        chunk_size: Texts per task (default: enough for every worker to get about four
            tasks, at least ``8 * batch_size``).
        **encode_args: ``batch_size``, ``normalize``, ``max_length``, ``precision`` of
            :meth:`SiamText.encode`.

    Returns:
        ``(len(texts), dim)`` float32 array.
    """
    exported = model.backend != "torch"
    workers = check_devices(devices, cpu_only=f"backend={model.backend!r}" if exported else None)
    # every worker runs the same exported file
    load_kwargs = {"backend": model.backend, "file_name": model.file_name} if exported else {}
    batch_size = encode_args.get("batch_size", 32)
    if chunk_size is None:
        chunk_size = max(8 * batch_size, -(-len(texts) // (4 * len(workers))))
    if not texts:
        return np.zeros((0, model.embedding_dim), dtype=np.float32)
    chunks = [texts[i : i + chunk_size] for i in range(0, len(texts), chunk_size)]
    cpu_workers = sum(d.type == "cpu" for d in workers)
    threads = max(1, (os.cpu_count() or 1) // max(1, cpu_workers))
    context = mp.get_context("spawn")  # CUDA cannot be forked; spawn is safe everywhere
    queue = context.Queue()
    for device in workers:
        queue.put(str(device))
    with tempfile.TemporaryDirectory(prefix="siamtext-pool-") as folder:
        model.save_pretrained(folder, main_process_only=False)
        logger.info("encoding %d texts in %d chunks on %s", len(texts), len(chunks),
                    [str(d) for d in workers])
        with ProcessPoolExecutor(len(workers), mp_context=context, initializer=_load,
                                 initargs=(folder, queue, threads, load_kwargs)) as pool:
            parts = list(pool.map(_encode, chunks, [encode_args] * len(chunks)))
    return np.concatenate(parts)


def _load(folder: str, devices: Any, threads: int, load_kwargs: dict[str, Any]) -> None:
    """Worker start: take a device from the queue and load the model onto it (with the
    backend and exported file of the parent's model)."""
    from siamtext.model import SiamText

    device = devices.get()
    if device == "cpu":
        torch.set_num_threads(threads)
    _worker["model"] = SiamText(folder, device=device, **load_kwargs)


def _encode(texts: list[str], encode_args: dict[str, Any]) -> np.ndarray:
    return _worker["model"].encode(texts, show_progress=False, **encode_args)
