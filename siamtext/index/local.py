"""The embedded engine: SQLite rows as the source of truth, a faiss search snapshot beside.

A collection is a folder::

    items.sqlite      every item (id, text, label, metadata, vector) and tombstones, WAL mode
    search-SEQ.faiss  the search structure as of write number SEQ (flat or IVF)
    search.json       which snapshot is current, its SEQ and its tuned search depth
    writer.lock       held (flock) by the one process that writes

Why this shape (measured in ``benchmarks/index_online.py``): SQLite makes a batch of 100
items durable in milliseconds and survives ``kill -9`` at any point; a faiss IVF index
answers a query over a million items in a few milliseconds (2.31 ms p50, 3.29 ms p99 at
recall@10 0.9891, with the re-scoring) but is costly to write; HNSW (usearch) answers as
fast but inserts 25 times slower, LanceDB and Milvus Lite answer 6 to 48 times slower. So
writes commit to SQLite first and then go into the in-memory faiss index (searchable when
``add`` returns); the faiss index is written out as a snapshot now and then (on
:meth:`close`, after :meth:`optimize`, after ``snapshot_every`` changes), by temp file,
``fsync`` and ``rename``. Opening reads the snapshot and catches up from SQLite with the
writes made after it, so a crash costs a short catch-up, never a re-embedding or a full
rebuild. A reader process (``writable=False``) does the same on :meth:`refresh`.

A write's SQLite commit and its faiss update happen under one lock, and searches take it
too, so a search in this process sees a write whole or not at all. Rows read to fill in
hits are checked against the write number the search ran at: a row written later makes the
search catch up and run again.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from siamtext.index import rows as rows_mod
from siamtext.index.ann import IVF_FROM, RETRAIN_GROWTH, TUNE_QUERIES, ExactTopK, Structure
from siamtext.index.base import (
    Hit,
    Item,
    Label,
    Store,
    check_meta,
)
from siamtext.index.folder import (
    check_folder,
    publish_snapshot,
    read_snapshot,
    remove_stale_files,
    take_lock,
)

logger = logging.getLogger(__name__)

#: A filtered search over at most this many matching items reads their vectors and scores
#: them exactly; a broader filter searches the index restricted to them.
EXACT_FILTER = 20_000
#: Items changed between two snapshots by default (see ``snapshot_every``).
SNAPSHOT_EVERY = 50_000


class LocalStore(Store):
    """A collection in a local folder (see the module docstring).

    Args (``options`` of :meth:`siamtext.index.Index.create` / ``open``):
        ivf_from: Items from which an IVF index replaces exact search
            (:data:`siamtext.index.ann.IVF_FROM`).
        recall_target: Recall@10 of a sample of stored items that the IVF search depth is
            tuned to (0.95).
        snapshot_every: Items changed after which the snapshot is rewritten (50,000): what
            an open after a crash must replay. Measured at 1,000,000 items: replaying 8,400
            to 119,400 unsnapshotted items made that open 5.0 to 8.2 s, against 1.01 s after
            a clean close.
        background: Retrain a grown IVF index in a background thread (default) instead of
            in the write that crossed the size.
    """

    def __init__(self, folder: Path, rows: rows_mod.Rows, writable: bool,
                 lock_fd: int | None, *, ivf_from: int = IVF_FROM, recall_target: float = 0.95,
                 snapshot_every: int | None = None, background: bool = True,
                 seed: int = 0) -> None:
        if not 0 < recall_target <= 1:
            raise ValueError(f"recall_target must be in (0, 1], got {recall_target!r}")
        self.folder, self.rows, self.writable = folder, rows, writable
        self._lock_fd = lock_fd
        self._settings = rows.settings()
        check_meta(self._settings, str(folder))
        self.dim = int(self._settings["dim"])
        self.ivf_from, self.recall_target = ivf_from, recall_target
        self.snapshot_every, self.background = snapshot_every, background
        self.seed = seed
        self._lock = threading.RLock()
        self._snapshot_lock = threading.Lock()
        self._seq = -1  # the write number the in-memory structure reflects
        self._snap_seq = -1
        self._pending = 0  # items changed since the snapshot (approximate after a reopen)
        self._next_id = 0
        self._rebuild: threading.Thread | None = None
        self._closing = threading.Event()
        self._closed = False
        self.structure = self._load()

    # ------------------------------------------------------------------ opening
    @classmethod
    def exists(cls, location: str, **options: Any) -> bool:
        return (Path(location) / rows_mod.FILE_NAME).is_file()

    @classmethod
    def create(cls, location: str, meta: dict[str, Any], **options: Any) -> LocalStore:
        from siamtext.atomic import write_folder

        folder = check_folder(location)
        if folder.exists() and any(folder.iterdir()):
            what = "a collection" if cls.exists(location) else "files"
            raise FileExistsError(f"{folder} already holds {what}: open it with Index.open, "
                                  "or create the collection in a new or empty folder")
        try:  # all or nothing: a half-created collection never appears
            write_folder(folder, lambda tmp: rows_mod.create(tmp / rows_mod.FILE_NAME, meta),
                         keep_others=False)
        except OSError as err:
            if err.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            raise PermissionError(f"cannot create a collection in {folder.parent} "
                                  f"({err.strerror})") from None
        return cls.open(location, writable=True, **options)

    @classmethod
    def open(cls, location: str, writable: bool = True, **options: Any) -> LocalStore:
        folder = check_folder(location)
        if not cls.exists(location):
            raise FileNotFoundError(f"no collection at {folder} ({rows_mod.FILE_NAME} is "
                                    "missing): create one with Index.create")
        lock_fd = take_lock(folder) if writable else None
        try:
            rows = rows_mod.Rows(folder / rows_mod.FILE_NAME, writable)
            try:
                return cls(folder, rows, writable, lock_fd, **options)
            except BaseException:
                rows.close()
                raise
        except BaseException:
            if lock_fd is not None:
                os.close(lock_fd)
            raise

    def meta(self) -> dict[str, Any]:
        return dict(self._settings)

    # ------------------------------------------------------------------ loading
    def _load(self) -> Structure:
        """The snapshot, caught up with the writes after it; rebuilt from the rows when
        there is no usable snapshot."""
        structure, after = read_snapshot(self.folder)
        if structure is not None:
            self._snap_seq = after
        conn = self.rows.reader()
        with rows_mod.transaction(conn, write=False):
            seq, count = _seq(conn), _count(conn)
            if structure is not None and after > seq:
                logger.warning("%s: the search snapshot (write %d) is newer than the rows "
                               "(write %d); rebuilding it", self.folder, after, seq)
                structure = None
            if structure is None:
                structure, after = self._build(conn, count), -1
            else:
                self._pending = self._apply(structure, conn, after)
                if structure.ntotal != count:
                    logger.warning("%s: the search snapshot holds %d items, the rows %d; "
                                   "rebuilding it", self.folder, structure.ntotal, count)
                    structure, after = self._build(conn, count), -1
            self._next_id = int(conn.execute(
                "SELECT value FROM meta WHERE key = 'next_id'").fetchone()[0])
        self._seq = seq
        if self.writable:
            remove_stale_files(self.folder)
        return structure

    def _build(self, conn: Any, count: int) -> Structure:
        """A new structure over every row, read in ``conn``'s current transaction. An IVF
        structure is trained on a sample of the rows, and tuned against the exact neighbours
        of some of them, found on the way as the rows stream past."""
        truth = None
        if count >= self.ivf_from:
            rng = np.random.default_rng(self.seed)  # the same rows give the same structure
            ids, train = self.rows.sample(Structure.train_size(count), rng, conn)
            structure = Structure.ivf(train, count, seed=self.seed)
            pick = rng.choice(len(ids), size=min(TUNE_QUERIES, len(ids)), replace=False)
            truth = ExactTopK(train[pick].copy(), ids[pick])
            del train
        else:
            structure = Structure.flat(self.dim)
        for ids, vecs in self.rows.changes(-1, conn):
            if self._closing.is_set():
                raise _Aborted
            if vecs is not None:
                structure.add(ids, vecs)
                if truth is not None:
                    truth.update(ids, vecs)
        if truth is not None:
            structure.tune(self.recall_target, truth.queries, truth.query_ids, truth.ids)
        return structure

    def _apply(self, structure: Structure, conn: Any, after: int) -> int:
        """Bring ``structure`` from write ``after`` to ``conn``'s transaction; returns the
        number of items changed."""
        changed = 0
        for ids, vecs in self.rows.changes(after, conn):
            structure.remove(ids)
            if vecs is not None:
                structure.add(ids, vecs)
            changed += len(ids)
        return changed

    # ------------------------------------------------------------------ writes
    def write(self, ids: np.ndarray, vectors: np.ndarray, texts: Sequence[str | None],
              labels: Sequence[Label | None], metadata: Sequence[dict | None]) -> None:
        self._require_writable()
        with self._lock:
            seq = self.rows.write(ids, vectors, texts, labels, metadata)
            if self.structure.kind == "flat" and \
                    self.structure.ntotal + len(ids) >= self.ivf_from:
                self._replace_from_rows()  # the step to IVF, from the rows just committed
            else:
                self.structure.remove(ids)  # an upsert replaces; a new id is not there
                self.structure.add(ids, vectors)
            self._seq = seq
            self._pending += len(ids)
            self._next_id = max(self._next_id, int(ids.max()) + 1)
        self._after_write()

    def delete(self, ids: np.ndarray) -> None:
        self._require_writable()
        with self._lock:
            self._seq = self.rows.delete(ids)
            self._pending += len(ids)
            self.structure.remove(ids)
        self._after_write()

    def next_ids(self, n: int) -> np.ndarray:
        self._require_writable()
        with self._lock:
            start = self._next_id
            self._next_id += n
        return np.arange(start, start + n, dtype=np.int64)

    def _after_write(self) -> None:
        s = self.structure
        if s.kind == "ivf" and s.ntotal > RETRAIN_GROWTH * max(s.trained_n, 1):
            if self.background:
                self._start_rebuild()
            else:
                self.optimize()
            return
        every = self.snapshot_every or SNAPSHOT_EVERY
        if self._pending >= every:
            self.snapshot()

    def _require_writable(self) -> None:
        if not self.writable:
            raise PermissionError(f"{self.folder} was opened read-only")

    # ------------------------------------------------------------------ rebuilds
    def _replace_from_rows(self) -> None:
        """Rebuild the structure from the rows at once (the caller holds the lock)."""
        conn = self.rows.reader()
        with rows_mod.transaction(conn, write=False):
            self.structure = self._build(conn, _count(conn))
            self._seq = _seq(conn)

    def _start_rebuild(self) -> None:
        with self._lock:
            if self._rebuild is not None and self._rebuild.is_alive():
                return
            self._rebuild = threading.Thread(target=self._rebuild_worker, daemon=True,
                                             name=f"siamtext-index-rebuild-{self.folder.name}")
            self._rebuild.start()

    def _rebuild_worker(self) -> None:
        try:
            self.optimize(_snapshot=self.writable)
        except _Aborted:
            logger.info("%s: rebuild stopped by close()", self.folder)
        except Exception:  # the old structure keeps serving; the next write tries again
            logger.exception("%s: rebuilding the search structure failed", self.folder)

    def optimize(self, _snapshot: bool = True) -> None:
        """Retrain and rebuild the search structure for the current size, then swap it in.

        The rows are read in one read transaction while searches and writes go on against
        the old structure; the writes made meanwhile are applied to the new one under the
        lock, just before the swap. Memory peaks at about two structures.
        """
        conn = rows_mod.connect(self.folder / rows_mod.FILE_NAME, False)
        try:
            with rows_mod.transaction(conn, write=False):
                built_at = _seq(conn)
                structure = self._build(conn, _count(conn))
            with self._lock:
                with rows_mod.transaction(conn, write=False):
                    self._apply(structure, conn, built_at)
                    self.structure, self._seq = structure, max(self._seq, _seq(conn))
        finally:
            conn.close()
        if _snapshot and self.writable:
            self.snapshot()

    # ------------------------------------------------------------------ snapshots
    def snapshot(self) -> None:
        """Write the search structure as of now (temp file, fsync, rename, then the
        manifest); searches wait while faiss writes it, not while it is flushed. One
        snapshot at a time (a background rebuild ends with one too)."""
        self._require_writable()
        with self._snapshot_lock:
            with self._lock:
                seq = self._seq
                if seq == self._snap_seq:
                    return
                name = f"search-{seq}.faiss"
                tmp = self.folder / f".{name}.tmp-{os.getpid()}"
                self.structure.write(str(tmp))
                manifest = {**self.structure.settings(), "seq": seq, "file": name}
            publish_snapshot(self.folder, tmp, manifest)
            with self._lock:
                self._pending = 0 if self._seq == seq else self._pending
            self._snap_seq = seq
            remove_stale_files(self.folder)

    # ------------------------------------------------------------------ reads
    def existing(self, ids: np.ndarray) -> np.ndarray:
        return self.rows.existing(ids)

    def get(self, ids: np.ndarray, with_embeddings: bool = False) -> list[Item]:
        found = self.rows.rows(ids.tolist(), with_embeddings)
        return [found[int(i)][1] for i in ids]

    def count(self) -> int:
        with self._lock:
            return self.structure.ntotal

    def iter_items(self, batch_size: int = 1024, with_embeddings: bool = False,
                   where: dict[str, Any] | None = None) -> Iterator[Item]:
        return self.rows.iter_items(batch_size, with_embeddings, where)

    def refresh(self) -> int:
        with self._lock:
            conn = self.rows.reader()
            with rows_mod.transaction(conn, write=False):
                seq = _seq(conn)
                if seq == self._seq:
                    return 0
                if self.structure.kind == "flat" and _count(conn) >= self.ivf_from:
                    self.structure, changed = self._build(conn, _count(conn)), -1
                else:
                    changed = self._apply(self.structure, conn, self._seq)
                self._seq = seq
        s = self.structure
        if s.kind == "ivf" and s.ntotal > RETRAIN_GROWTH * max(s.trained_n, 1):
            self._start_rebuild()
        return changed if changed >= 0 else s.ntotal

    def search(self, queries: np.ndarray, k: int, threshold: float | None,
               where: dict[str, Any] | None) -> list[list[Hit]]:
        allowed = self.rows.ids_where(where) if where else None
        if allowed is not None and not len(allowed):
            return [[] for _ in queries]
        if allowed is not None and len(allowed) <= EXACT_FILTER:
            return self._search_rows(queries, k, threshold, allowed)
        for attempt in range(3):
            with self._lock:
                view = self._seq
                nprobe = None
                s = self.structure
                if allowed is not None and s.kind == "ivf":  # fewer matches per list
                    share = len(allowed) / max(s.ntotal, 1)
                    nprobe = min(s.nlist, int(np.ceil((s.nprobe or 1) / max(share, 1e-9))))
                _, ids = s.search(queries, s.candidates(k), allowed, nprobe)
            hits = self._hydrate(queries, ids, k, threshold, view if attempt < 2 else None)
            if hits is not None:
                return hits
            if not self.writable:
                self.refresh()
        raise AssertionError("unreachable")  # the last attempt never retries

    def _search_rows(self, queries: np.ndarray, k: int, threshold: float | None,
                     allowed: np.ndarray) -> list[list[Hit]]:
        """Exact search over a small filtered set, read from the rows."""
        found = self.rows.rows(allowed.tolist(), with_embeddings=True)
        return _ranked(queries, found, [list(found)] * len(queries), k, threshold)

    def _hydrate(self, queries: np.ndarray, ids: np.ndarray, k: int,
                 threshold: float | None, view: int | None) -> list[list[Hit]] | None:
        """The best ``k`` candidates of each query with their rows, scored exactly by their
        float vectors; ``None`` when a row was written after ``view`` (the caller catches up
        and searches again)."""
        wanted = np.unique(ids[ids >= 0])
        found = self.rows.rows(wanted.tolist(), with_embeddings=True)
        if view is not None and (len(found) < len(wanted) or
                                 any(seq > view for seq, _ in found.values())):
            return None
        per_query = [[i for i in row.tolist() if i >= 0] for row in ids]
        return _ranked(queries, found, per_query, k, threshold)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            s = self.structure
            return {"engine": "local", "path": str(self.folder), "search": s.kind,
                    "nlist": s.nlist, "nprobe": s.nprobe, "sample_recall": s.recall,
                    "trained_items": s.trained_n, "write_number": self._seq,
                    "snapshot_write_number": self._snap_seq,
                    "rebuilding": bool(self._rebuild is not None and self._rebuild.is_alive())}

    # ------------------------------------------------------------------ closing
    def close(self) -> None:
        if self._closed:
            return
        self._closing.set()
        if self._rebuild is not None:
            self._rebuild.join()
        try:
            if self.writable and self._seq != self._snap_seq:
                try:
                    self.snapshot()
                except OSError as err:  # the rows are safe; the next open catches up
                    logger.warning("%s: could not write the search snapshot (%s); the next "
                                   "open catches up from the rows", self.folder, err)
        finally:
            self._closed = True
            self.rows.close()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    def __del__(self) -> None:  # a forgotten close still releases the lock and connections
        if not getattr(self, "_closed", True):
            try:
                self.rows.close()
                if self._lock_fd is not None:
                    os.close(self._lock_fd)
            except Exception:
                pass


class _Aborted(Exception):
    """A rebuild stopped because the store is closing."""


# --------------------------------------------------------------------------- helpers
def _ranked(queries: np.ndarray, found: dict[int, tuple[int, Item]],
            candidates: list[list[int]], k: int, threshold: float | None) -> list[list[Hit]]:
    """Each query's candidates scored by the exact cosine of their stored vectors, best
    first (equal scores: the lower id first), at most ``k``, at or above ``threshold``."""
    out = []
    for q, cand in zip(queries, candidates):
        cand = np.asarray([i for i in cand if i in found], dtype=np.int64)
        if not len(cand):
            out.append([])
            continue
        mat = np.stack([found[int(i)][1].embedding for i in cand])
        scores = mat @ q
        hits = []
        for j in np.lexsort((cand, -scores))[:k]:
            score = float(scores[j])
            if threshold is not None and score < threshold:
                break
            item = found[int(cand[j])][1]
            hits.append(Hit(item.id, score, item.text, item.label, item.metadata))
        out.append(hits)
    return out


def _seq(conn: Any) -> int:
    return int(conn.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()[0])


def _count(conn: Any) -> int:
    return int(conn.execute("SELECT count(*) FROM items").fetchone()[0])
