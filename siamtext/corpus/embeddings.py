"""Read an embedding file written by :func:`~siamtext.corpus.encode_file`, so a corpus is
encoded once and searched (``siamtext dedup``) as often as needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from siamtext.corpus.writers import OUTPUT_FORMATS


def is_embeddings_file(path: str | Path) -> bool:
    """Whether ``path`` has an embedding file's extension (``.npy``, ``.safetensors``,
    ``.parquet``)."""
    return Path(path).suffix.lower() in OUTPUT_FORMATS


def read_embeddings(path: str | Path) -> np.ndarray:
    """The ``(n, dim)`` embeddings of a ``.npy``, ``.safetensors`` (tensor ``"embeddings"``)
    or ``.parquet`` (``embedding`` column, rows in ``id`` order) file.

    ``.npy`` is memory-mapped, not read into memory.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: For another extension, or content that is not one 2-D float matrix.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"embeddings file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        emb = np.load(path, mmap_mode="r", allow_pickle=False)
    elif suffix == ".safetensors":
        from safetensors.numpy import load_file

        tensors = load_file(path)
        if "embeddings" not in tensors:
            raise ValueError(f"{path} has no tensor 'embeddings'; it has {sorted(tensors)}")
        emb = tensors["embeddings"]
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        if "embedding" not in table.column_names:
            raise ValueError(f"{path} has no column 'embedding'; it has {table.column_names}")
        emb = np.stack(table.column("embedding").to_numpy(zero_copy_only=False)) \
            if table.num_rows else np.zeros((0, 0), dtype=np.float32)
        if "id" in table.column_names:
            emb = emb[np.argsort(table.column("id").to_numpy(), kind="stable")]
    else:
        raise ValueError(f"{path}: not an embeddings file; expected one of {OUTPUT_FORMATS}")
    if emb.ndim != 2 or emb.dtype.kind != "f":
        raise ValueError(f"{path} holds a {emb.dtype} array of shape {emb.shape}; expected "
                         "one 2-D float matrix (rows x dim)")
    return emb
