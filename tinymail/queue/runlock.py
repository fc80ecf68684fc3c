"""queue/runner.lock: at most one deliverer per queue (the daemon or a one-shot run).

Rules: an exclusive flock(2) on queue/runner.lock, held for the deliverer's whole life and
released by the kernel when the process dies (kill -9 included), so a stale lock cannot
exist. The daemon waits for it (in a thread) while a one-shot run finishes; a one-shot run
that finds it taken by the daemon only nudges the daemon and exits.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

LOCK_NAME = "runner.lock"


class RunnerLock:
    """The runner lock of one queue directory; use as a context manager to close it."""

    def __init__(self, queue_dir: Path):
        self.path = queue_dir / LOCK_NAME
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def try_acquire(self) -> bool:
        """Take the lock if it is free; False when another deliverer holds it."""
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def acquire(self) -> None:
        """Take the lock, waiting as long as another deliverer holds it (blocking)."""
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def close(self) -> None:
        """Release the lock and close the file."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def __enter__(self) -> RunnerLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
