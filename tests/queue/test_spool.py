"""tinymail.queue.spool: self-validating message files, state files, scan, quarantine."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tinymail.queue.model import Envelope, QueueState, RcptStatus, Recipient
from tinymail.queue.qfile import ALPHABET
from tinymail.queue.spool import (
    FLUSH_AT,
    FOOTER_LEN,
    STALE_INCOMING,
    CorruptQueueFile,
    Spool,
    new_qid,
    read_content,
    read_envelope,
)

CONTENT = b"From: a@example.test\nTo: b@example.test\nSubject: test\n\nbody line\n"


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "queue").create()


def entries(path: Path) -> list[str]:
    return sorted(os.listdir(path))


def test_create_makes_private_dirs(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "q").create()
    for d in (spool.root, spool.incoming, spool.active, spool.state_dir, spool.corrupt):
        assert d.is_dir()
        assert d.stat().st_mode & 0o777 == 0o700
    assert spool.create() is spool  # idempotent


def test_new_qid_shape_uniqueness_and_order() -> None:
    qids = []
    for _ in range(200):
        qids.append(new_qid())
        time.sleep(0.000002)  # distinct microseconds, so the time part orders them
    assert len(set(qids)) == len(qids)
    assert all(set(q) <= set(ALPHABET) for q in qids)
    assert len({len(q) for q in qids}) == 1
    assert qids == sorted(qids)


def test_enqueue_load_round_trip(spool: Spool) -> None:
    env = spool.enqueue(
        "sender@example.test",
        ("b@example.test", "c@remote.test"),
        CONTENT,
        origin="sendmail uid=0",
        dsn_kind="",
    )
    assert entries(spool.active) == [env.qid]
    assert entries(spool.incoming) == []
    item = spool.load(env.qid)
    assert item.envelope == env
    assert item.qid == env.qid
    assert item.envelope.size == len(CONTENT)
    assert item.state == QueueState.initial(env)
    assert [r.status for r in item.state.recipients] == [RcptStatus.PENDING] * 2
    assert item.path == str(spool.active / env.qid)
    assert read_content(item) == CONTENT
    # The content sits at the start of the file, exactly as it will be delivered.
    assert (spool.active / env.qid).read_bytes().startswith(CONTENT)


def test_null_sender_and_dsn_kind(spool: Spool) -> None:
    env = spool.enqueue("", ("a@example.test",), b"x\n", dsn_kind="bounce")
    loaded = spool.load(env.qid).envelope
    assert loaded.sender == ""
    assert loaded.dsn_kind == "bounce"


def test_empty_content(spool: Spool) -> None:
    env = spool.enqueue("s@x", ("a@x",), b"")
    item = spool.load(env.qid)
    assert item.envelope.size == 0
    assert read_content(item) == b""


def test_content_that_looks_like_a_trailer(spool: Spool) -> None:
    fake = b'\n{"qid":"X"}\nTMQ1 0000000000000000 00000012\n'
    env = spool.enqueue("s@x", ("a@x",), fake * 3)
    item = spool.load(env.qid)
    assert item.envelope == env
    assert read_content(item) == fake * 3


def test_scan_order_is_arrival_order(spool: Spool) -> None:
    qids = [spool.enqueue("s@x", (f"r{i}@x",), CONTENT).qid for i in range(5)]
    assert spool.scan() == qids
    (spool.active / ".hidden").write_bytes(b"")
    assert spool.scan() == qids


def test_scan_on_missing_dirs(tmp_path: Path) -> None:
    assert Spool(tmp_path / "never-created").scan() == []


def test_scan_removes_orphan_state_files(spool: Spool) -> None:
    env = spool.enqueue("s@x", ("a@x",), CONTENT)
    state = QueueState.initial(env)
    spool.save_state(env.qid, state)
    spool.save_state("ORPHAN", state)
    assert spool.scan() == [env.qid]
    assert entries(spool.state_dir) == [env.qid]


def test_scan_sweeps_only_stale_incoming(spool: Spool) -> None:
    stale = spool.incoming / "STALE"
    fresh = spool.incoming / "FRESH"
    stale.write_bytes(b"half a message")
    fresh.write_bytes(b"being received")
    old = time.time() - STALE_INCOMING - 60
    os.utime(stale, (old, old))
    assert spool.scan() == []
    assert entries(spool.incoming) == ["FRESH"]


def test_state_save_load_and_remove(spool: Spool) -> None:
    env = spool.enqueue("s@x", ("a@x", "b@x", "c@x"), CONTENT)
    assert spool.load_state(env.qid) is None
    state = QueueState.initial(env)
    state = state.with_recipient(Recipient("a@x", RcptStatus.SENT, 1, "2.0.0"))
    state = state.with_recipient(
        Recipient("b@x", RcptStatus.PENDING, 2, "4.4.1", "connection refused")
    )
    state = QueueState(state.recipients, attempts=2, next_attempt=1e9, warned=True, hold=True)
    spool.save_state(env.qid, state)
    assert spool.load_state(env.qid) == state
    assert spool.load(env.qid).state == state
    assert [r.address for r in state.pending] == ["b@x", "c@x"]
    assert not state.done
    assert [p for p in entries(spool.state_dir) if p.endswith(".tmp")] == []

    spool.remove(env.qid)
    assert entries(spool.active) == []
    assert entries(spool.state_dir) == []
    with pytest.raises(FileNotFoundError):
        spool.load(env.qid)
    spool.remove(env.qid)  # idempotent


@pytest.mark.parametrize(
    "data",
    [b"", b"not json", b"[]", b'{"recipients": [{"address": "a@x", "status": "bogus"}]}', b"{}"],
)
def test_bad_state_file_means_all_pending(spool: Spool, data: bytes) -> None:
    env = spool.enqueue("s@x", ("a@x",), CONTENT)
    (spool.state_dir / env.qid).write_bytes(data)
    assert spool.load_state(env.qid) is None
    assert spool.load(env.qid).state == QueueState.initial(env)


def test_every_truncation_is_detected(spool: Spool) -> None:
    env = spool.enqueue("sender@example.test", ("a@example.test", "b@example.test"), CONTENT)
    path = spool.active / env.qid
    whole = path.read_bytes()
    assert len(whole) > len(CONTENT) + FOOTER_LEN
    for cut in range(len(whole)):  # bounded: one check per byte of a small file
        path.write_bytes(whole[:cut])
        with pytest.raises(CorruptQueueFile):
            spool.load(env.qid)
    path.write_bytes(whole)
    assert spool.load(env.qid).envelope == env


def test_truncation_onto_an_embedded_trailer_is_detected(spool: Spool) -> None:
    # A message that carries a complete queue file of another message as its content: a cut
    # right after that inner trailer parses as a valid file, but names the wrong queue ID.
    inner = spool.enqueue("evil@x", ("victim@remote.test",), CONTENT)
    inner_bytes = (spool.active / inner.qid).read_bytes()
    spool.remove(inner.qid)
    env = spool.enqueue("s@x", ("a@x",), inner_bytes + b"tail\n")
    path = spool.active / env.qid
    whole = path.read_bytes()
    for cut in range(len(whole)):
        path.write_bytes(whole[:cut])
        with pytest.raises(CorruptQueueFile):
            spool.load(env.qid)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda b: b + b"x",
        lambda b: b[:-1] + b" ",
        lambda b: b.replace(b"TMQ1", b"TMQ2"),
        lambda b: b.replace(b'"recipients"', b'"recipientz"'),
        lambda b: b.replace(b'"size":', b'"size":1'),
        lambda b: b"\x00" * len(b),
    ],
)
def test_mangled_files_are_corrupt(spool: Spool, mangle: object) -> None:
    env = spool.enqueue("s@x", ("a@x",), CONTENT)
    path = spool.active / env.qid
    path.write_bytes(mangle(path.read_bytes()))  # type: ignore[operator]
    with pytest.raises(CorruptQueueFile):
        read_envelope(path)


def test_envelope_naming_another_qid_is_corrupt(spool: Spool) -> None:
    env = spool.enqueue("s@x", ("a@x",), CONTENT)
    os.rename(spool.active / env.qid, spool.active / "OTHERQID")
    with pytest.raises(CorruptQueueFile, match="names queue ID"):
        spool.load("OTHERQID")


def test_quarantine_moves_to_corrupt(spool: Spool) -> None:
    env = spool.enqueue("s@x", ("a@x",), CONTENT)
    path = spool.active / env.qid
    path.write_bytes(b"garbage")
    with pytest.raises(CorruptQueueFile):
        spool.load(env.qid)
    spool.quarantine(env.qid, "test")
    assert entries(spool.active) == []
    assert (spool.corrupt / env.qid).read_bytes() == b"garbage"
    spool.quarantine(env.qid, "again")  # already moved: logged, no exception
    assert spool.scan() == []


def test_incoming_message_multi_chunk(spool: Spool) -> None:
    msg = spool.incoming_message()
    chunk = (b"0123456789abcdef" * 4 + b"\n") * 1000  # 65 kB
    written = b""
    flushes = 0
    for _ in range(10):
        msg.write(chunk)
        written += chunk
        if msg.buffered >= FLUSH_AT:
            msg.flush()
            flushes += 1
            assert msg.buffered == 0
            assert msg.path.stat().st_size == len(written)
    assert flushes >= 2
    assert msg.size == len(written)
    env = Envelope(msg.qid, "s@x", ("a@x",), time.time(), msg.size, origin="smtp")
    target = msg.commit(env)
    assert target == spool.active / msg.qid
    assert entries(spool.incoming) == []
    spool.sync_active()
    item = spool.load(msg.qid)
    assert item.envelope == env
    assert read_content(item) == written


def test_commit_refuses_a_size_mismatch(spool: Spool) -> None:
    msg = spool.incoming_message()
    msg.write(b"abc")
    env = Envelope(msg.qid, "s@x", ("a@x",), time.time(), 4)
    with pytest.raises(ValueError, match="size"):
        msg.commit(env)
    msg.abort()
    assert entries(spool.incoming) == entries(spool.active) == []


def test_abort_leaves_nothing(spool: Spool) -> None:
    msg = spool.incoming_message()
    msg.write(b"x" * 1000)
    msg.flush()
    assert entries(spool.incoming) == [msg.qid]
    msg.write(b"more")
    msg.abort()
    assert msg.buffered == 0
    assert entries(spool.incoming) == entries(spool.active) == []
    msg.abort()  # twice is fine
    never_flushed = spool.incoming_message()
    never_flushed.write(b"y")
    never_flushed.abort()
    assert entries(spool.incoming) == []


def test_commit_failure_removes_the_incoming_file(spool: Spool) -> None:
    msg = spool.incoming_message()
    msg.write(b"data\n")
    msg.flush()
    spool.active.rmdir()  # the rename target directory is gone: commit must clean up
    env = Envelope(msg.qid, "s@x", ("a@x",), time.time(), 5)
    with pytest.raises(OSError):
        msg.commit(env)
    assert entries(spool.incoming) == []


def test_enqueue_failure_leaves_nothing(spool: Spool) -> None:
    spool.active.rmdir()
    with pytest.raises(OSError):
        spool.enqueue("s@x", ("a@x",), CONTENT)
    assert entries(spool.incoming) == []


def test_has_room(spool: Spool, tmp_path: Path) -> None:
    assert spool.has_room(0)
    assert spool.has_room(1024)
    assert not spool.has_room(2**62)
    assert not Spool(tmp_path / "missing").has_room(0)


def test_envelope_json_round_trip_and_validation() -> None:
    env = Envelope("Q1", "s@x", ("a@x", "b@x"), 123.5, 10, "origin", "delay")
    assert Envelope.from_json(json.loads(json.dumps(env.to_json()))) == env
    with pytest.raises(ValueError, match="no recipients"):
        Envelope.from_json({**env.to_json(), "recipients": []})
    with pytest.raises(KeyError):
        Envelope.from_json({"qid": "Q1"})
