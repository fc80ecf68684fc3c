"""Crash consistency: every message that got a 250 is delivered after a crash and restart.

A plain kill -9 cannot reveal a missing fsync (the page cache survives), so these
tests also run the server under strace: failing fsync/write with EIO/ENOSPC, killing
it at the Nth rename/link/fsync, and checking from the syscall log that
fsync(file) -> rename -> fsync(dir) all happen before the 250 is written.
"""

from __future__ import annotations

import re
import smtplib
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.e2e.helpers import (
    ServerProcess,
    delivered_qids,
    queue_empty,
    require_tool,
    wait_until,
)

QUEUED = re.compile(rb"queued as (\w+)")


def attach_strace(pid: int, log: Path, *options: str) -> subprocess.Popen[bytes]:
    """Attach strace to every thread of a running server; return once it is tracing."""
    strace = require_tool("strace")
    proc = subprocess.Popen([strace, "-f", "-qq", "-o", str(log), *options, "-p", str(pid)])
    status = Path(f"/proc/{pid}/status")
    wait_until(lambda: "TracerPid:\t0" not in status.read_text(), timeout=10)
    time.sleep(0.2)  # let strace reach every thread of the process
    return proc


def send_one(port: int, n: int) -> tuple[int, bytes]:
    """One transaction; returns the reply to the final dot."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("crash.example.net")
        client.mail("sender@example.net")
        client.rcpt("root@example.test")
        return client.data(b"Subject: crash test %d\r\n\r\nbody %d\r\n" % (n, n))


def restart_and_check(config: Path, tmp_path: Path, acknowledged: set[str]) -> None:
    """Start a clean server, let it drain the queue, check every acknowledged qid landed."""
    data_dir = tmp_path / "data"
    server = ServerProcess(config, tmp_path / "restart.log").wait_ready()
    try:
        wait_until(lambda: queue_empty(data_dir))
        delivered = delivered_qids(data_dir / "mail" / "root")
        assert acknowledged <= delivered, f"lost after crash: {acknowledged - delivered}"
        assert not any((data_dir / "queue" / "corrupt").iterdir())
    finally:
        assert server.terminate() == 0


def test_sigkill_while_clients_send_loses_nothing(config_path: Path, tmp_path: Path) -> None:
    server = ServerProcess(config_path, tmp_path / "serve.log").wait_ready()
    port = server.ports["smtp"]
    acknowledged: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()

    def client(worker: int) -> None:
        for n in range(200):  # bounded; the kill ends it much sooner
            if stop.is_set():
                return
            try:
                code, reply = send_one(port, worker * 1000 + n)
            except (OSError, smtplib.SMTPException):
                return
            m = QUEUED.search(reply)
            if code == 250 and m:
                with lock:
                    acknowledged.add(m.group(1).decode())

    threads = [threading.Thread(target=client, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    wait_until(lambda: len(acknowledged) >= 30, timeout=30)
    server.kill()
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert len(acknowledged) >= 30
    restart_and_check(config_path, tmp_path, acknowledged)


@pytest.mark.parametrize(
    ("syscall", "when"),
    [
        ("rename", 1),
        ("rename", 3),
        ("link", 1),
        ("link", 2),
        ("fsync", 1),
        ("fsync", 2),
        ("fsync", 3),
        ("fsync", 4),
        ("fsync", 6),
        ("unlink", 2),
    ],
)
def test_sigkill_at_nth_syscall_loses_nothing(
    config_path: Path, tmp_path: Path, syscall: str, when: int
) -> None:
    server = ServerProcess(config_path, tmp_path / "serve.log").wait_ready()
    port = server.ports["smtp"]
    inject = f"inject={syscall}:signal=SIGKILL:when={when}"
    tracer = attach_strace(
        server.proc.pid, tmp_path / "strace.log", "-e", f"trace={syscall}", "-e", inject
    )
    acknowledged: set[str] = set()
    for n in range(4):
        try:
            code, reply = send_one(port, n)
        except (OSError, smtplib.SMTPException):
            break
        m = QUEUED.search(reply)
        assert code == 250 and m, reply
        acknowledged.add(m.group(1).decode())
        time.sleep(0.2)  # let delivery run so later syscalls are reached too
    server.kill()
    tracer.wait(timeout=10)
    restart_and_check(config_path, tmp_path, acknowledged)


@pytest.mark.parametrize(
    ("inject", "code", "enhanced"),
    [("fsync:error=EIO", 451, b"4.3.0"), ("write:error=ENOSPC", 452, b"4.3.1")],
)
def test_failed_fsync_or_write_gives_4xx_and_leaves_nothing(
    config_path: Path, tmp_path: Path, inject: str, code: int, enhanced: bytes
) -> None:
    server = ServerProcess(config_path, tmp_path / "serve.log").wait_ready()
    syscall = inject.split(":")[0]
    tracer = attach_strace(
        server.proc.pid, tmp_path / "strace.log", "-e", f"trace={syscall}", "-e", f"inject={inject}"
    )
    try:
        for n in range(2):
            got, reply = send_one(server.ports["smtp"], n)
            assert got == code and reply.startswith(enhanced), reply
        queue = tmp_path / "data" / "queue"
        assert list((queue / "active").iterdir()) == []
        assert list((queue / "incoming").iterdir()) == []
    finally:
        server.kill()
        tracer.wait(timeout=10)


def traced_send(
    config_path: Path, tmp_path: Path, rcpt: str, syscalls: str
) -> tuple[str, list[str]]:
    """Send one message to `rcpt` with strace attached; return its qid and the syscall log."""
    server = ServerProcess(config_path, tmp_path / "serve.log").wait_ready()
    log = tmp_path / "strace.log"
    tracer = attach_strace(server.proc.pid, log, "-y", "-s", "120", "-e", f"trace={syscalls}")
    try:
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as client:
            client.ehlo("order.example.net")
            client.mail("sender@example.net")
            client.rcpt(rcpt)
            code, reply = client.data(b"Subject: order\r\n\r\nbody\r\n")
        assert code == 250
        match = QUEUED.search(reply)
        assert match
    finally:
        server.kill()
        tracer.wait(timeout=10)
    return match.group(1).decode(), log.read_text().splitlines()


def first_index(lines: list[str], pattern: str) -> int:
    rx = re.compile(pattern)
    for i, line in enumerate(lines):
        if rx.search(line):
            return i
    raise AssertionError(f"no syscall matching {pattern!r} in strace log")


def test_queued_message_is_fsynced_renamed_and_dir_synced_before_250(
    config_path: Path, tmp_path: Path
) -> None:
    # A relayed recipient goes through the queue (the transport route refuses: it stays there).
    qid, lines = traced_send(config_path, tmp_path, "someone@example.net", "fsync,rename,sendto")
    file_sync = first_index(lines, rf"fsync\(\d+</[^>]*/queue/incoming/{qid}>\) += 0")
    rename = first_index(lines, rf'rename\("[^"]*/incoming/{qid}", "[^"]*/active/{qid}"\) += 0')
    dir_sync = first_index(lines, r"fsync\(\d+</[^>]*/queue/active>\) += 0")
    reply_sent = first_index(lines, rf'sendto\(.*"250 2\.0\.0 Ok: queued as {qid}')
    assert file_sync < rename < dir_sync < reply_sent


def test_direct_local_delivery_is_fsynced_linked_and_dir_synced_before_250(
    config_path: Path, tmp_path: Path
) -> None:
    # A small message for a local mailbox is stored there before the 250 (net/direct.py).
    qid, lines = traced_send(config_path, tmp_path, "root@example.test", "fsync,link,sendto")
    file_sync = first_index(lines, r"fsync\(\d+</[^>]*/mail/root/tmp/[^>]+>\) += 0")
    link = first_index(lines, r'link\("[^"]*/mail/root/tmp/[^"]+", "[^"]*/mail/root/new/')
    dir_sync = first_index(lines, r"fsync\(\d+</[^>]*/mail/root/new>\) += 0")
    reply_sent = first_index(lines, rf'sendto\(.*"250 2\.0\.0 Ok: queued as {qid}')
    assert file_sync < link < dir_sync < reply_sent
    assert not any("/queue/incoming/" in line for line in lines)
