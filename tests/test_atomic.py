"""Atomic folder writes: the previous folder survives a failed save, others' files stay."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from siamtext import atomic
from siamtext.atomic import write_folder


def writer(files: dict[str, str]):
    def write(folder: Path) -> None:
        for name, text in files.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
    return write


def listing(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture(params=[True, False], ids=["exchange", "two-renames"])
def exchange(request, monkeypatch) -> bool:
    if not request.param:
        monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    return request.param


def test_new_folder_gets_normal_permissions(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "model", writer({"a.json": "1", "sub/b.txt": "2"}))
    assert listing(folder) == {"a.json": "1", "sub/b.txt": "2"}
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~mask
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no staging left


def test_overwrite_replaces_an_earlier_save(tmp_path: Path, exchange: bool) -> None:
    folder = tmp_path / "model"
    write_folder(folder, writer({"a.json": "old", "sub/b.txt": "old"}))
    write_folder(folder, writer({"a.json": "new", "sub/b.txt": "new", "c": "new"}))
    assert listing(folder) == {"a.json": "new", "sub/b.txt": "new", "c": "new"}
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_other_entries_of_the_folder_are_kept(tmp_path: Path, exchange: bool) -> None:
    folder = tmp_path / "model"
    write_folder(folder, writer({"a.json": "old", "sub/b.txt": "old", "w.safetensors": "old"}))
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "note").write_text("keep")
    write_folder(folder, writer({"a.json": "new", "sub/b.txt": "new", "w.safetensors": "new"}))
    assert listing(folder) == {"a.json": "new", "checkpoints/note": "keep",
                               "sub/b.txt": "new", "w.safetensors": "new"}
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    write_folder(folder, writer({"a.json": "x"}), keep_others=False)  # whole-folder swap
    assert listing(folder) == {"a.json": "x"}


def test_a_failed_write_leaves_the_previous_folder(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    write_folder(folder, writer({"a.json": "old"}))

    def broken(staging: Path) -> None:
        (staging / "a.json").write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_folder(folder, broken)
    assert listing(folder) == {"a.json": "old"}
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_stale_staging_of_dead_processes_is_removed(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale = tmp_path / f".model{atomic.STAGING}{dead}-abcd"
    stale.mkdir()
    mine = tmp_path / f".model{atomic.STAGING}{os.getpid()}-abcd"  # a live process's
    mine.mkdir()
    write_folder(tmp_path / "model", writer({"a": "1"}))
    assert not stale.exists() and mine.exists()


def test_an_existing_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model").write_text("x")
    with pytest.raises(ValueError, match="existing file"):
        write_folder(tmp_path / "model", writer({"a": "1"}))
