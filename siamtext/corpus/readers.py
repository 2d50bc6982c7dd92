"""Lazy readers of one text column from txt, csv/tsv, jsonl and parquet files.

Nothing here holds the file in memory: rows are counted in a cheap first pass (parquet
reads its metadata) and then streamed one at a time. A row is never dropped: an empty
line, a null or a non-string cell, or a jsonl line that is not a JSON object is read as
the empty string, so row ``i`` of the output is always row ``i`` of the input. (A wholly
blank line of a csv/tsv/jsonl file holds no record and is not a row, as in pandas and
``datasets``.)
"""

from __future__ import annotations

import csv
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

INPUT_FORMATS = {".txt": "txt", ".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl",
                 ".parquet": "parquet"}
_PARQUET_BATCH = 8192


def _cell(value: object) -> str:
    """A cell as text: strings unchanged, anything else (null, numbers, lists) as ``""``."""
    return value if isinstance(value, str) else ""


def _csv_field_limit() -> None:
    """Let the csv module read long texts (its default cap is 128 KiB per field)."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


class TextSource:
    """One text column of a local file, counted and read lazily.

    Args:
        path: A ``.txt`` (one text per line, the line break stripped), ``.csv``, ``.tsv``,
            ``.jsonl`` or ``.parquet`` file.
        column: The text column of csv/tsv/jsonl/parquet input (ignored for txt).

    Raises:
        FileNotFoundError: If ``path`` is not a file.
        ValueError: For another extension (naming the supported ones), or a ``column`` the
            file lacks (naming the columns it has).
    """

    def __init__(self, path: str | Path, column: str = "text") -> None:
        self.path = Path(path)
        self.format = INPUT_FORMATS.get(self.path.suffix.lower())
        if self.format is None:
            raise ValueError(f"input {str(path)!r}: unsupported file type "
                             f"{self.path.suffix!r}; expected one of {sorted(INPUT_FORMATS)}")
        if not self.path.is_file():
            raise FileNotFoundError(f"input file not found: {self.path}")
        if self.format in ("csv", "tsv"):
            _csv_field_limit()
        self.name = self.path.name
        self.column = column
        self._len: int | None = None
        self._check_column()

    def identity(self) -> dict:
        """What a resumed run compares: the resolved path, size and modification time."""
        stat = os.stat(self.path)
        return {"path": str(self.path.resolve()), "size": stat.st_size,
                "mtime_ns": stat.st_mtime_ns}

    def _columns(self) -> list[str] | None:
        """The columns the file has, or ``None`` when it cannot tell (empty jsonl)."""
        if self.format in ("csv", "tsv"):
            with self.path.open(encoding="utf-8", errors="replace", newline="") as f:
                header = next(csv.reader(f, delimiter=self._delimiter), None)
            return list(header or [])
        if self.format == "parquet":
            import pyarrow.parquet as pq

            return list(pq.ParquetFile(self.path).schema_arrow.names)
        with self.path.open(encoding="utf-8", errors="replace") as f:  # jsonl: the first row
            for line in f:
                if line.strip():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError:
                        return None
                    return sorted(row) if isinstance(row, dict) else None
        return None

    def _check_column(self) -> None:
        if self.format == "txt":
            return
        columns = self._columns()
        if columns is not None and self.column not in columns:
            raise ValueError(f"input {str(self.path)!r} has no column {self.column!r} "
                             f"(columns: {columns}); choose one with column= / --column")

    @property
    def _delimiter(self) -> str:
        return "\t" if self.format == "tsv" else ","

    def __len__(self) -> int:
        """The number of rows, counted once with a pass that does not parse texts."""
        if self._len is None:
            self._len = self._count()
        return self._len

    def _count(self) -> int:
        if self.format == "parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(self.path).metadata.num_rows
        if self.format == "txt":
            count, last = 0, b"\n"
            with self.path.open("rb") as f:
                while block := f.read(1 << 20):
                    count += block.count(b"\n")
                    last = block[-1:]
            return count + (last != b"\n")
        if self.format == "jsonl":
            with self.path.open("rb") as f:
                return sum(1 for line in f if line.strip())
        with self.path.open(encoding="utf-8", errors="replace", newline="") as f:
            reader = csv.reader(f, delimiter=self._delimiter)
            next(reader, None)  # the header
            return sum(1 for row in reader if row)  # csv.DictReader skips blank lines too

    def __iter__(self) -> Iterator[str]:
        """Every row's text, in file order."""
        return getattr(self, f"_iter_{self.format if self.format != 'tsv' else 'csv'}")()

    def _iter_txt(self) -> Iterator[str]:
        with self.path.open("rb") as f:
            for line in f:
                yield line.decode("utf-8", errors="replace").rstrip("\r\n")

    def _iter_csv(self) -> Iterator[str]:
        with self.path.open(encoding="utf-8", errors="replace", newline="") as f:
            for row in csv.DictReader(f, delimiter=self._delimiter):
                yield _cell(row.get(self.column))

    def _iter_jsonl(self) -> Iterator[str]:
        with self.path.open("rb") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    row = None
                if not isinstance(row, dict):
                    logger.warning("%s:%d: not a JSON object; encoded as ''", self.path, n)
                    row = {}
                yield _cell(row.get(self.column))

    def _iter_parquet(self) -> Iterator[str]:
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(self.path).iter_batches(batch_size=_PARQUET_BATCH,
                                                            columns=[self.column]):
            yield from (_cell(v) for v in batch.column(0).to_pylist())


class HubSource:
    """One text column of a Hugging Face dataset, streamed with ``datasets``.

    Args:
        name: A Hub dataset id (or a local dataset folder), given to
            ``datasets.load_dataset(name, config, split=split, streaming=True)``.
        column: The text column.
        split: The split to read.
        config: The dataset configuration, if it has several.

    The row count comes from the dataset's metadata when it records the split's size, else
    from a first streaming pass over the column.

    Raises:
        ValueError: For a split the dataset lacks, or a ``column`` it lacks (naming the
            columns it has).
    """

    format = "hub"

    def __init__(self, name: str, column: str = "text", split: str = "train",
                 config: str | None = None) -> None:
        import datasets

        self.name, self.column, self.split, self.config = name, column, split, config
        try:
            self._data = datasets.load_dataset(name, config, split=split, streaming=True)
        except ValueError as err:
            raise ValueError(f"input {name!r}: cannot stream split {split!r}: {err}") from err
        columns = self._data.column_names
        if columns is None:
            first = next(iter(self._data), None)
            columns = sorted(first) if isinstance(first, dict) else None
        if columns is not None and column not in columns:
            raise ValueError(f"input {name!r} has no column {column!r} (columns: "
                             f"{list(columns)}); choose one with column= / --column")
        self._len: int | None = None

    def identity(self) -> dict:
        """What a resumed run compares: the dataset, its configuration and split."""
        return {"dataset": self.name, "config": self.config, "split": self.split}

    def __len__(self) -> int:
        if self._len is None:
            splits = getattr(self._data.info, "splits", None) or {}
            known = splits.get(self.split) if hasattr(splits, "get") else None
            rows = getattr(known, "num_examples", None)
            self._len = int(rows) if rows else sum(1 for _ in self._column())
        return self._len

    def _column(self) -> Iterator[dict]:
        return iter(self._data.select_columns([self.column]))

    def __iter__(self) -> Iterator[str]:
        return (_cell(row.get(self.column)) for row in self._column())


def open_source(input: str | Path, column: str = "text", split: str = "train",
                config: str | None = None) -> TextSource | HubSource:
    """A local file (by its extension), else a dataset folder or a Hub dataset id."""
    path = Path(input)
    if path.is_file() or path.suffix or not str(input):
        return TextSource(path, column)
    return HubSource(str(input), column, split, config)
