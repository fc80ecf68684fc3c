"""Concurrency on ONE mbox, bounded in time: SMTP deliveries, an IMAP client expunging and a
POP3 client downloading and deleting, all at once for a few seconds. Afterwards every
delivered Message-ID is accounted for exactly: still in the mbox (once) or deleted by a client
that saw it, and the file parses with our reader, Python's mailbox and s-nail."""

from __future__ import annotations

import imaplib
import mailbox
import os
import poplib
import re
import shutil
import smtplib
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from tests.conftest import add_user, port_of
from tests.e2e.helpers import queue_empty
from tinymail.config import Config, load_config
from tinymail.net.context import ServerState
from tinymail.store import mbox

USER, PASSWORD = "alice@example.test", "alice-pw"
RUN_SECONDS = 8.0
SENDERS = 2
MSGID = re.compile(rb"Message-ID: <(s\d+-\d+)@stress>", re.IGNORECASE)


@pytest.fixture
def config(make_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> Config:
    path = make_config('\n[store]\nformat = "mbox"\n')
    add_user(path, USER, PASSWORD, monkeypatch)
    return load_config(path)


class Ledger:
    """What the clients did, shared between their threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent: set[bytes] = set()
        self.deleted: set[bytes] = set()
        self.by_imap: set[bytes] = set()
        self.by_pop3: set[bytes] = set()
        self.errors: list[str] = []
        self.stop = threading.Event()

    def add(self, field: set[bytes], ids: set[bytes]) -> None:
        with self.lock:
            field |= ids


def sender(port: int, worker: int, ledger: Ledger) -> None:
    n = 0
    while not ledger.stop.is_set():
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=20) as client:
                for _ in range(5):
                    n += 1
                    ident = b"s%d-%d" % (worker, n)
                    body = b"Subject: %s\r\nMessage-ID: <%s@stress>\r\n\r\nFrom %s\r\n" % (
                        ident,
                        ident,
                        ident,
                    )
                    client.sendmail("bob@example.net", [USER], body)
                    ledger.add(ledger.sent, {ident})  # 250: durably queued
        except (OSError, smtplib.SMTPException) as exc:
            ledger.errors.append(f"smtp: {exc!r}")
            return


def imap_expunger(port: int, ledger: Ledger) -> None:
    """Repeatedly: SELECT, read the Message-IDs, delete every other one by UID."""
    try:
        imap = imaplib.IMAP4("127.0.0.1", port, timeout=20)
        imap.login(USER, PASSWORD)
        while not ledger.stop.is_set():
            imap.select("INBOX")
            typ, data = imap.uid("FETCH", "1:*", "(UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
            assert typ == "OK", data
            seen: dict[bytes, bytes] = {}
            for item in data:
                if isinstance(item, tuple):
                    uid, ident = re.search(rb"UID (\d+)", item[0]), MSGID.search(item[1])
                    if uid and ident:
                        seen[uid.group(1)] = ident.group(1)
            doomed = sorted(seen)[::2]
            if doomed:
                uids = b",".join(doomed).decode()
                assert imap.uid("STORE", uids, "+FLAGS.SILENT", r"(\Deleted)")[0] == "OK"
                assert imap.uid("EXPUNGE", uids)[0] == "OK"
                ledger.add(ledger.deleted, {seen[u] for u in doomed})
                ledger.add(ledger.by_imap, {seen[u] for u in doomed})
            time.sleep(0.05)
        imap.logout()
    except Exception as exc:  # reported to the test
        ledger.errors.append(f"imap: {exc!r}")


def pop3_downloader(port: int, ledger: Ledger) -> None:
    """Repeatedly: log in, RETR and DELE a third of the messages, QUIT (UPDATE applies)."""
    while not ledger.stop.is_set():
        try:
            pop = poplib.POP3("127.0.0.1", port, timeout=20)
            pop.user(USER)
            pop.pass_(PASSWORD)
            count = pop.stat()[0]
            taken: set[bytes] = set()
            for number in range(1, count + 1, 3):
                try:
                    _, lines, _ = pop.retr(number)
                except poplib.error_proto as exc:
                    if b"removed by another session" in exc.args[0]:
                        continue  # IMAP expunged it after our listing: a legal -ERR
                    raise
                ident = MSGID.search(b"\r\n".join(lines))
                if ident is None:
                    raise AssertionError(f"RETR {number} has no Message-ID: {lines[:5]!r}")
                pop.dele(number)
                taken.add(ident.group(1))
            pop.quit()  # +OK: the deletions are done
            ledger.add(ledger.deleted, taken)
            ledger.add(ledger.by_pop3, taken)
        except poplib.error_proto as exc:
            if b"[IN-USE]" not in exc.args[0]:
                ledger.errors.append(f"pop3: {exc!r}")
                return
        except Exception as exc:
            ledger.errors.append(f"pop3: {exc!r}")
            return
        time.sleep(0.05)


async def test_delivery_imap_expunge_and_pop3_on_one_mbox(
    server: ServerState, tmp_path: Path
) -> None:
    ledger = Ledger()
    workers = [
        *(lambda w=w: sender(port_of(server, "smtp"), w, ledger) for w in range(SENDERS)),
        lambda: imap_expunger(port_of(server, "imap"), ledger),
        lambda: pop3_downloader(port_of(server, "pop3"), ledger),
    ]
    with trio.fail_after(RUN_SECONDS + 60):
        async with trio.open_nursery() as nursery:
            for work in workers:
                nursery.start_soon(trio.to_thread.run_sync, work)
            await trio.sleep(RUN_SECONDS)
            ledger.stop.set()
        while not queue_empty(server.config.data_dir):  # every accepted message delivered
            await trio.sleep(0.1)
    assert not ledger.errors, ledger.errors
    assert len(ledger.sent) >= 20, "the senders barely ran"
    # Both clients really worked on the file while mail kept arriving.
    assert ledger.by_imap and ledger.by_pop3, (len(ledger.by_imap), len(ledger.by_pop3))

    path = server.config.data_dir / "mail" / USER / "INBOX"
    data = path.read_bytes()
    kept = [MSGID.search(mbox.message_bytes(data, e)) for e in mbox.parse(data).entries]
    kept_ids = [m.group(1) for m in kept if m]
    assert len(kept_ids) == len(kept)  # nothing torn or foreign
    assert len(set(kept_ids)) == len(kept_ids), "a message is in the mbox twice"
    assert not set(kept_ids) & ledger.deleted, "a deleted message came back"
    lost = ledger.sent - set(kept_ids) - ledger.deleted
    assert not lost, f"lost: {sorted(lost)[:10]}"
    assert set(kept_ids) | ledger.deleted <= ledger.sent  # nothing invented

    box = mailbox.mbox(path, create=False)
    try:
        assert len(box) == len(kept_ids)
    finally:
        box.close()
    if shutil.which("s-nail") is not None:  # -H: the header summary of every message
        result = subprocess.run(
            ["s-nail", "-N", "-R", "-S", "v15-compat", "-H", "-f", str(path)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env={"HOME": str(tmp_path), "PATH": os.environ["PATH"], "LC_ALL": "C"},
            timeout=30,
            check=len(kept_ids) > 0,  # s-nail exits 1 on an empty mailbox
        )
        subjects = re.findall(rb" (s\d+-\d+) *$", result.stdout, re.MULTILINE)
        assert sorted(subjects) == sorted(kept_ids)
