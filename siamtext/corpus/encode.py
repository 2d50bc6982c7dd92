"""``encode_file``: embed a text file into an embedding file, chunk by chunk, resumably."""

from __future__ import annotations

import itertools
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tqdm.auto import tqdm

from siamtext.corpus.readers import open_source
from siamtext.corpus.writers import DTYPES, OUTPUT_FORMATS, WRITERS, partial_path
from siamtext.validation import check_choice, check_positive_int

logger = logging.getLogger(__name__)


def parse_shard(shard: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"i/n"`` or ``(i, n)`` -> ``(i, n)`` with ``0 <= i < n``; ``None`` stays ``None``.

    Raises:
        ValueError: Naming the value, for anything else (``"3/3"``, ``"-1/2"``, ``"1/0"``).
    """
    if shard is None:
        return None
    expected = "'i/n' with integers 0 <= i < n (0-based: 0/3, 1/3, 2/3)"
    try:
        if isinstance(shard, str):
            index_text, sep, count_text = shard.partition("/")
            if not sep:
                raise ValueError
            index, count = int(index_text), int(count_text)
        else:
            index, count = shard
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in (index, count)):
                raise ValueError
    except (TypeError, ValueError):
        raise ValueError(f"shard must be {expected}, got {shard!r}") from None
    if not 0 <= index < count:
        raise ValueError(f"shard must be {expected}, got {shard!r}")
    return index, count


def shard_rows(total: int, shard: tuple[int, int] | None) -> tuple[int, int]:
    """The row range ``[start, stop)`` of shard ``(i, n)`` of ``total`` rows."""
    if shard is None:
        return 0, total
    index, count = shard
    return index * total // count, (index + 1) * total // count


def check_output(output: str | Path, overwrite: bool = False,
                 formats: Sequence[str] = OUTPUT_FORMATS) -> Path:
    """The output path, if its extension is one of ``formats`` and it may be written.

    Raises:
        ValueError: For another extension (naming the supported ones), or an existing output
            without ``overwrite``.
    """
    path = Path(output)
    if path.suffix.lower() not in formats:
        raise ValueError(f"output {str(output)!r}: unsupported file type {path.suffix!r}; "
                         f"expected one of {list(formats)}")
    if path.exists() and not overwrite:
        raise ValueError(f"output {str(output)!r} exists; pass overwrite=True (--overwrite) "
                         f"to replace it")
    return path


def _progress_path(output: Path) -> Path:
    return output.with_name(output.name + ".progress.json")


def _read_progress(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: unreadable progress file ({err}); delete it or pass "
                         f"overwrite=True to start again") from err


def _write_progress(path: Path, state: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def encode_file(
    model: Any,
    input: str | Path,
    output: str | Path,
    *,
    column: str | None = None,
    split: str = "train",
    config: str | None = None,
    batch_size: int = 32,
    chunk_size: int = 10_000,
    dtype: Literal["float32", "float16"] = "float32",
    shard: str | tuple[int, int] | None = None,
    overwrite: bool = False,
    show_progress: bool | None = None,
) -> Path:
    """Embed every text of a file into an embedding file, holding one chunk at a time.

    Reads ``chunk_size`` texts, embeds them with ``model.encode(chunk, batch_size=...)``,
    writes their rows and repeats, so memory does not grow with the corpus. Rows keep the
    input's order and count: an empty line, a null or a non-string cell is embedded as ``""``.

    The run writes ``OUTPUT.partial`` and records the finished chunks in
    ``OUTPUT.progress.json``; run the same call again after an interruption and it goes on
    from the first unfinished chunk and gives the same bytes as an uninterrupted run. A
    restart with other settings (input file, column, model, dtype, shard, chunk or batch
    size) is refused, unless ``overwrite=True``, which discards that partial work. When
    done, the partial file is renamed onto ``output`` and the progress file deleted.

    Args:
        model: A ``SiamText`` (anything with ``encode`` and ``embedding_dim``).
        input: ``.txt`` (one text per line, line breaks stripped), ``.csv``, ``.tsv``,
            ``.jsonl`` or ``.parquet``; or a Hub dataset id (or a local dataset folder),
            streamed with ``datasets.load_dataset(..., streaming=True)``.
        output: ``.npy`` (a ``(rows, dim)`` array), ``.safetensors`` (one tensor
            ``"embeddings"``) or ``.parquet`` (columns ``id``: the global row number, and
            ``embedding``: a fixed-size list, one row group per chunk).
        column: The text column of csv/tsv/jsonl/parquet input (default ``"text"``).
        split: The split of a Hub dataset.
        config: The configuration of a Hub dataset.
        batch_size: Texts per forward pass.
        chunk_size: Texts read, embedded and written at a time.
        dtype: ``"float32"``, or ``"float16"`` for half the file size.
        shard: ``"i/n"`` or ``(i, n)``: embed only rows ``[i*N//n, (i+1)*N//n)`` of the ``N``
            rows (0-based), so that the shards' outputs concatenated equal the whole.
        overwrite: Replace an existing ``output`` (it stays until the new one is complete)
            and discard partial work of a run with other settings (a run with the same
            settings is still resumed).
        show_progress: A progress bar over rows; ``None``: when stderr is a terminal.

    Returns:
        The output path.

    Raises:
        ValueError: For an unsupported input or output extension, a missing column, a bad
            ``shard``, ``batch_size``, ``chunk_size`` or ``dtype``, an existing output without
            ``overwrite``, or a restart whose settings differ from the interrupted run's.
        FileNotFoundError: If ``input`` is not a file.
    """
    check_positive_int(batch_size, "batch_size")
    check_positive_int(chunk_size, "chunk_size")
    check_choice(dtype, DTYPES, "dtype")
    span = parse_shard(shard)
    output = check_output(output, overwrite)
    source = open_source(input, "text" if column is None else column, split, config)

    start, stop = shard_rows(len(source), span)
    rows, dim = stop - start, int(model.embedding_dim)
    n_chunks = -(-rows // chunk_size)
    state = {
        "input": source.identity(), "column": None if source.format == "txt" else source.column,
        "model": str(getattr(model, "model_name_or_path", type(model).__name__)),
        "backend": _backend_of(model),
        "dtype": dtype, "shard": list(span) if span else None, "chunk_size": chunk_size,
        "batch_size": batch_size, "rows": rows, "dim": dim, "output": output.suffix.lower(),
    }
    writer = WRITERS[output.suffix.lower()](output, rows, dim, dtype, start)
    progress_file = _progress_path(output)
    done = _resume_point(progress_file, state, writer, overwrite)
    writer.open(resume=done > 0)
    if done:
        logger.info("%s: resuming after %d of %d chunks", output, done, n_chunks)

    if show_progress is None:
        show_progress = sys.stderr.isatty()
    texts = itertools.islice(iter(source), start + done * chunk_size, stop)
    with tqdm(total=rows, initial=min(rows, done * chunk_size), unit="row", unit_scale=True,
              desc=f"Encoding {source.name}", disable=not show_progress) as bar:
        for chunk in range(done, n_chunks):
            row = chunk * chunk_size
            texts_chunk = list(itertools.islice(texts, chunk_size))
            if len(texts_chunk) != min(chunk_size, rows - row):
                got = start + row + len(texts_chunk)
                raise ValueError(f"input {str(input)!r} ended after {got} rows, {stop} "
                                 f"expected: did it change during the run?")
            emb = np.asarray(model.encode(texts_chunk, batch_size=batch_size,
                                          show_progress=False), dtype=np.float32)
            ids = np.arange(start + row, start + row + len(texts_chunk), dtype=np.int64)
            writer.write(chunk, row, emb.astype(dtype, copy=False), ids)
            writer.flush()
            _write_progress(progress_file, {**state, "done_chunks": chunk + 1})
            bar.update(len(texts_chunk))
    writer.finish()
    progress_file.unlink(missing_ok=True)
    return output


def _resume_point(progress_file: Path, state: dict, writer: Any, overwrite: bool) -> int:
    """The number of chunks an earlier run of the same job finished (0 to start afresh).

    Partial work of a run with other settings is refused, or discarded with ``overwrite``.
    """
    try:
        previous = _read_progress(progress_file)
    except ValueError:
        if not overwrite:
            raise
        previous = None
    differ = {k: (previous.get(k), v) for k, v in state.items()
              if previous is not None and previous.get(k) != v}
    if differ and not overwrite:
        detail = "; ".join(f"{k}: was {old!r}, now {new!r}" for k, (old, new) in differ.items())
        raise ValueError(
            f"{progress_file} records an interrupted run with other settings ({detail}); "
            f"run again with the same settings to resume, or pass overwrite=True "
            f"(--overwrite) to discard it and start again")
    if previous is not None and not differ and writer.has_partial():
        return int(previous.get("done_chunks", 0))
    if previous is not None and not differ:
        logger.warning("%s: the partial output %s is missing; starting again", progress_file,
                       partial_path(writer.output))
    progress_file.unlink(missing_ok=True)
    writer.discard()
    return 0


def _backend_of(model: Any) -> str:
    """``"torch"``, or the backend and exported file that embed (``"onnx:model_qint8_avx2.onnx"``):
    a run resumed with another engine would mix two kinds of vectors in one file."""
    backend = str(getattr(model, "backend", "torch"))
    file_name = getattr(model, "file_name", None)
    return backend if file_name is None else f"{backend}:{file_name}"
