"""The helper process of a cold FETCH (store/derive_helper.py) and MaildirFolder.prime_all.

Whatever the helper does (answers, is busy, dies, falls silent, finds a file gone), every
job ends up with exactly the values the caller would have computed itself.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.proto.imap.test_fetch_fastpaths import _message
from tinymail.proto.imap.fetchdata import derive
from tinymail.store import derive_helper as dh
from tinymail.store.maildir import deliver
from tinymail.store.maildir_folder import MaildirFolder
from tinymail.store.maildir_folders import MaildirStore


def _files(tmp_path: Path, count: int) -> list[Path]:
    paths = []
    for n in range(count):
        path = tmp_path / f"m{n}"
        path.write_bytes(_message(n))
        paths.append(path)
    return paths


class Caller:
    """A SplitWork caller that derives the jobs it must do itself and counts them."""

    def __init__(self, paths: list[Path], jobs: list[tuple[str, str] | None] | None = None) -> None:
        self.paths = paths
        self.jobs = jobs if jobs is not None else [(str(p), "EBS") for p in paths]
        self.values: dict[int, dict[str, bytes]] = {}
        self.helped = 0

    def local(self, k: int) -> None:
        assert k not in self.values
        self.values[k] = derive(self.paths[k].read_bytes(), "EBS")

    def keep(self, k: int, result: tuple[dict[str, bytes], float]) -> None:
        assert k not in self.values
        assert result[1] == os.stat(self.paths[k]).st_mtime
        self.helped += 1
        self.values[k] = result[0]

    def split(self, helper: dh.Helper, min_jobs: int = 10) -> dh.SplitWork:
        return dh.SplitWork(self.jobs, derive, self.local, self.keep, helper, min_jobs)

    def run(self, split: dh.SplitWork) -> list[dict[str, bytes]]:
        """ensure() each job in order; each must be done when it returns."""
        try:
            for k in range(len(self.jobs)):
                split.ensure(k)
                assert self.jobs[k] is None or k in self.values
        finally:
            split.close()
        return [self.values[k] for k in range(len(self.jobs)) if self.jobs[k] is not None]


def test_helper_and_caller_share_the_jobs(tmp_path: Path) -> None:
    paths = _files(tmp_path, 400)
    expected = [derive(p.read_bytes(), "EBS") for p in paths]
    helper = dh.Helper()
    try:
        caller = Caller(paths)
        assert caller.run(caller.split(helper)) == expected
        assert 0 < caller.helped < len(paths)  # both did some
        again = Caller(paths)  # the helper is reused, and gives the same answers
        assert again.run(again.split(helper)) == expected
    finally:
        helper.stop()


def test_small_batches_and_busy_helpers_are_done_by_the_caller(tmp_path: Path) -> None:
    paths = _files(tmp_path, 40)
    expected = [derive(p.read_bytes(), "EBS") for p in paths]
    helper = dh.Helper()
    caller = Caller(paths)
    split = caller.split(helper, min_jobs=100)
    assert not split.active and helper.proc is None
    assert caller.run(split) == expected and caller.helped == 0
    assert helper.lock.acquire()  # another session has it
    try:
        caller = Caller(paths)
        split = caller.split(helper, min_jobs=1)
        assert not split.active
        assert caller.run(split) == expected and caller.helped == 0
    finally:
        helper.lock.release()
    # a function the helper cannot import by name is never sent to it
    split = dh.SplitWork(caller.jobs, lambda r, k: derive(r, k), caller.local, caller.keep, helper)
    assert not split.active


def test_a_missing_file_is_left_to_the_caller(tmp_path: Path) -> None:
    paths = _files(tmp_path, 300)
    jobs: list[tuple[str, str] | None] = [(str(p), "EBS") for p in paths]
    for k in range(0, 300, 7):
        jobs[k] = (str(tmp_path / "gone"), "EBS")  # renamed away: the helper cannot read it
        paths[k].unlink()
        paths[k].symlink_to(paths[k + 1])  # what the caller then reads instead
    for k in range(3, 300, 11):
        jobs[k] = None  # nothing to compute for these
    helper = dh.Helper()
    try:
        caller = Caller(paths, jobs)
        values = caller.run(caller.split(helper))
        wanted = [p for p, j in zip(paths, jobs, strict=True) if j is not None]
        assert values == [derive(p.read_bytes(), "EBS") for p in wanted]
        assert caller.helped > 0 and all(k not in caller.values for k in range(3, 300, 11))
        assert helper.lock.acquire(blocking=False)  # closed: free for the next one
        helper.lock.release()
    finally:
        helper.stop()


def test_a_dead_helper_leaves_everything_to_the_caller(tmp_path: Path) -> None:
    paths = _files(tmp_path, 300)
    expected = [derive(p.read_bytes(), "EBS") for p in paths]
    helper = dh.Helper()
    try:
        caller = Caller(paths)
        split = caller.split(helper)
        split.ensure(0)  # requests are out
        assert helper.proc is not None
        os.kill(helper.proc.pid, signal.SIGKILL)
        helper.proc.wait()
        for k in range(1, len(paths)):
            split.ensure(k)
        split.close()
        assert [caller.values[k] for k in range(len(paths))] == expected
        assert not split.active and helper.proc is None
        assert helper.lock.acquire(blocking=False)
        helper.lock.release()
        caller = Caller(paths)
        split = caller.split(helper)  # a new one is started
        assert split.active
        assert caller.run(split) == expected
    finally:
        helper.stop()


def test_the_helper_exits_when_idle_or_orphaned(tmp_path: Path) -> None:
    import subprocess
    import sys

    boot = "import sys; sys.path[:] = sys.argv[1].split('\\n'); " + (
        "from tinymail.store.derive_helper import serve; serve(0.2)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-E", "-c", boot, "\n".join(sys.path)], stdin=subprocess.PIPE
    )
    assert proc.wait(20) == 0  # idle: gone by itself
    proc = subprocess.Popen(
        [sys.executable, "-E", "-c", boot.replace("0.2", "60"), "\n".join(sys.path)],
        stdin=subprocess.PIPE,
    )
    assert proc.stdin is not None
    proc.stdin.close()  # the server went away
    assert proc.wait(20) == 0


def test_prime_all_fills_the_cache_with_the_helper(tmp_path: Path) -> None:
    store = MaildirStore(tmp_path / "Maildir")
    store.ensure_defaults()
    count = dh.MIN_JOBS + 100
    for n in range(count):
        deliver([store.root], _message(n))
    box = store.open("INBOX")
    uids = box.sync(False).uids
    assert sum(1 for _ in box.prime_all(uids, "EBS", derive)) == len(uids)
    if dh._cpus() > 1:
        assert dh._HELPER.proc is not None  # it took part
    for uid, n in zip(uids, range(count), strict=True):
        expected = derive(_message(n), "EBS")
        base = box._msgs[uid][0].partition(":")[0]
        assert (box._envelopes.get(base, "E"), box._envelopes.get(base, "B")) == (
            expected["E"],
            expected["B"],
        )
        assert box.size(uid) == int(expected["S"])
        assert box.internal_date(uid) == os.stat(box._file(box._msgs[uid])).st_mtime
    # all cached now: a second run has nothing to compute, and needs no helper
    assert all(job is None for job in _jobs_of(box, uids))
    assert sum(1 for _ in box.prime_all(uids, "EBS", derive)) == len(uids)


def _jobs_of(box: MaildirFolder, uids: tuple[int, ...]) -> list[str | None]:
    with box._lock:
        return [box._missing(uid, "EBS") or None for uid in uids]


def test_a_cold_fetch_answers_as_without_any_cache(tmp_path: Path) -> None:
    """FETCH 1:* over enough corpus messages to bring the helper in equals the responses
    built straight from each message (no store cache, no quick paths)."""
    from functools import partial

    from tinymail.proto.imap import fetch
    from tinymail.proto.imap.fetchdata import bodystructure, envelope
    from tinymail.proto.imap.parse import Atom, PList
    from tinymail.proto.imap.selected import Selection
    from tinymail.proto.imap.seqset import parse_seqset

    corpus = sorted((Path(__file__).parents[1] / "mail" / "corpus").glob("*.eml"))
    store = MaildirStore(tmp_path / "Maildir")
    store.ensure_defaults()
    raws = [corpus[n % len(corpus)].read_bytes() for n in range(dh.MIN_JOBS + 50)]
    for raw in raws:
        (
            store.root / "cur" / f"{len(list((store.root / 'cur').iterdir()))}.M1P1.host:2,"
        ).write_bytes(raw)
    box = store.open("INBOX")
    selection = Selection(box, readonly=True)
    selection.open()
    names = "UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY"
    items = fetch.parse_items(PList(tuple(Atom(x) for x in names.split())))
    got = list(selection.do_fetch(parse_seqset("1:*"), items, False))
    expected = []
    for seq, uid in enumerate(selection.uids, 1):
        raw = box.read(uid)
        data = fetch.MessageData(
            uid=uid,
            flags=partial(box.flags, uid),  # type: ignore[arg-type]
            size=lambda raw=raw: len(raw) + raw.count(b"\n") - raw.count(b"\r\n"),  # type: ignore[misc]
            internal_date=partial(box.internal_date, uid),
            envelope=partial(envelope, raw),
            message=lambda raw=raw: raw,  # type: ignore[misc]
            structure=lambda ext, raw=raw: bodystructure(raw, extensible=ext),  # type: ignore[misc]
        )
        expected.append(fetch.build_response(seq, items, data, False))
    assert got == expected


def test_warm_up_starts_the_shared_helper_only_for_a_large_run() -> None:
    dh._HELPER.stop()
    dh.warm_up(dh.MIN_JOBS - 1)
    assert dh._HELPER.proc is None
    with dh._HELPER.lock:  # in use by another session: left alone
        dh.warm_up(dh.MIN_JOBS)
    assert dh._HELPER.proc is None
    dh.warm_up(dh.MIN_JOBS)
    assert (dh._HELPER.proc is not None) == (dh._cpus() > 1)
