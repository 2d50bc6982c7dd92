"""Embed a Ray Dataset: batch inference on a Ray cluster (``pip install 'siamtext[ray]'``).

:func:`embed` adds an embedding column to a ``ray.data.Dataset`` with ``map_batches`` and a
callable class, so each Ray actor loads the model once and then encodes batch after batch.
A :class:`~siamtext.SiamText` given as an object travels as the bytes of its saved folder
(safetensors and JSON) through Ray's object store, so actors on other machines need no shared
file system; a folder path or Hub id is loaded by each actor itself.

On a cluster, start Ray on the machines (``ray start --head`` on one,
``ray start --address=HEAD:6379`` on the others) and run the script that calls :func:`embed`
on the head node, or submit it with ``ray job submit -- python script.py``.
"""

from __future__ import annotations

import importlib
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from siamtext.extras import require
from siamtext.validation import check_positive_int

if TYPE_CHECKING:
    import ray.data

    from siamtext.model import SiamText


def _import_ray() -> Any:
    require("ray.data", "ray", "siamtext.integrations.ray", "pip install 'ray[data]'")
    return importlib.import_module("ray")


def embed(ds: ray.data.Dataset, model: SiamText | str | Path, column: str = "text", *,
          output_column: str = "embedding", batch_size: int = 256, concurrency: int = 1,
          num_gpus: float = 0, num_cpus: float | None = None, encode_batch_size: int = 32,
          device: str | None = None) -> ray.data.Dataset:
    """The dataset with an embedding column: ``(dim,)`` float32 per row.

    Args:
        ds: A ``ray.data.Dataset`` with a text column.
        model: A :class:`~siamtext.SiamText`, or a folder / Hub id every worker can load.
        column: The text column. Missing values (``None``) are encoded as ``""``: no row is
            dropped.
        output_column: Name of the new column.
        batch_size: Rows per Ray batch handed to an actor.
        concurrency: Number of actors (model copies).
        num_gpus: GPUs per actor (e.g. 1; the actor then encodes on ``cuda``).
        num_cpus: CPUs per actor (Ray's default when ``None``).
        encode_batch_size: Texts per forward pass inside an actor.
        device: The actors' device (default: ``cuda`` with ``num_gpus``, else ``cpu``).

    Returns:
        A new (lazy) dataset: ``ds``'s columns plus ``output_column``. Ray Data does not keep
        row order unless ``DataContext.get_current().execution_options.preserve_order`` is
        set; carry an id column to join results back.

    Raises:
        ImportError: Without Ray Data, naming the extra.
        ValueError: For a missing column (naming the existing ones) or bad sizes.
    """
    ray = _import_ray()
    check_positive_int(batch_size, "batch_size")
    check_positive_int(concurrency, "concurrency")
    check_positive_int(encode_batch_size, "encode_batch_size")
    names = list(ds.schema().names)
    if column not in names:
        raise ValueError(f"ds has no column {column!r}; it has columns {names}")
    if output_column in names:
        raise ValueError(f"ds already has a column {output_column!r}; pass another "
                         "output_column")
    source: Any = str(model) if isinstance(model, (str, Path)) else ray.put(_folder_bytes(model))
    device = device or ("cuda" if num_gpus else "cpu")
    options: dict[str, Any] = {"num_gpus": num_gpus}
    if num_cpus is not None:
        options["num_cpus"] = num_cpus
    return ds.map_batches(
        _Embedder, fn_constructor_args=(source, device, column, output_column,
                                        encode_batch_size),
        batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=concurrency),
        batch_format="numpy", **options)


def _folder_bytes(model: SiamText) -> dict[str, bytes]:
    """The files of ``model.save_pretrained`` as ``{relative path: bytes}``."""
    with tempfile.TemporaryDirectory(prefix="siamtext-ray-") as folder:
        model.save_pretrained(folder, main_process_only=False)
        root = Path(folder)
        return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


class _Embedder:
    """A Ray actor: loads the model once, then encodes each batch's text column."""

    def __init__(self, source: Any, device: str, column: str, output_column: str,
                 encode_batch_size: int) -> None:
        import ray

        from siamtext.model import SiamText

        if isinstance(source, ray.ObjectRef):  # constructor arguments are not resolved
            source = ray.get(source)
        if isinstance(source, dict):  # the saved folder's files, through the object store
            self._folder = tempfile.TemporaryDirectory(prefix="siamtext-ray-")
            root = Path(self._folder.name)
            for name, data in source.items():
                (root / name).parent.mkdir(parents=True, exist_ok=True)
                (root / name).write_bytes(data)
            source = root
        self.model = SiamText(source, device=device)
        self.column, self.output_column = column, output_column
        self.encode_batch_size = encode_batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = ["" if t is None else str(t) for t in batch[self.column]]
        batch[self.output_column] = self.model.encode(texts, batch_size=self.encode_batch_size,
                                                      show_progress=False)
        return batch
