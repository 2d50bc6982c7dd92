"""Folders written all at once: a crash (even ``kill -9``) never leaves a half-written one.

Everything is written into a hidden staging folder beside the target
(``.NAME.saving-PID-XXXX``), flushed to disk (``fsync``), and only then moved into place:

* no target yet: one ``rename``, atomic;
* a target holding nothing the new save does not also write (an earlier save of the same
  thing): swapped in one atomic exchange (``renameat2(RENAME_EXCHANGE)`` on Linux; elsewhere
  two renames), then the old copy is deleted;
* a target that also holds other things (``siamtext train`` keeps ``checkpoints/`` inside
  the model folder, a user may keep notes there): each saved entry replaces its namesake
  with an atomic rename, weights last, and the other entries stay. Every file is then
  whole, old or new.

A reader therefore sees the previous folder or the new one, never a truncated file. Staging
folders left by a killed process are hidden (a name that starts with a dot), are never
taken for a checkpoint or a model, and are removed by the next save to the same place once
their process is gone.
"""

from __future__ import annotations

import ctypes
import errno
import os
import secrets
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from siamtext.failpoints import failpoint

STAGING = ".saving-"


def write_folder(folder: str | os.PathLike, write: Callable[[Path], None], *,
                 keep_others: bool = True) -> Path:
    """Call ``write(staging)`` on a fresh hidden folder beside ``folder``, then move it there.

    Args:
        folder: The folder to create or update.
        write: Writes the folder's content into the path it is given.
        keep_others: Keep what ``folder`` holds beyond the new content (see the module
            docstring); False replaces the whole folder in one atomic swap.

    Returns:
        ``folder`` as a Path.

    Raises:
        ValueError: If ``folder`` is an existing file.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"folder must be a directory path, got an existing file: {folder}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(folder)
    staging = make_staging(folder)
    try:
        write(staging)
        commit_folder(staging, folder, keep_others=keep_others)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def make_staging(folder: str | os.PathLike) -> Path:
    """Create and return an empty hidden staging folder beside ``folder``.

    Its name holds this process's id, so that a later save can tell a stale one. Unlike
    ``tempfile.mkdtemp`` it gets the usual permissions (umask), which the final folder keeps.
    """
    folder = Path(folder)
    while True:
        path = folder.parent / f".{folder.name}{STAGING}{os.getpid()}-{secrets.token_hex(4)}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue


def commit_folder(staging: str | os.PathLike, folder: str | os.PathLike, *,
                  keep_others: bool = True) -> None:
    """Flush ``staging`` to disk and move it onto ``folder`` (see the module docstring).

    ``staging`` must sit in the same directory as ``folder``; it is gone afterwards.
    """
    staging, folder = Path(staging), Path(folder)
    fsync_tree(staging)
    failpoint("commit", folder.name)
    if not folder.exists():
        os.rename(staging, folder)
    elif not keep_others or {p.name for p in folder.iterdir()} <= {
            p.name for p in staging.iterdir()}:
        if _exchange(staging, folder):  # staging now holds the old copy
            fsync_dir(folder.parent)
            shutil.rmtree(staging, ignore_errors=True)
            return
        old = staging.with_name(staging.name + ".old")
        os.rename(folder, old)
        os.rename(staging, folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        _merge(staging, folder)
    fsync_dir(folder.parent)


def remove_stale_staging(folder: str | os.PathLike) -> None:
    """Delete the staging folders of ``folder`` left by processes that no longer run."""
    folder = Path(folder)
    if not folder.parent.is_dir():
        return
    prefix = f".{folder.name}{STAGING}"
    for path in folder.parent.iterdir():
        if not path.name.startswith(prefix):
            continue
        pid = path.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def fsync_tree(folder: str | os.PathLike) -> None:
    """``fsync`` every file under ``folder``, then the folders themselves."""
    for root, _, files in os.walk(folder):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(root)


def _merge(staging: Path, folder: Path) -> None:
    """Move each entry of ``staging`` onto its namesake in ``folder``, weights last."""
    entries = sorted(staging.iterdir(), key=lambda p: (p.suffix == ".safetensors", p.name))
    for entry in entries:
        target = folder / entry.name
        if entry.is_dir() and target.is_dir():
            if not _exchange(entry, target):
                old = staging / f"{entry.name}.old"
                os.rename(target, old)
                os.rename(entry, target)
        elif target.is_dir():  # a folder where a file now goes
            shutil.rmtree(target)
            os.replace(entry, target)
        else:
            os.replace(entry, target)
    fsync_dir(folder)
    shutil.rmtree(staging, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2``); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):  # glibc < 2.28, musl
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # file system without it
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def fsync_dir(path: str | os.PathLike) -> None:
    """``fsync`` a directory, so that a rename inside it is on disk (where the OS allows)."""
    if os.name != "posix":  # directories cannot be opened for fsync on Windows
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a directory
        pass
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    if pid == os.getpid() or os.name != "posix":  # os.kill(pid, 0) is no probe on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True
