"""Reading texts and labels from txt/csv/jsonl files, writing rows as csv/jsonl."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable
from pathlib import Path


def _format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    return {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}.get(suffix, "txt")


def read_rows(path: str | Path) -> list[dict] | list[str]:
    """Rows of a csv/tsv (dicts), jsonl (dicts) or text file (one string per line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input file not found: {path}")
    fmt = _format(path)
    with path.open(encoding="utf-8", newline="") as f:
        if fmt in ("csv", "tsv"):
            return list(csv.DictReader(f, delimiter="," if fmt == "csv" else "\t"))
        if fmt == "jsonl":
            rows = []
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as err:
                        raise ValueError(f"{path}:{n}: not a JSON object: {err}") from err
            return rows
        return [line.rstrip("\r\n") for line in f if line.strip()]


def column(rows: list, name: str, path: str | Path) -> list:
    """Values of column ``name``; text files have a single column whatever its name."""
    if rows and isinstance(rows[0], str):
        return list(rows)
    missing = [i for i, row in enumerate(rows) if name not in row]
    if missing:
        have = sorted(rows[missing[0]].keys())
        raise ValueError(f"{path}: row {missing[0] + 1} has no column {name!r} (columns: {have})")
    return [row[name] for row in rows]


def write_rows(path: str | Path | None, rows: Iterable[dict], fields: list[str]) -> None:
    """Write dict rows as csv (also to stdout when ``path`` is None or ``-``) or jsonl."""
    to_stdout = path in (None, "-")
    fmt = "csv" if to_stdout else _format(path)
    if not to_stdout:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    f = sys.stdout if to_stdout else open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115
    try:
        if fmt == "jsonl":
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            writer = csv.DictWriter(f, fieldnames=fields, delimiter="\t" if fmt == "tsv" else ",",
                                    extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    finally:
        if not to_stdout:
            f.close()
