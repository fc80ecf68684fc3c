"""net/direct.py's MailboxWriter and net/wire.py's DirectSender, without a server around them."""

from __future__ import annotations

import errno
import socket
import threading
import time
from pathlib import Path

import pytest
import trio

from tinymail.net import direct
from tinymail.net.wire import DirectSender
from tinymail.queue.model import Envelope


def job(tmp_path: Path, n: int, owners: tuple[str, ...] = ("alice", "bob")) -> direct._Job:
    envelope = Envelope(f"Q{n}", "s@example.net", tuple(owners), time.time(), 4)
    return direct._Job(
        envelope=envelope,
        maildirs=[tmp_path / o for o in owners],
        content=b"m%d\n" % n,
        rcpts=list(owners),
    )


async def test_concurrent_messages_are_all_stored_by_at_most_two_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = direct.MailboxWriter()
    jobs = [job(tmp_path, n) for n in range(40)]
    names: set[str] = set()
    real = direct._store_batch

    def store_batch(batch: list[direct._Job]) -> None:
        names.add(threading.current_thread().name + str(threading.get_ident()))
        real(batch)

    monkeypatch.setattr(direct, "_store_batch", store_batch)
    async with trio.open_nursery() as nursery:
        for j in jobs:
            nursery.start_soon(writer.store, j)
    assert all(j.done == {"alice", "bob"} for j in jobs)
    assert 1 <= len(names) <= direct.WRITERS
    for owner in ("alice", "bob"):
        stored = sorted(p.read_bytes() for p in (tmp_path / owner / "new").iterdir())
        assert stored == sorted(b"Return-Path: <s@example.net>\nm%d\n" % n for n in range(40))
        assert list((tmp_path / owner / "tmp").iterdir()) == []


async def test_failed_directory_fsync_delivers_nobody(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def eio(path: Path) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(direct, "fsync_dir", eio)
    j = job(tmp_path, 1)
    await direct.MailboxWriter().store(j)
    assert j.done == set()  # the session queues the message instead
    assert "qid=Q1 mailbox fsync failed, queueing instead" in caplog.text


async def test_failed_write_delivers_nobody_and_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "alice").write_bytes(b"")  # not a directory: the Maildir cannot be made
    j = job(tmp_path, 1, ("alice",))
    await direct.MailboxWriter().store(j)
    assert j.done == set()


async def test_direct_sender_waits_when_the_send_buffer_is_full() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(a))
        sender = DirectSender(stream)
        payload = bytes(range(256)) * 4096  # 1 MiB: far more than the buffer holds
        received = bytearray()

        async def drain() -> None:
            b.setblocking(False)
            while len(received) < len(payload):
                await trio.lowlevel.wait_readable(b)
                received.extend(b.recv(65536))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain)
            await sender.send_all(payload)
        sender.close()
        assert bytes(received) == payload
        await stream.send_all(b"still open")  # closing the sender leaves the connection
        b.setblocking(True)
        assert b.recv(100) == b"still open"


async def test_direct_sender_reports_a_closed_peer_as_broken() -> None:
    a, b = socket.socketpair()
    with a:
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(a))
        sender = DirectSender(stream)
        b.close()
        with pytest.raises(trio.BrokenResourceError):
            for _ in range(100):  # the first send may still land in the buffer
                await sender.send_all(b"x" * 65536)
        sender.close()
