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


def _run(split: dh.SplitWork, paths: list[Path]) -> tuple[list[dict[str, bytes]], int]:
    """Take every job in order as a caller does; (values per job, how many the helper gave)."""
    out, helped = [], 0
    try:
        for k, path in enumerate(paths):
            got = split.take(k)
            if got is None:
                out.append(derive(path.read_bytes(), "EBS"))
            else:
                helped += 1
                assert got[1] == os.stat(path).st_mtime
                out.append(got[0])
    finally:
        split.close()
    return out, helped


def test_helper_and_caller_share_the_jobs(tmp_path: Path) -> None:
    paths = _files(tmp_path, 400)
    helper = dh.Helper()
    try:
        jobs = [(str(p), "EBS") for p in paths]
        values, helped = _run(dh.SplitWork(jobs, derive, helper, min_jobs=10), paths)
        assert values == [derive(p.read_bytes(), "EBS") for p in paths]
        assert 0 < helped < len(paths)  # both did some: the caller the front, the helper the back
        # the helper is reused, and answers a second run the same way
        values2, _ = _run(dh.SplitWork(jobs, derive, helper, min_jobs=10), paths)
        assert values2 == values
    finally:
        helper.stop()


def test_small_batches_and_busy_helpers_are_done_by_the_caller(tmp_path: Path) -> None:
    paths = _files(tmp_path, 40)
    jobs = [(str(p), "EBS") for p in paths]
    helper = dh.Helper()
    split = dh.SplitWork(jobs, derive, helper, min_jobs=100)
    assert not split.active and helper.proc is None
    assert helper.lock.acquire()  # another session has it
    try:
        split = dh.SplitWork(jobs, derive, helper, min_jobs=1)
        assert not split.active
        values, helped = _run(split, paths)
        assert helped == 0 and values == [derive(p.read_bytes(), "EBS") for p in paths]
    finally:
        helper.lock.release()
    # a function the helper cannot import by name is never sent to it
    split = dh.SplitWork(jobs, lambda raw, kinds: derive(raw, kinds), helper, min_jobs=1)
    assert not split.active


def test_a_missing_file_is_left_to_the_caller(tmp_path: Path) -> None:
    paths = _files(tmp_path, 300)
    jobs: list[tuple[str, str] | None] = [(str(p), "EBS") for p in paths]
    jobs[-1] = (str(tmp_path / "gone"), "EBS")  # renamed away: the helper cannot read it
    jobs[-2] = None  # nothing to compute for this one
    helper = dh.Helper()
    try:
        split = dh.SplitWork(jobs, derive, helper, min_jobs=10)
        assert split.take(0) is None
        assert split.take(len(jobs) - 2) is None
        assert split.take(len(jobs) - 1) is None
        got = split.take(len(jobs) - 3)
        assert got is not None and got[0] == derive(paths[-3].read_bytes(), "EBS")
        split.close()
        assert helper.lock.acquire(blocking=False)  # closed: free for the next one
        helper.lock.release()
    finally:
        helper.stop()


def test_a_dead_helper_leaves_everything_to_the_caller(tmp_path: Path) -> None:
    paths = _files(tmp_path, 300)
    jobs = [(str(p), "EBS") for p in paths]
    helper = dh.Helper()
    try:
        split = dh.SplitWork(jobs, derive, helper, min_jobs=10)
        assert split.take(0) is None  # requests are out
        assert helper.proc is not None
        os.kill(helper.proc.pid, signal.SIGKILL)
        helper.proc.wait()
        values, _ = _run(split, paths)  # take(0) again is harmless
        assert values == [derive(p.read_bytes(), "EBS") for p in paths]
        assert not split.active and helper.proc is None
        assert helper.lock.acquire(blocking=False)
        helper.lock.release()
        split = dh.SplitWork(jobs, derive, helper, min_jobs=10)  # a new one is started
        assert split.active
        assert _run(split, paths)[0] == values
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
        base = box._msgs[uid].name.partition(":")[0]
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
        return [box._missing(box._msgs[uid], "EBS") or None for uid in uids]


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
