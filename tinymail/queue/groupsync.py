"""Group commit: many tasks that need the same directory fsynced share one fsync.

A task registers its need after its rename/link is done; whoever then holds the
per-directory lock fsyncs once for every request made up to that moment. A
request is satisfied only by an fsync that *started* after it was made.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio

from tinymail.store.safeio import fsync_dir


@dataclass(slots=True)
class _DirState:
    lock: trio.Lock = field(default_factory=trio.Lock)
    requested: int = 0
    completed: int = 0
    failed_upto: int = 0  # a failed fsync fails every request it covered (fsyncgate)


class GroupSync:
    """fsync directories on behalf of many concurrent tasks, coalescing requests."""

    def __init__(self, fsync: Callable[[Path], None] = fsync_dir):
        self._fsync = fsync
        self._dirs: dict[Path, _DirState] = {}

    async def sync(self, directory: Path) -> None:
        """Return once `directory` has been fsynced after this call began. OSError propagates."""
        state = self._dirs.setdefault(directory, _DirState())
        state.requested += 1
        ticket = state.requested
        async with state.lock:
            if state.completed >= ticket:
                return
            if state.failed_upto >= ticket:
                raise OSError(f"fsync of {directory} failed")
            target = state.requested
            try:
                await trio.to_thread.run_sync(self._fsync, directory)
            except OSError:
                state.failed_upto = target
                raise
            state.completed = target
        if not state.lock.locked() and state.completed == state.requested:
            self._dirs.pop(directory, None)

    async def sync_all(self, directories: set[Path]) -> None:
        """fsync several directories concurrently."""
        if len(directories) == 1:
            await self.sync(next(iter(directories)))
            return
        async with trio.open_nursery() as nursery:
            for d in directories:
                nursery.start_soon(self.sync, d)
