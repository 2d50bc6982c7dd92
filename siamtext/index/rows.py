"""The rows of a local collection in SQLite: the source of truth, durable at every commit.

One file, ``items.sqlite``, in WAL mode with ``synchronous=FULL``: a transaction that
committed is on disk (the write-ahead log is fsynced at each commit), a process killed at
any moment leaves the last committed state, and readers in other processes read while one
writer writes. Every write transaction takes the next sequence number (``seq``); each row
remembers the ``seq`` that last wrote it, and a removed id leaves a tombstone with the
``seq`` of its removal. What changed after a given ``seq`` is therefore two indexed range
reads, which is how a search snapshot, or a reader process, catches up.

Labels are stored JSON-encoded (so ``1`` and ``"1"`` stay apart), metadata as JSON text,
vectors as float32 blobs.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from siamtext.failpoints import failpoint
from siamtext.index.base import ITEM_FIELDS, Item

FILE_NAME = "items.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY, seq INTEGER NOT NULL, text TEXT, label TEXT, metadata TEXT,
    vector BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS items_seq ON items(seq);
CREATE TABLE IF NOT EXISTS removed (id INTEGER PRIMARY KEY, seq INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS removed_seq ON removed(seq);
"""
_CHUNK = 900  # ids per IN (...) clause, under SQLite's default limit on parameters
_BUSY_MS = 30_000


def connect(path: Path, writable: bool) -> sqlite3.Connection:
    """A connection to ``path`` (read-only unless ``writable``), in autocommit mode so that
    transactions are explicit."""
    conn = _connect(f"file:{path}?mode={'rw' if writable else 'ro'}")
    if writable:
        conn.execute("PRAGMA synchronous=FULL")
        return conn
    try:
        conn.execute("SELECT 1 FROM meta LIMIT 1").fetchall()
    except sqlite3.OperationalError:
        # WAL needs its -shm file beside the database; on a read-only medium, where no
        # writer can exist either, SQLite reads the file as immutable instead
        if os.access(path.parent, os.W_OK):
            raise
        conn.close()
        conn = _connect(f"file:{path}?mode=ro&immutable=1")
    return conn


def _connect(uri: str) -> sqlite3.Connection:
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False,
                           timeout=_BUSY_MS / 1000)
    conn.execute(f"PRAGMA busy_timeout={_BUSY_MS}")
    return conn


def create(path: Path, meta: dict[str, Any]) -> None:
    """Create ``path`` with the schema and ``meta`` (``seq`` 0, ``next_id`` 0)."""
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(_SCHEMA)
        with transaction(conn):
            conn.executemany("INSERT INTO meta VALUES (?, ?)",
                             [("settings", json.dumps(meta)), ("seq", "0"), ("next_id", "0")])
    finally:
        conn.close()


class transaction:  # noqa: N801 - used as a context manager, like sqlite3's own
    """``BEGIN IMMEDIATE`` (a write lock at once) or ``BEGIN`` (a consistent read) ...
    ``COMMIT``; ``ROLLBACK`` on any error. SQLite's "disk is full" becomes ``OSError``."""

    def __init__(self, conn: sqlite3.Connection, write: bool = True) -> None:
        self.conn, self.write = conn, write

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE" if self.write else "BEGIN")
        return self.conn

    def __exit__(self, kind: type | None, err: BaseException | None, tb: object) -> None:
        if kind is None:
            try:
                self.conn.execute("COMMIT")
                return
            except sqlite3.Error as commit_err:
                err = commit_err
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
        if isinstance(err, sqlite3.OperationalError) and "full" in str(err):
            raise OSError(errno.ENOSPC, f"the collection's disk is full ({err}): the write "
                                        "was rolled back, everything written before stays") \
                from err
        if kind is None:
            raise err


class Rows:
    """Reads and writes of ``items.sqlite``. Reads use one connection per thread; writes
    go through the writer's connection, serialised by its lock."""

    def __init__(self, path: Path, writable: bool) -> None:
        self.path, self.writable = path, writable
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self.writer = connect(path, True) if writable else None
        self._write_lock = threading.Lock()

    # ------------------------------------------------------------------ connections
    def reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, False)
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    def close(self) -> None:
        with self._conns_lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    # ------------------------------------------------------------------ meta
    def meta(self, key: str) -> str | None:
        row = self.reader().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def settings(self) -> dict[str, Any]:
        raw = self.meta("settings")
        if raw is None:
            raise ValueError(f"{self.path} has no settings: not a siamtext collection")
        return json.loads(raw)

    def seq(self) -> int:
        return int(self.meta("seq") or 0)

    def next_id(self) -> int:
        return int(self.meta("next_id") or 0)

    # ------------------------------------------------------------------ writes
    def write(self, ids: np.ndarray, vectors: np.ndarray, texts: Sequence[str | None],
              labels: Sequence[object], metadata: Sequence[dict | None]) -> int:
        """Insert or replace rows in one transaction; returns its ``seq``."""
        with self._write_lock, transaction(self.writer) as conn:
            seq = _bump(conn)
            rows = [(int(i), seq, t, None if lab is None else json.dumps(lab),
                     None if m is None else json.dumps(m, ensure_ascii=False), v.tobytes())
                    for i, v, t, lab, m in zip(ids, vectors, texts, labels, metadata)]
            conn.executemany("INSERT OR REPLACE INTO items VALUES (?, ?, ?, ?, ?, ?)", rows)
            for part in _chunks(ids):
                conn.execute(f"DELETE FROM removed WHERE id IN ({_marks(part)})", part)
            top = int(ids.max()) + 1
            conn.execute("UPDATE meta SET value = ? WHERE key = 'next_id' AND "
                         "CAST(value AS INTEGER) < ?", (str(top), top))
            failpoint("index", "before-commit")
        return seq

    def delete(self, ids: np.ndarray) -> int:
        """Delete rows and leave tombstones, in one transaction; returns its ``seq``."""
        with self._write_lock, transaction(self.writer) as conn:
            seq = _bump(conn)
            for part in _chunks(ids):
                conn.execute(f"DELETE FROM items WHERE id IN ({_marks(part)})", part)
            conn.executemany("INSERT OR REPLACE INTO removed VALUES (?, ?)",
                             [(int(i), seq) for i in ids])
        return seq

    # ------------------------------------------------------------------ reads
    def count(self) -> int:
        return int(self.reader().execute("SELECT count(*) FROM items").fetchone()[0])

    def existing(self, ids: np.ndarray) -> np.ndarray:
        conn, found = self.reader(), []
        for part in _chunks(ids):
            found += [r[0] for r in conn.execute(
                f"SELECT id FROM items WHERE id IN ({_marks(part)})", part)]
        return np.asarray(found, dtype=np.int64)

    def rows(self, ids: Sequence[int], with_embeddings: bool = False
             ) -> dict[int, tuple[int, Item]]:
        """``id -> (seq, Item)`` for the ids that are stored (with its ``embedding`` when
        asked: re-ranking candidates reads them)."""
        conn, out = self.reader(), {}
        cols = "id, seq, text, label, metadata" + (", vector" if with_embeddings else "")
        for part in _chunks(list(ids)):
            for row in conn.execute(f"SELECT {cols} FROM items WHERE id IN ({_marks(part)})",
                                    part):
                out[row[0]] = (row[1], _item(row, with_embeddings))
        return out

    def iter_items(self, batch_size: int, with_embeddings: bool,
                   where: dict[str, Any] | None) -> Iterator[Item]:
        cols = "id, seq, text, label, metadata" + (", vector" if with_embeddings else "")
        clause, params = where_sql(where)
        last, op = -(2**63), ">="
        conn = connect(self.path, False)  # its own: a generator may outlive a thread's turn
        conn.execute("BEGIN")  # one read transaction: every batch from the same state
        try:
            while True:
                batch = conn.execute(
                    f"SELECT {cols} FROM items WHERE id {op} ? {clause} ORDER BY id LIMIT ?",
                    (last, *params, batch_size)).fetchall()
                if not batch:
                    return
                for row in batch:
                    yield _item(row, with_embeddings)
                last, op = batch[-1][0], ">"
        finally:
            conn.close()  # ends the read transaction

    def ids_where(self, where: dict[str, Any]) -> np.ndarray:
        clause, params = where_sql(where)
        rows = self.reader().execute(f"SELECT id FROM items WHERE 1 {clause}", params)
        return np.fromiter((r[0] for r in rows), dtype=np.int64)

    def changes(self, after: int, conn: sqlite3.Connection | None = None,
                batch_size: int = 50_000) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """What changed after ``seq`` ``after``, read in the current transaction of
        ``conn``: first ``(removed_ids, None)``, then ``(ids, vectors)`` chunks of the rows
        written since (every row when ``after`` is -1)."""
        conn = conn or self.reader()
        gone = np.fromiter((r[0] for r in conn.execute(
            "SELECT id FROM removed WHERE seq > ?", (after,))), dtype=np.int64)
        yield gone, None
        cursor = conn.execute("SELECT id, vector FROM items WHERE seq > ? ORDER BY id",
                              (after,))
        while batch := cursor.fetchmany(batch_size):
            ids = np.fromiter((r[0] for r in batch), dtype=np.int64, count=len(batch))
            vecs = np.frombuffer(b"".join(r[1] for r in batch), dtype=np.float32)
            yield ids, vecs.reshape(len(batch), -1)

    def sample(self, n: int, rng: np.random.Generator, conn: sqlite3.Connection | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``n`` stored ``(ids, vectors)`` drawn by ``rng`` (to train a search
        structure), in id order: the same rows and the same ``rng`` give the same sample."""
        conn = conn or self.reader()
        ids = np.fromiter((r[0] for r in conn.execute("SELECT id FROM items ORDER BY id")),
                          dtype=np.int64)
        pick = np.sort(rng.choice(ids, size=min(n, len(ids)), replace=False))
        blobs = []
        for part in _chunks(pick):
            blobs += [r[0] for r in conn.execute(
                f"SELECT vector FROM items WHERE id IN ({_marks(part)}) ORDER BY id", part)]
        return pick, np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), -1)


# --------------------------------------------------------------------------- helpers
def _bump(conn: sqlite3.Connection) -> int:
    seq = int(conn.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()[0]) + 1
    conn.execute("UPDATE meta SET value = ? WHERE key = 'seq'", (str(seq),))
    return seq


def _item(row: tuple, with_embeddings: bool) -> Item:
    emb = np.frombuffer(row[5], dtype=np.float32).copy() if with_embeddings else None
    return Item(id=row[0], text=row[2], label=None if row[3] is None else json.loads(row[3]),
                metadata=None if row[4] is None else json.loads(row[4]), embedding=emb)


def _chunks(ids: Sequence[int] | np.ndarray) -> Iterator[list[int]]:
    ids = [int(i) for i in ids]
    for a in range(0, len(ids), _CHUNK):
        yield ids[a : a + _CHUNK]


def _marks(part: list) -> str:
    return ",".join("?" * len(part))


def where_sql(where: dict[str, Any] | None) -> tuple[str, list[Any]]:
    """A checked ``where`` filter as ``"AND ..."`` SQL and its parameters.

    ``label`` compares the JSON-encoded label; a metadata key compares by JSON type and value
    (``json_type`` tells ``true`` from ``1``), ``None`` matches a missing key or ``null``.
    """
    if not where:
        return "", []
    clauses, params = [], []
    for key, value in where.items():
        options, sub = value if isinstance(value, list) else [value], []
        for v in options:
            if key in ITEM_FIELDS:
                if v is None:
                    sub.append("label IS NULL")
                else:
                    sub.append("label = ?")
                    params.append(json.dumps(v))
                continue
            path = '$."' + key.replace('"', '\\"') + '"'
            if v is None:
                sub.append("(json_type(metadata, ?) IS NULL OR json_type(metadata, ?) = 'null')")
                params += [path, path]
            elif isinstance(v, bool):
                sub.append("json_type(metadata, ?) = ?")
                params += [path, "true" if v else "false"]
            elif isinstance(v, str):
                sub.append("(json_type(metadata, ?) = 'text' AND json_extract(metadata, ?) = ?)")
                params += [path, path, v]
            else:
                sub.append("(json_type(metadata, ?) IN ('integer', 'real') AND "
                           "json_extract(metadata, ?) = ?)")
                params += [path, path, v]
        clauses.append("(" + " OR ".join(sub) + ")")
    return "AND " + " AND ".join(clauses), params
