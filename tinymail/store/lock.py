"""Locking an mbox file the Debian way: fcntl first, then an NFS-safe dotlock.

Rules (research/imap-anchors.md 4.2):
- Debian Policy §11.6: fcntl() locking combined with dot locking, fcntl() first and the dotlock
  after it (Postfix's Linux default ``fcntl, dotlock``, procmail, Python's mailbox module).
- The dotlock is ``FILE.lock`` made NFS-safe: create a unique file, link() it to ``FILE.lock``
  and trust the link count, not link()'s return value (lockfile_create(3), liblockfile).
- Stale lock: liblockfile treats a lockfile older than 5 minutes as stale (lockfile_create(3));
  its PID check is wrong on shared file systems, so only the age counts here. A holder that
  keeps the lock longer refreshes it with ``touch()``.
- fcntl locks belong to the *process* and any close() of the file drops them, so threads of
  this process are first serialised by an in-process lock per path.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import threading
import time
from pathlib import Path
from types import TracebackType

STALE_SECONDS = 300.0  # lockfile_create(3): "older than 5 minutes is considered to be stale"
WAIT_SECONDS = 30.0
_POLL = 0.05

_registry_guard = threading.Lock()
_in_process: dict[str, threading.Lock] = {}


class LockTimeout(OSError):
    """The mailbox stayed locked by someone else for the whole wait."""


def _inode(path: Path) -> int:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return -1


def _thread_lock(path: Path) -> threading.Lock:
    key = os.path.realpath(path)
    with _registry_guard:
        return _in_process.setdefault(key, threading.Lock())


class MboxLock:
    """Exclusive lock on an mbox file: in-process, then fcntl, then ``FILE.lock``.

    ``fd`` is the mbox opened read-write (created 0600 if missing) and stays valid while the
    lock is held; use it for reading and appending so no other descriptor is closed under us.
    """

    def __init__(
        self, path: Path, *, wait: float = WAIT_SECONDS, stale_after: float = STALE_SECONDS
    ) -> None:
        self.path = path
        self.dotlock = path.with_name(path.name + ".lock")
        self.wait = wait
        self.stale_after = stale_after
        self.fd = -1
        self._thread_lock = _thread_lock(path)

    def __enter__(self) -> MboxLock:
        deadline = time.monotonic() + self.wait
        if not self._thread_lock.acquire(timeout=self.wait):
            raise LockTimeout(errno.EAGAIN, "mailbox is locked in this process", str(self.path))
        try:
            while True:
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                self._fcntl(deadline)  # Debian Policy §11.6: fcntl first ...
                self._dotlock(deadline)  # ... then the dotlock
                # A rewrite renames a new file over the path while we waited: lock that one.
                if os.fstat(self.fd).st_ino == _inode(self.path):
                    break
                with contextlib.suppress(OSError):
                    os.unlink(self.dotlock)
                self._release_fd()
        except BaseException:
            self._release_fd()
            self._thread_lock.release()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.dotlock)
        self._release_fd()
        self._thread_lock.release()

    def touch(self) -> None:
        """Refresh the dotlock's age during a long operation (lockfile_touch(3))."""
        os.utime(self.dotlock)

    def _release_fd(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # also drops the fcntl lock
            self.fd = -1

    def _fcntl(self, deadline: float) -> None:
        while True:
            try:
                fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if time.monotonic() >= deadline:
                raise LockTimeout(errno.EAGAIN, "mailbox is fcntl-locked", str(self.path))
            time.sleep(_POLL)

    def _dotlock(self, deadline: float) -> None:
        unique = self.path.with_name(
            f"{self.path.name}.lock.{socket.gethostname()}.{os.getpid()}.{threading.get_ident()}"
        )
        while True:
            if self._try_link(unique):
                return
            self._break_if_stale()
            if time.monotonic() >= deadline:
                raise LockTimeout(errno.EAGAIN, "mailbox is dot-locked", str(self.dotlock))
            time.sleep(_POLL)

    def _try_link(self, unique: Path) -> bool:
        fd = os.open(unique, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, f"{os.getpid()}\n".encode())
        finally:
            os.close(fd)
        try:
            with contextlib.suppress(FileExistsError):
                os.link(unique, self.dotlock)
            # NFS may report a failed link() that happened: the link count is the truth.
            return os.stat(unique).st_nlink == 2
        finally:
            with contextlib.suppress(OSError):
                os.unlink(unique)

    def _break_if_stale(self) -> None:
        try:
            age = time.time() - os.stat(self.dotlock).st_mtime
        except FileNotFoundError:
            return
        if age > self.stale_after:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.dotlock)
