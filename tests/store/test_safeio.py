"""tinymail.store.safeio: synced writes that never leave a half-written file behind."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from tinymail.store import safeio
from tinymail.store.safeio import atomic_replace, fsync_dir, unlink_quietly, write_file_synced


def failing_fsync(fd: int) -> None:
    raise OSError(errno.EIO, os.strerror(errno.EIO))


def test_write_file_synced_writes_exclusively(tmp_path: Path) -> None:
    path = tmp_path / "f"
    data = os.urandom(300_000)
    write_file_synced(path, data, 0o640)
    assert path.read_bytes() == data
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 & ~_umask()
    with pytest.raises(FileExistsError):
        write_file_synced(path, b"other")
    assert path.read_bytes() == data  # the existing file is untouched


def test_write_file_synced_removes_the_file_when_fsync_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The one acceptable fake: a real EIO from fsync needs strace fault injection or a
    # failing block device. safeio calls os.fsync, so a raising os.fsync is that failure.
    monkeypatch.setattr(safeio.os, "fsync", failing_fsync)
    path = tmp_path / "f"
    with pytest.raises(OSError) as info:
        write_file_synced(path, b"data")
    assert info.value.errno == errno.EIO
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_replace_replaces_and_leaves_no_tmp(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_bytes(b"old\n")
    os.chmod(path, 0o644)
    old_inode = path.stat().st_ino
    atomic_replace(path, b"new\n")
    assert path.read_bytes() == b"new\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.stat().st_ino != old_inode  # a new file renamed over, not rewritten in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["users"]
    atomic_replace(tmp_path / "fresh", b"")  # creating works too
    assert (tmp_path / "fresh").read_bytes() == b""


def test_atomic_replace_cleans_a_stale_tmp(tmp_path: Path) -> None:
    path = tmp_path / "state"
    stale = tmp_path / f".state.{os.getpid()}.tmp"
    stale.write_bytes(b"left over by a crash")
    atomic_replace(path, b"ok")
    assert path.read_bytes() == b"ok"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]


def test_atomic_replace_keeps_old_content_when_fsync_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Same injected EIO as above (see the comment there).
    path = tmp_path / "users"
    path.write_bytes(b"old\n")
    monkeypatch.setattr(safeio.os, "fsync", failing_fsync)
    with pytest.raises(OSError):
        atomic_replace(path, b"new\n")
    assert path.read_bytes() == b"old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["users"]


def test_fsync_dir_and_errors(tmp_path: Path) -> None:
    fsync_dir(tmp_path)
    fsync_dir(str(tmp_path))
    with pytest.raises(FileNotFoundError):
        fsync_dir(tmp_path / "missing")
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(NotADirectoryError):
        fsync_dir(tmp_path / "file")


def test_unlink_quietly(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x")
    unlink_quietly(path)
    assert not path.exists()
    unlink_quietly(path)  # already gone: no error
    unlink_quietly(tmp_path)  # a directory: EISDIR/EPERM suppressed
    assert tmp_path.is_dir()


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
