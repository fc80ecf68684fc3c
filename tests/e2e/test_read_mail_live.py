"""Mail delivered over SMTP, read back over IMAP and POP3 from the same running server."""

from __future__ import annotations

import imaplib
import poplib
import re
import smtplib
import time
from pathlib import Path

import pytest
import trio

from tests.conftest import add_user, port_of
from tinymail.net.context import ServerState

BODY = b"From: bob@example.net\r\nSubject: live\r\n\r\nline\r\n..dot\r\n"


def smtp_send(port: int, body: bytes = BODY) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail("bob@example.net", ["alice@example.test"], body)


@pytest.fixture
def alice(config_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    add_user(config_path, "alice@example.test", "alice-pw", monkeypatch)
    return "alice@example.test"


async def test_smtp_then_imap_and_pop3_agree(server: ServerState, alice: str) -> None:
    await trio.to_thread.run_sync(smtp_send, port_of(server, "smtp"))

    def imap_read() -> tuple[bytes, int, int]:
        with imaplib.IMAP4("127.0.0.1", port_of(server, "imap"), timeout=10) as imap:
            imap.login(alice, "alice-pw")
            deadline = time.monotonic() + 10
            while True:  # delivery follows the 250 within moments
                typ, data = imap.select("INBOX")
                if int(data[0] or 0) >= 1 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            uidvalidity = int(imap.response("UIDVALIDITY")[1][0])  # type: ignore[index,arg-type]
            typ, fetched = imap.uid("FETCH", "1:*", "(UID BODY.PEEK[])")
            assert typ == "OK"
            first = fetched[0]
            assert isinstance(first, tuple)
            uid = int(re.search(rb"UID (\d+)", first[0]).group(1))  # type: ignore[union-attr]
            return first[1], uid, uidvalidity

    raw, uid, uidvalidity = await trio.to_thread.run_sync(imap_read)
    assert raw.endswith(BODY)  # byte-exact, served with CRLF (smtplib did the dot-stuffing)

    def pop_read() -> tuple[bytes, list[bytes]]:
        pop = poplib.POP3("127.0.0.1", port_of(server, "pop3"), timeout=10)
        try:
            pop.user(alice)
            pop.pass_("alice-pw")
            _, lines, _ = pop.retr(1)
            return pop.uidl(1), lines
        finally:
            pop.quit()

    uidl, lines = await trio.to_thread.run_sync(pop_read)
    assert uidl.split()[-1] == b"%08x%08x" % (uid, uidvalidity)
    assert b"\r\n".join(lines) + b"\r\n" == raw


async def test_idle_reports_smtp_delivery_within_a_second(server: ServerState, alice: str) -> None:
    def idle_until_exists() -> float:
        imap = imaplib.IMAP4("127.0.0.1", port_of(server, "imap"), timeout=10)
        try:
            imap.login(alice, "alice-pw")
            imap.select("INBOX")
            tag = imap._new_tag().decode()  # type: ignore[attr-defined]
            imap.send(f"{tag} IDLE\r\n".encode())
            assert imap.readline().startswith(b"+")
            smtp_send(port_of(server, "smtp"))
            sent = time.monotonic()
            while True:
                line = imap.readline()
                if re.match(rb"\* \d+ EXISTS", line):
                    waited = time.monotonic() - sent
                    imap.send(b"DONE\r\n")
                    return waited
        finally:
            imap.shutdown()

    waited = await trio.to_thread.run_sync(idle_until_exists)
    assert waited < 1.0


async def test_pop3_retr_sets_seen_at_quit_for_imap(server: ServerState, alice: str) -> None:
    await trio.to_thread.run_sync(smtp_send, port_of(server, "smtp"))

    def flags_after_pop3() -> tuple[bytes, bytes]:
        imap = imaplib.IMAP4("127.0.0.1", port_of(server, "imap"), timeout=10)
        imap.login(alice, "alice-pw")
        deadline = time.monotonic() + 10
        while int(imap.select("INBOX")[1][0] or 0) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        pop = poplib.POP3("127.0.0.1", port_of(server, "pop3"), timeout=10)
        pop.user(alice)
        pop.pass_("alice-pw")
        pop.retr(1)
        before = imap.fetch("1", "(FLAGS)")[1][0]  # RETR done, session still open
        pop.quit()  # UPDATE state: \Seen lands now, with any deletions
        imap.noop()
        after = imap.fetch("1", "(FLAGS)")[1][0]
        imap.logout()
        assert isinstance(before, bytes) and isinstance(after, bytes)
        return before, after

    before, after = await trio.to_thread.run_sync(flags_after_pop3)
    assert b"\\Seen" not in before
    assert b"\\Seen" in after
