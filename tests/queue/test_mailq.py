"""tinymail.queue.mailq: Postfix-style listing and the per-message view."""

from __future__ import annotations

from pathlib import Path

import pytest

from tinymail.queue.mailq import format_queue, show_item
from tinymail.queue.model import QueueState, RcptStatus, Recipient
from tinymail.queue.spool import Spool

CONTENT = b"From: a@example.test\nSubject: hello\n\nbody\n\nmore body\n"


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "queue").create()


def test_empty_queue(tmp_path: Path, spool: Spool) -> None:
    assert format_queue(spool.root) == "Mail queue is empty\n"
    assert format_queue(tmp_path / "never-created") == "Mail queue is empty\n"


def test_listing(spool: Spool) -> None:
    env = spool.enqueue("a@example.test", ("b@remote.test", "c@remote.test"), CONTENT)
    text = format_queue(spool.root)
    lines = text.splitlines()
    assert lines[0].startswith("-Queue ID-")
    assert lines[1].startswith(env.qid + " ")
    assert lines[1].split()[1] == str(len(CONTENT))
    assert lines[1].endswith("a@example.test")
    assert lines[2].strip() == "b@remote.test"
    assert lines[3].strip() == "c@remote.test"
    assert lines[-1] == "-- 1 Kbytes in 1 Request."
    assert text.endswith("\n")


def test_listing_states(spool: Spool) -> None:
    first = spool.enqueue("", ("x@remote.test", "y@remote.test"), CONTENT)
    second = spool.enqueue("s@example.test", ("z@remote.test",), b"x" * 3000)
    state = QueueState.initial(first)
    state = state.with_recipient(Recipient("x@remote.test", RcptStatus.SENT, 1, "2.0.0"))
    state = state.with_recipient(
        Recipient("y@remote.test", RcptStatus.PENDING, 1, "4.4.1", "connection refused")
    )
    spool.save_state(first.qid, state)
    spool.save_state(second.qid, QueueState(QueueState.initial(second).recipients, hold=True))
    text = format_queue(spool.root)
    assert "MAILER-DAEMON" in text  # null sender
    assert "x@remote.test" not in text  # delivered recipients are not listed
    assert "(connection refused)" in text
    assert f"{second.qid}!" in text  # held, as Postfix marks it
    assert text.splitlines()[-1] == "-- 3 Kbytes in 2 Requests."


def test_corrupt_files_are_skipped(spool: Spool) -> None:
    good = spool.enqueue("s@x", ("a@remote.test",), CONTENT)
    (spool.active / "ZZZZBROKEN").write_bytes(b"garbage")
    text = format_queue(spool.root)
    assert good.qid in text
    assert "ZZZZBROKEN" not in text
    assert text.splitlines()[-1] == "-- 1 Kbytes in 1 Request."


def test_show_item(spool: Spool) -> None:
    env = spool.enqueue("s@example.test", ("a@remote.test",), CONTENT, origin="sendmail uid=0")
    spool.save_state(
        env.qid,
        QueueState(
            (Recipient("a@remote.test", RcptStatus.PENDING, 2, "4.4.1", "timed out"),),
            attempts=2,
            next_attempt=env.arrival + 300,
        ),
    )
    text = show_item(spool.root, env.qid)
    assert f"queue_id: {env.qid}\n" in text
    assert "sender: <s@example.test>\n" in text
    assert f"size: {len(CONTENT)}\n" in text
    assert "origin: sendmail uid=0\n" in text
    assert "hold: no\n" in text
    assert "attempts: 2\n" in text
    assert "next_attempt: " in text
    assert "recipient: <a@remote.test> pending 4.4.1 (timed out)\n" in text
    # Headers only, never the body.
    assert text.endswith("\n\nFrom: a@example.test\nSubject: hello\n")
    assert "body" not in text


@pytest.mark.parametrize("qid", ["NOSUCHID", "", "../state"])
def test_show_unknown(spool: Spool, qid: str) -> None:
    with pytest.raises(LookupError):
        show_item(spool.root, qid)
