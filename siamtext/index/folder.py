"""The files of a local collection's folder (see :mod:`siamtext.index.local`): the writer
lock, the search snapshots ``search-SEQ.faiss`` and the manifest ``search.json`` naming the
current one, written by temp file, ``fsync`` and rename so that a crash leaves the old or the
new, never half of one."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
from pathlib import Path

from siamtext.atomic import fsync_dir
from siamtext.failpoints import failpoint
from siamtext.index.ann import Structure
from siamtext.index.base import IndexLockedError

logger = logging.getLogger(__name__)

MANIFEST = "search.json"
LOCK = "writer.lock"
_SNAPSHOT = re.compile(r"^search-(\d+)\.faiss$")


def check_folder(location: str) -> Path:
    folder = Path(location)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"a local collection is a folder, but {folder} is a file")
    return folder


def take_lock(folder: Path) -> int:
    path = folder / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise PermissionError(f"cannot open {folder} for writing ({err.strerror}): open it "
                              "with readonly=True to search it") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise IndexLockedError(f"{folder} is already open for writing (by process {holder}); "
                               "one writer at a time: close that one, or open this one with "
                               "readonly=True") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: Path, payload: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(payload, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def remove_stale_files(folder: Path) -> None:
    """Delete snapshots older than the current one and the one before it (a reader may
    still be opening that one), and temporary files of processes that died."""
    snapshots = sorted((int(m.group(1)), p) for p in folder.iterdir()
                       if (m := _SNAPSHOT.match(p.name)))
    current = None
    try:
        current = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["file"]
    except (OSError, ValueError, KeyError):
        pass
    names = [p.name for _, p in snapshots]
    keep = set(names[names.index(current) - 1 : names.index(current) + 1]) \
        if current in names else set()
    for _, path in snapshots:
        if path.name not in keep:
            path.unlink(missing_ok=True)
    for path in folder.glob(".search*.tmp-*"):
        if not path.name.endswith(f".tmp-{os.getpid()}"):
            path.unlink(missing_ok=True)


def read_snapshot(folder: Path) -> tuple[Structure | None, int]:
    """The current snapshot and the write number it holds, or ``(None, -1)`` when there is
    none or it cannot be read (a damaged snapshot costs a rebuild, never the collection)."""
    path = folder / MANIFEST
    err: Exception | None = None
    for _ in range(3):  # a writer may replace the snapshot while this reads it
        if not path.is_file():
            return None, -1
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
            return Structure.read(str(folder / manifest["file"]), manifest), int(manifest["seq"])
        except Exception as e:
            err = e
    logger.warning("%s: cannot read the search snapshot (%s); rebuilding it from the rows",
                   folder, err)
    return None, -1


def publish_snapshot(folder: Path, tmp: Path, manifest: dict) -> None:
    """Make the snapshot written to ``tmp`` current: ``fsync`` it, rename it to
    ``manifest["file"]``, then replace the manifest (each step durable before the next). On
    any failure the temporary file is removed and the previous snapshot stays current."""
    try:
        failpoint("index", "snapshot-written")
        fsync_file(tmp)
        os.replace(tmp, folder / manifest["file"])
        failpoint("index", "snapshot-renamed")
        write_json(folder / MANIFEST, manifest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
