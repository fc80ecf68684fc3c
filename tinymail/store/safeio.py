"""Durable file writes: tmp -> fsync file -> rename -> fsync directory.

Rules (research/reliability-security.md 1.6): a write counts only after the
file and the directory entry are fsynced; if fsync fails the data is treated as
lost (never retried and then reported as success: the "fsyncgate" lesson), so
the half-written file is removed and the error propagates as OSError.

`sendmail` queues through these functions (queue/qfile.py), so this module imports only `os`:
no pathlib, contextlib or __future__ (annotations naming Path are quoted).
"""

import os

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: sendmail's queueing path imports this module
if TYPE_CHECKING:
    from pathlib import Path


def fsync_dir(path: "Path | str") -> None:
    """fsync a directory so that entries created or renamed in it are durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes | bytearray) -> None:
    """os.write until all of `data` is written."""
    # The views are released even when os.write raises, so the buffer stays resizable.
    with memoryview(data) as whole:
        offset = 0
        while offset < len(whole):
            with whole[offset:] as part:
                offset += os.write(fd, part)


def write_file_synced(path: "Path | str", data: bytes, mode: int = 0o600) -> None:
    """Create `path` exclusively with `data`, fsynced; on any error remove it and re-raise."""
    sync_and_close(create_written(path, data, mode), path)


def create_written(path: "Path | str", data: bytes, mode: int = 0o600) -> int:
    """Create `path` exclusively and write `data`; return the open descriptor, not yet fsynced.

    The caller must pass it to `sync_and_close`. On any error the file is removed.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        write_all(fd, data)
    except BaseException:
        os.close(fd)
        unlink_quietly(path)
        raise
    return fd


def sync_and_close(fd: int, path: "Path | str") -> None:
    """fsync and close `fd`, the file at `path`; on any error remove the file and re-raise."""
    try:
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        unlink_quietly(path)
        raise
    try:
        os.close(fd)
    except OSError:
        unlink_quietly(path)
        raise


def atomic_replace(path: "Path", data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data` atomically and durably (write new, fsync, rename, fsync dir)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    unlink_quietly(tmp)
    write_file_synced(tmp, data, mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        unlink_quietly(tmp)
        raise
    fsync_dir(path.parent)


def unlink_quietly(path: "Path | str") -> None:
    """Remove a file if it exists; errors are ignored (used on cleanup paths)."""
    try:  # noqa: SIM105 (contextlib.suppress: one more module to import at sendmail's start-up)
        os.unlink(path)
    except OSError:
        pass
