"""tinymail.queue.groupsync: concurrent directory fsyncs coalesced (group commit)."""

from __future__ import annotations

import errno
import itertools
import random
import threading
import time
from pathlib import Path

import pytest
import trio

from tinymail.queue.groupsync import GroupSync


class RecordingFsync:
    """An injected fsync (GroupSync's seam) that logs when each call starts and ends.

    It runs in trio's worker threads; `log` is shared with the test's tasks under a lock,
    and `seq` gives every event a global order.
    """

    def __init__(self, delay: float = 0.005, fail_calls: frozenset[int] = frozenset()):
        self.delay = delay
        self.fail_calls = fail_calls
        self.calls: list[Path] = []
        self.log: list[tuple[int, str, int]] = []
        self._seq = itertools.count()
        self._lock = threading.Lock()

    def event(self, kind: str, ident: int) -> int:
        with self._lock:
            seq = next(self._seq)
            self.log.append((seq, kind, ident))
            return seq

    def __call__(self, directory: Path) -> None:
        with self._lock:
            number = len(self.calls)
            self.calls.append(directory)
        self.event("start", number)
        time.sleep(self.delay)
        self.event("end", number)
        if number in self.fail_calls:
            raise OSError(errno.EIO, "injected fsync failure")


def check_every_caller_covered(rec: RecordingFsync, calls: dict[int, int], done: dict[int, int]):
    starts = {ident: seq for seq, kind, ident in rec.log if kind == "start"}
    ends = {ident: seq for seq, kind, ident in rec.log if kind == "end"}
    for caller, called_at in calls.items():
        returned_at = done[caller]
        assert any(starts[f] > called_at and ends[f] < returned_at for f in starts), (
            f"caller {caller} returned without an fsync started after its call"
        )


async def test_concurrent_syncs_share_fsyncs(tmp_path: Path) -> None:
    rec = RecordingFsync()
    gs = GroupSync(fsync=rec)
    calls: dict[int, int] = {}
    done: dict[int, int] = {}

    async def caller(i: int) -> None:
        calls[i] = rec.event("call", i)
        await gs.sync(tmp_path)
        done[i] = rec.event("return", i)

    async with trio.open_nursery() as nursery:
        for i in range(100):
            nursery.start_soon(caller, i)
    assert len(done) == 100
    assert 1 <= len(rec.calls) <= 5, len(rec.calls)
    assert set(rec.calls) == {tmp_path}
    check_every_caller_covered(rec, calls, done)


async def test_staggered_callers_each_covered_by_a_later_fsync(tmp_path: Path) -> None:
    rec = RecordingFsync(delay=0.003)
    gs = GroupSync(fsync=rec)
    rng = random.Random(1234)
    calls: dict[int, int] = {}
    done: dict[int, int] = {}

    async def caller(i: int, delay: float) -> None:
        await trio.sleep(delay)
        calls[i] = rec.event("call", i)
        await gs.sync(tmp_path)
        done[i] = rec.event("return", i)

    async with trio.open_nursery() as nursery:
        for i in range(120):
            nursery.start_soon(caller, i, rng.uniform(0, 0.05))
    assert len(done) == 120
    assert len(rec.calls) < 60
    check_every_caller_covered(rec, calls, done)


async def test_sequential_syncs_each_fsync(tmp_path: Path) -> None:
    rec = RecordingFsync(delay=0)
    gs = GroupSync(fsync=rec)
    for _ in range(3):
        await gs.sync(tmp_path)
    assert len(rec.calls) == 3


async def test_directories_are_independent(tmp_path: Path) -> None:
    rec = RecordingFsync()
    gs = GroupSync(fsync=rec)
    dirs = {tmp_path / str(i) for i in range(4)}
    async with trio.open_nursery() as nursery:
        for d in dirs:
            for _ in range(10):
                nursery.start_soon(gs.sync, d)
    assert set(rec.calls) == dirs
    assert len(rec.calls) <= 4 * 3
    await gs.sync_all(dirs)
    await gs.sync_all({tmp_path / "0"})
    assert rec.calls.count(tmp_path / "0") >= 2


async def test_failing_fsync_fails_every_covered_waiter(tmp_path: Path) -> None:
    # The first fsync (caller 0 alone) succeeds slowly; meanwhile 49 more callers queue up
    # and share the second fsync, which fails: every one of them must see the error.
    rec = RecordingFsync(delay=0.02, fail_calls=frozenset({1}))
    gs = GroupSync(fsync=rec)
    outcomes: dict[int, str] = {}

    async def caller(i: int) -> None:
        try:
            await gs.sync(tmp_path)
        except OSError:
            outcomes[i] = "error"
        else:
            outcomes[i] = "ok"

    async with trio.open_nursery() as nursery:
        nursery.start_soon(caller, 0)
        await trio.sleep(0.005)  # caller 0 is inside the first fsync
        for i in range(1, 50):
            nursery.start_soon(caller, i)
    assert len(rec.calls) == 2
    assert outcomes[0] == "ok"
    assert [outcomes[i] for i in range(1, 50)] == ["error"] * 49

    # A failure is not sticky for requests made after it: a new fsync is tried.
    await gs.sync(tmp_path)
    assert len(rec.calls) == 3


async def test_real_fsync(tmp_path: Path) -> None:
    gs = GroupSync()
    await gs.sync(tmp_path)
    with pytest.raises(OSError):
        await gs.sync(tmp_path / "missing")
