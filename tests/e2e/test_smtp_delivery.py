"""End to end over real sockets: smtplib -> tinymail serve -> queue -> Maildir."""

from __future__ import annotations

import contextlib
import mailbox
import smtplib
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from tests.conftest import add_user, port_of
from tinymail.config import load_config
from tinymail.net.context import ServerState
from tinymail.net.serve import serve
from tinymail.queue.model import QueueItem


async def wait_for_files(directory: Path, count: int, timeout: float = 10.0) -> list[Path]:
    """Poll until `directory` holds `count` files (bounded by `timeout`)."""
    with trio.fail_after(timeout):
        while True:
            files = sorted(directory.glob("*")) if directory.is_dir() else []
            if len(files) >= count:
                return files
            await trio.sleep(0.02)


def send(port: int, sender: str, rcpts: list[str], body: bytes) -> dict[str, tuple[int, bytes]]:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        return client.sendmail(sender, rcpts, body)


async def test_message_lands_byte_exact_in_maildir(
    server: ServerState, config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_user(config_path, "alice@example.test", "secret-pw", monkeypatch)
    body = (
        b"From: bob@example.net\r\nTo: alice@example.test\r\nSubject: hi\r\n\r\n"
        b"line one\r\n.\r\n..two dots\r\n.x\r\nlast line\r\n"
    )
    port = port_of(server, "smtp")
    await trio.to_thread.run_sync(send, port, "bob@example.net", ["alice@example.test"], body)
    maildir_path = server.config.data_dir / "mail" / "alice@example.test"
    files = await wait_for_files(maildir_path / "new", 1)
    box = mailbox.Maildir(maildir_path, factory=None, create=False)
    [msg] = list(box)
    stored = files[0].read_bytes()
    assert stored.startswith(b"Return-Path: <bob@example.net>\nReceived: from ")
    assert stored.endswith(body.replace(b"\r\n", b"\n"))
    assert msg["Subject"] == "hi"
    assert list((maildir_path / "tmp").iterdir()) == []


async def test_unknown_local_user_is_refused_and_relay_denied_for_untrusted(
    server: ServerState,
) -> None:
    port = port_of(server, "smtp")

    def dialogue() -> tuple[tuple[int, bytes], tuple[int, bytes]]:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.ehlo("client.example.net")
            client.mail("bob@example.net")
            return client.rcpt("no-such-user@example.test"), client.rcpt("root@example.test")

    unknown, root = await trio.to_thread.run_sync(dialogue)
    assert unknown[0] == 550 and b"5.1.1" in unknown[1]
    assert root[0] == 250


async def test_root_mail_reaches_root_mailbox_before_any_user_exists(server: ServerState) -> None:
    port = port_of(server, "smtp")
    body = b"Subject: cron\r\n\r\noutput\r\n"
    await trio.to_thread.run_sync(send, port, "cron@example.test", ["root@localhost"], body)
    files = await wait_for_files(server.config.data_dir / "mail" / "root" / "new", 1)
    assert files[0].read_bytes().endswith(b"\n\noutput\n")


async def test_ten_recipients_share_one_stored_copy(
    server: ServerState, config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rcpts = [f"user{i:02d}@example.test" for i in range(1, 11)]
    for r in rcpts:
        add_user(config_path, r, "pw", monkeypatch)
    port = port_of(server, "smtp")
    await trio.to_thread.run_sync(
        send, port, "a@example.net", rcpts, b"Subject: x\r\n\r\nhello\r\n"
    )
    inodes = set()
    for r in rcpts:
        [f] = await wait_for_files(server.config.data_dir / "mail" / r / "new", 1)
        inodes.add(f.stat().st_ino)
    assert len(inodes) == 1
    active = server.config.queue_dir / "active"
    with trio.fail_after(10):
        while any(active.iterdir()):  # removed from the spool right after the delivery
            await trio.sleep(0.02)


async def test_mbox_store_receives_mail_readable_by_mailbox_mbox(
    nursery: trio.Nursery, make_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = make_config('[store]\nformat = "mbox"\n')
    add_user(path, "alice@example.test", "pw", monkeypatch)
    state: ServerState = await nursery.start(serve, load_config(path))
    body = b"Subject: mbox\r\nStatus: RO\r\n\r\nFrom the start\r\n>From quoted\r\nend\r\n"
    port = port_of(state, "smtp")
    await trio.to_thread.run_sync(send, port, "bob@example.net", ["alice@example.test"], body)
    inbox = state.config.data_dir / "mail" / "alice@example.test" / "INBOX"
    with trio.fail_after(10):
        while not inbox.exists() or any((state.config.queue_dir / "active").iterdir()):
            await trio.sleep(0.02)
    [msg] = list(mailbox.mbox(inbox))
    assert msg.get_from().startswith("bob@example.net ")
    assert msg["Subject"] == "mbox" and msg["Return-Path"] == "<bob@example.net>"
    # mboxrd quoting (Python's reader does not undo it; mutt and Dovecot do)
    assert msg.get_payload() == ">From the start\n>>From quoted\nend\n"
    assert msg["Status"] is None  # forged metadata headers are stripped at delivery


async def test_alias_that_also_forwards_goes_through_the_queue_once(
    server: ServerState, config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_user(config_path, "alice@example.test", "pw", monkeypatch)
    (server.config.data_dir / "aliases").write_text("team: alice, someone@example.net\n")
    port = port_of(server, "smtp")
    rcpts = ["team@example.test"]
    await trio.to_thread.run_sync(send, port, "bob@example.net", rcpts, b"\r\nx\r\n")
    alice_new = server.config.data_dir / "mail" / "alice@example.test" / "new"
    [delivered] = await wait_for_files(alice_new, 1)
    spool = server.spool

    def forwards() -> list[QueueItem]:
        items = []
        for qid in spool.scan(sweep=False):
            with contextlib.suppress(FileNotFoundError):  # the original leaves meanwhile
                items.append(spool.load(qid))
        return [i for i in items if i.envelope.origin.startswith("forward")]

    with trio.fail_after(10):  # the forward waits in the queue (its transport refuses)
        while not forwards():
            await trio.sleep(0.05)
    [forward] = forwards()
    assert forward.envelope.recipients == ("someone@example.net",)
    await trio.sleep(0.3)
    assert len(list(delivered.parent.iterdir())) == 1  # alice got exactly one copy
