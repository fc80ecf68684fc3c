"""mbox locking: fcntl then dotlock, stale dotlocks, and concurrent writers."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tinymail.store import mbox
from tinymail.store.lock import LockTimeout, MboxLock
from tinymail.store.mbox_folder import MboxFolder


def test_lock_creates_and_removes_dotlock(tmp_path: Path) -> None:
    path = tmp_path / "INBOX"
    with MboxLock(path) as lock:
        assert (tmp_path / "INBOX.lock").exists() and lock.fd >= 0
    assert not (tmp_path / "INBOX.lock").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["INBOX"]  # no unique temp file left


def test_fresh_foreign_dotlock_blocks(tmp_path: Path) -> None:
    path = tmp_path / "INBOX"
    (tmp_path / "INBOX.lock").write_text("12345\n")
    with pytest.raises(LockTimeout), MboxLock(path, wait=0.3):
        pass
    assert (tmp_path / "INBOX.lock").exists()  # someone else's lock is not ours to remove


def test_stale_dotlock_is_broken(tmp_path: Path) -> None:
    path = tmp_path / "INBOX"
    stale = tmp_path / "INBOX.lock"
    stale.write_text("12345\n")
    old = time.time() - 301  # lockfile_create(3): older than 5 minutes
    os.utime(stale, (old, old))
    with MboxLock(path, wait=2):
        assert stale.stat().st_mtime > old
    assert not stale.exists()


def test_fcntl_lock_of_another_process_blocks(tmp_path: Path) -> None:
    path = tmp_path / "INBOX"
    path.write_bytes(b"")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time\n"
            f"f = open({str(path)!r}, 'r+')\n"
            "fcntl.lockf(f, fcntl.LOCK_EX)\n"
            "print('locked', flush=True)\n"
            "sys.stdin.readline()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
        with pytest.raises(LockTimeout), MboxLock(path, wait=0.3):
            pass
        assert not (tmp_path / "INBOX.lock").exists()  # fcntl first: no dotlock was taken
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=10)
    with MboxLock(path, wait=2):
        pass


def test_concurrent_delivery_and_expunge(tmp_path: Path) -> None:
    """Writers in threads and an expunging reader never corrupt the file (bounded stress)."""
    path = tmp_path / "INBOX"
    folder = MboxFolder(path)
    errors: list[BaseException] = []
    expunged: set[int] = set()

    def writer(n: int) -> None:
        try:
            for i in range(15):
                mbox.deliver(path, b"Subject: w%d-%d\n\nFrom body %d\n" % (n, i, i), "a@x")
        except BaseException as exc:  # reported to the main thread
            errors.append(exc)

    def expunger() -> None:
        try:
            for _ in range(10):
                parsed = folder.sync()
                odd = {e.uid for e in parsed.entries if e.uid is not None and e.uid % 2}
                expunged.update(folder.expunge(odd))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    threads.append(threading.Thread(target=expunger))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors and not any(t.is_alive() for t in threads)
    parsed = folder.sync()
    data = path.read_bytes()
    seen = {mbox.message_bytes(data, e).split(b"\n", 1)[0] for e in parsed.entries}
    assert len(seen) == len(parsed.entries) == 45 - len(expunged)
    for entry in parsed.entries:
        body = mbox.message_bytes(data, entry)
        assert body.startswith(b"Subject: w") and b"\n\nFrom body " in body
