"""`tinymail queue delete|hold|release|flush`, with a live daemon and without one.

With a daemon the commands go through the control socket and the runner applies them between
attempts; without one they change the spool under queue/runner.lock. The remote peer is an
aiosmtpd sink on 127.0.0.28/29:25 reached through a [transport] route.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import smtplib
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.sink import Sink
from tinymail.cli import main as cli_main
from tinymail.cli import queue_change
from tinymail.config import load_config
from tinymail.net.context import ServerState
from tinymail.net.serve import serve
from tinymail.proto import control
from tinymail.queue.mailq import format_queue, show_item
from tinymail.queue.spool import Spool

NOBODY = 65534  # the conventional uid of "nobody"
CONFIG = """\
hostname = "mx.example.test"
domains = ["example.test"]
data_dir = "{data_dir}"

[listen]
smtp = ["127.0.0.1:0"]
submission = []
imap = []
pop3 = []

[queue]
retry_min = "1s"
retry_max = "1s"

[transport]
"held.test" = "smtp:[127.0.0.28]:25"
"slow.test" = "smtp:[127.0.0.29]:25"

[server]
allow_root = true
"""


def write_config(directory: Path) -> Path:
    path = directory / "tinymail.toml"
    path.write_text(CONFIG.format(data_dir=directory / "data"))
    return path


def queue_one(config: Path, rcpt: str) -> str:
    """Queue a message straight into the spool (no daemon needed); its queue ID."""
    cfg = load_config(config)
    spool = Spool(cfg.queue_dir).create()
    return spool.enqueue("alice@example.test", (rcpt,), b"Subject: x\n\nbody\n").qid


async def cli(*args: str) -> int:
    """Run the CLI in a thread: it talks to the daemon running in this very trio loop."""
    return await trio.to_thread.run_sync(cli_main, list(args))


async def wait_for(predicate: object, timeout: float = 15.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():  # type: ignore[operator]
            await trio.sleep(0.05)


# -- the protocol ------------------------------------------------------------------------------


def parse(data: bytes) -> object:
    parser = control.RequestParser(max_size=100, max_recipients=1)
    parser.receive_data(data)
    if isinstance(event := parser.next_event(), control.NeedData):
        parser.receive_data(b"")  # the client closed its side
        event = parser.next_event()
    return event


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(list(control.QueueAction)), st.from_regex(r"[0-9A-Z]{1,40}", fullmatch=True))
def test_change_requests_round_trip(action: control.QueueAction, qid: str) -> None:
    assert parse(control.change(action, qid)) == control.Change(action, qid)


def test_change_requests_name_one_well_formed_queue_id() -> None:
    for bad in [b"DELETE\n", b"DELETE ../../etc/passwd\n", b"HOLD A B\n", b"release ABC\n"]:
        assert isinstance(parse(bad), control.Refused), bad
    with pytest.raises(ValueError):
        control.change(control.QueueAction.DELETE, "../x")
    assert control.parse_reply(b"ERR 67 no queued message X\n") == control.Reply(
        False, 67, "no queued message X"
    )


# -- without a daemon --------------------------------------------------------------------------


def test_without_a_daemon_commands_change_the_spool(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    queue_dir = load_config(config).queue_dir
    qid = queue_one(config, "bob@held.test")
    other = queue_one(config, "carol@held.test")

    assert cli_main(["-c", str(config), "queue", "hold", qid]) == 0
    assert f"{qid}: held" in capsys.readouterr().out
    assert f"{qid}!" in format_queue(queue_dir)  # mailq marks held messages
    assert "hold: yes" in show_item(queue_dir, qid)

    assert cli_main(["-c", str(config), "queue", "release", qid]) == 0
    assert f"{qid}: released" in capsys.readouterr().out
    assert "hold: no" in show_item(queue_dir, qid)

    # Unknown IDs are reported by name with 67; the known ones are still deleted.
    status = cli_main(["-c", str(config), "queue", "delete", qid, "NOSUCHQID", "../etc", other])
    out, err = capsys.readouterr()
    assert status == 67
    assert "no queued message NOSUCHQID" in err and "no queued message ../etc" in err
    assert f"{qid}: deleted" in out and f"{other}: deleted" in out
    assert Spool(queue_dir).scan(sweep=False) == []
    assert not list((queue_dir / "state").iterdir())
    assert cli_main(["-c", str(config), "queue", "hold", qid]) == 67


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory other users can traverse (pytest's tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="tm-queue-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def run_as_nobody(command: Callable[[], int]) -> tuple[int, str]:
    """Run `command` in a forked child that became uid nobody; (exit status, its stderr).

    A fork, not a subprocess: this Python lives under /root, which nobody cannot execute.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 70
        try:
            os.close(read_end)
            sys.stdout = sys.stderr = io.StringIO()
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            status = command()
            os.write(write_end, sys.stderr.getvalue().encode())
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        output = pipe.read().decode()
    _, wait_status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(wait_status), output


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_unwritable_queue_without_a_daemon_is_a_temporary_failure(public_dir: Path) -> None:
    config = write_config(public_dir)
    cfg = load_config(config)
    qid = queue_one(config, "bob@held.test")  # queue/ is 0700 root: nobody cannot write it
    status, err = run_as_nobody(lambda: queue_change(cfg, "delete", [qid]))
    assert status == 75, err
    assert "cannot reach the tinymail daemon and cannot write the queue" in err
    assert Spool(cfg.queue_dir).scan(sweep=False) == [qid]


# -- with a daemon -----------------------------------------------------------------------------


def submit(port: int, rcpt: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail("alice@example.test", [rcpt], b"Subject: queued\r\n\r\nbody\r\n")


async def start_server(nursery: trio.Nursery, config: Path) -> ServerState:
    state: ServerState = await nursery.start(serve, load_config(config))
    return state


async def test_hold_flush_release_through_the_daemon(
    nursery: trio.Nursery, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    replies = {"bob@held.test": "451 4.3.0 not now"}
    with Sink("127.0.0.28", 25, rcpt_replies=replies) as sink:
        config = write_config(tmp_path)
        state = await start_server(nursery, config)
        port = state.bound["smtp"][0][1]
        await trio.to_thread.run_sync(submit, port, "bob@held.test")
        (qid,) = state.spool.scan(sweep=False)
        await wait_for(lambda: (s := state.spool.load_state(qid)) is not None and s.attempts >= 1)

        assert await cli("-c", str(config), "queue", "hold", qid) == 0
        assert f"{qid}: held" in capsys.readouterr().out
        state_after_hold = state.spool.load_state(qid)
        assert state_after_hold is not None and state_after_hold.hold
        seen = sink.connections
        assert await cli("-c", str(config), "queue", "flush", qid) == 0
        assert await cli("-c", str(config), "queue", "flush") == 0
        await trio.sleep(2.5)  # retry_min is 1s: unheld, it would have been tried twice by now
        assert sink.connections == seen, "a held message was attempted"
        assert f"{qid}!" in format_queue(state.config.queue_dir)

        del replies["bob@held.test"]  # the peer accepts from now on
        assert await cli("-c", str(config), "queue", "release", qid) == 0
        await wait_for(lambda: not state.spool.scan(sweep=False))
        assert [m.rcpt_tos for m in sink.messages] == [("bob@held.test",)]
        assert await cli("-c", str(config), "queue", "delete", qid) == 67
        assert f"no queued message {qid}" in capsys.readouterr().err


async def test_delete_waits_for_the_attempt_in_flight(
    nursery: trio.Nursery, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tinymail")
    replies = {"dave@slow.test": "452 4.2.2 mailbox full"}
    with Sink("127.0.0.29", 25, rcpt_replies=replies, stall_mail=1.5) as sink:
        config = write_config(tmp_path)
        state = await start_server(nursery, config)
        await trio.to_thread.run_sync(submit, state.bound["smtp"][0][1], "dave@slow.test")
        (qid,) = state.spool.scan(sweep=False)
        await wait_for(lambda: sink.connections >= 1)  # the attempt is stalled in MAIL FROM
        started = time.monotonic()
        assert await cli("-c", str(config), "queue", "delete", qid) == 0
        waited = time.monotonic() - started
        assert waited > 0.5, "delete returned while the attempt was still running"
        assert not state.spool.scan(sweep=False)
        lines = [r.getMessage() for r in caplog.records]
        deferred = next(i for i, m in enumerate(lines) if f"qid={qid}" in m and "deferred" in m)
        removed = next(i for i, m in enumerate(lines) if f"qid={qid} removed by" in m)
        assert deferred < removed
        connections = sink.connections
        await trio.sleep(2.5)  # retry_min is 1s: a surviving message would be tried again
        assert sink.connections == connections and not sink.messages


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
async def test_the_daemon_refuses_changes_from_other_users(
    nursery: trio.Nursery, public_dir: Path
) -> None:
    config = write_config(public_dir)
    qid = queue_one(config, "bob@held.test")
    state = await start_server(nursery, config)
    await wait_for(lambda: (s := state.spool.load_state(qid)) is not None and s.attempts >= 1)
    status, err = await trio.to_thread.run_sync(
        run_as_nobody, lambda: queue_change(state.config, "delete", [qid])
    )
    assert status == 77, err
    assert "only root or the queue owner" in err
    assert state.spool.scan(sweep=False) == [qid]
