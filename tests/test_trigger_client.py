"""control_client.trigger against real FIFOs: who reads, nobody reads, not a FIFO, full."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tinymail.control_client import trigger, trigger_path


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    path = trigger_path(tmp_path).parent
    path.mkdir()
    return path


@pytest.fixture
def reader(tmp_path: Path, run_dir: Path) -> Iterator[int]:
    """The FIFO with a reader, as a running daemon holds it."""
    os.mkfifo(trigger_path(tmp_path), 0o600)
    fd = os.open(trigger_path(tmp_path), os.O_RDONLY | os.O_NONBLOCK)
    yield fd
    os.close(fd)


def test_a_reader_gets_the_line(tmp_path: Path, reader: int) -> None:
    assert trigger(tmp_path, "4C2K9QX7BM1TZ8H") is True
    assert trigger(tmp_path, "4C2K9QX7BM1TZ8J") is True
    assert os.read(reader, 4096) == b"4C2K9QX7BM1TZ8H\n4C2K9QX7BM1TZ8J\n"


def test_no_fifo_or_no_reader_means_no_daemon(tmp_path: Path) -> None:
    assert trigger(tmp_path, "A1") is False  # not even run/
    trigger_path(tmp_path).parent.mkdir()
    assert trigger(tmp_path, "A1") is False
    os.mkfifo(trigger_path(tmp_path))  # left by a killed daemon: nobody reads it
    assert trigger(tmp_path, "A1") is False


def test_something_else_in_its_place_is_not_written(tmp_path: Path, run_dir: Path) -> None:
    path = trigger_path(tmp_path)
    path.write_bytes(b"")
    assert trigger(tmp_path, "A1") is None
    assert path.read_bytes() == b""
    path.unlink()
    target = tmp_path / "elsewhere"
    target.write_bytes(b"")
    path.symlink_to(target)
    assert trigger(tmp_path, "A1") is None
    assert target.read_bytes() == b""


def test_a_full_fifo_cannot_tell(tmp_path: Path, reader: int) -> None:
    writer = os.open(trigger_path(tmp_path), os.O_WRONLY | os.O_NONBLOCK)
    try:
        with pytest.raises(BlockingIOError):
            for _ in range(1 << 20):  # bounded: a pipe holds 64 KiB by default, at most 1 MiB
                os.write(writer, b"x" * 4096)
        assert trigger(tmp_path, "A1") is None
    finally:
        os.close(writer)
