"""IMAP and POP3 on an mbox store, end to end: SMTP delivery -> IMAP SELECT/FETCH/STORE/
EXPUNGE/APPEND/COPY/MOVE -> the file still read by Python's mailbox and s-nail; UIDs stable
across restarts and equal to POP3's UIDLs; recovery from a torn append; the format refusal."""

from __future__ import annotations

import imaplib
import mailbox
import os
import poplib
import re
import shutil
import smtplib
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.conftest import add_user, port_of
from tinymail.config import Config, load_config
from tinymail.net.context import ServerState
from tinymail.net.serve import serve
from tinymail.store import mbox

USER, PASSWORD = "alice@example.test", "alice-pw"
MBOX_STORE = '\n[store]\nformat = "mbox"\n'


def message(n: int, body: bytes = b"line\r\n") -> bytes:
    return b"From: bob@example.net\r\nSubject: m%d\r\nMessage-ID: <m%d@x>\r\n\r\n%s" % (n, n, body)


def smtp_send(port: int, *bodies: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        for body in bodies:
            client.sendmail("bob@example.net", [USER], body)


def ok(result: tuple[str, list[Any]]) -> list[Any]:
    status, data = result
    assert status == "OK", data
    return data


def imap_login(port: int) -> imaplib.IMAP4:
    imap = imaplib.IMAP4("127.0.0.1", port, timeout=10)
    imap.login(USER, PASSWORD)
    return imap


def select_until(imap: imaplib.IMAP4, count: int, timeout: float = 15.0) -> int:
    """SELECT INBOX until it holds `count` messages (delivery follows the 250 within moments)."""
    deadline = time.monotonic() + timeout
    while True:
        exists = int(ok(imap.select("INBOX"))[0])
        if exists >= count or time.monotonic() > deadline:
            return exists
        time.sleep(0.05)


def uid_map(imap: imaplib.IMAP4) -> dict[int, bytes]:
    """UID -> whole message (CRLF) for the selected mailbox."""
    out: dict[int, bytes] = {}
    for item in ok(imap.uid("FETCH", "1:*", "(UID BODY.PEEK[])")):
        if isinstance(item, tuple):
            uid = re.search(rb"UID (\d+)", item[0])
            assert uid is not None
            out[int(uid.group(1))] = item[1]
    return out


def pop_uidls(port: int) -> dict[int, bytes]:
    """POP3 message number -> UIDL, and RETR of the first message must work."""
    pop = poplib.POP3("127.0.0.1", port, timeout=10)
    try:
        pop.user(USER)
        pop.pass_(PASSWORD)
        _, lines, _ = pop.uidl()
        return {int(n): u for n, u in (line.split() for line in lines)}
    finally:
        pop.quit()


def s_nail_headers(home: Path, path: Path) -> str:
    result = subprocess.run(
        ["s-nail", "-N", "-R", "-S", "v15-compat", "-f", str(path)],
        input=b"headers\nquit\n",
        capture_output=True,
        env={"HOME": str(home), "PATH": os.environ["PATH"], "LC_ALL": "C"},
        timeout=30,
        check=True,
    )
    return result.stdout.decode("utf-8", "replace")


@pytest.fixture
def config(make_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> Config:
    path = make_config(MBOX_STORE)
    add_user(path, USER, PASSWORD, monkeypatch)
    return load_config(path)


def inbox_path(cfg: Config) -> Path:
    return cfg.data_dir / "mail" / USER / "INBOX"


async def test_imap_session_on_mbox_keeps_a_valid_mbox(server: ServerState, tmp_path: Path) -> None:
    cfg = server.config
    bodies = [message(1), message(2, b"From the start\r\n>From quoted\r\n"), message(3)]
    await trio.to_thread.run_sync(smtp_send, port_of(server, "smtp"), *bodies)

    def session() -> tuple[dict[int, bytes], int]:
        imap = imap_login(port_of(server, "imap"))
        try:
            assert select_until(imap, 3) == 3
            assert imap.response("RECENT")[1] == [b"3"]  # the first SELECT claims them
            validity = int(imap.response("UIDVALIDITY")[1][0])
            fetched = uid_map(imap)
            assert sorted(fetched) == [1, 2, 3]
            assert [fetched[u].endswith(bodies[u - 1]) for u in (1, 2, 3)] == [True] * 3
            ok(imap.uid("STORE", "1", "+FLAGS", r"(\Seen \Flagged $Work)"))
            ok(imap.uid("STORE", "2", "+FLAGS", r"(\Deleted)"))
            assert ok(imap.expunge()) == [b"2"]
            typ, data = imap.append("INBOX", r"(\Draft)", None, b"Subject: app\r\n\r\nhi\r\n")
            assert typ == "OK" and b"APPENDUID %d 4" % validity in data[0]
            ok(imap.uid("COPY", "1", "Archive"))
            ok(imap.uid("MOVE", "3", "Trash"))
            flags = ok(imap.uid("FETCH", "1:*", "(FLAGS)"))
            assert re.search(rb"UID 1 FLAGS \(.*\\Flagged", b" ".join(flags))
            ok(imap.select("Archive"))
            archived = uid_map(imap)
            assert list(archived.values()) == [fetched[1]]
            ok(imap.select("Trash"))
            assert list(uid_map(imap).values()) == [fetched[3]]
            return fetched, validity
        finally:
            imap.shutdown()

    fetched, validity = await trio.to_thread.run_sync(session)
    path = inbox_path(cfg)
    box = mailbox.mbox(path, create=False)
    try:
        subjects = [m["Subject"] for m in box]
        statuses = [m.get_flags() for m in box]  # Python reads Status/X-Status as we write them
    finally:
        box.close()
    assert subjects == ["m1", "app"]
    assert "R" in statuses[0] and "F" in statuses[0]
    data = path.read_bytes()
    stored = mbox.message_bytes(data, mbox.parse(data).entries[0])
    assert stored.replace(b"\n", b"\r\n") == fetched[1]  # byte-exact up to CRLF -> LF
    uidls = await trio.to_thread.run_sync(pop_uidls, port_of(server, "pop3"))
    assert sorted(uidls.values()) == [b"%08x%08x" % (uid, validity) for uid in (1, 4)]
    if shutil.which("s-nail") is not None:
        out = s_nail_headers(tmp_path, path)
        assert "m1" in out and "app" in out and "m2" not in out, out
        trash = s_nail_headers(tmp_path, path.with_name("Trash"))
        assert "m3" in trash, trash


async def test_other_sessions_see_flags_at_noop(server: ServerState) -> None:
    await trio.to_thread.run_sync(smtp_send, port_of(server, "smtp"), message(1))

    def two_sessions() -> list[Any]:
        one, two = imap_login(port_of(server, "imap")), imap_login(port_of(server, "imap"))
        try:
            assert select_until(one, 1) == 1
            ok(two.select("INBOX"))
            ok(one.store("1", "+FLAGS", r"(\Answered)"))
            ok(two.noop())
            return two.untagged_responses.get("FETCH", [])
        finally:
            one.shutdown()
            two.shutdown()

    seen = await trio.to_thread.run_sync(two_sessions)
    assert any(b"\\Answered" in line for line in seen), seen


async def test_torn_append_recovered_through_the_server(server: ServerState) -> None:
    """A crash mid-append leaves half a message; the running server keeps the earlier ones
    and serves the next delivery as a message of its own."""
    port = port_of(server, "smtp")
    await trio.to_thread.run_sync(smtp_send, port, message(1))
    path = inbox_path(server.config)
    with trio.fail_after(15):
        while not path.exists() or b"Message-ID: <m1@x>" not in path.read_bytes():
            await trio.sleep(0.05)
    with open(path, "ab") as torn:  # what a kill -9 in the middle of mbox.deliver leaves
        torn.write(b"From bob@example.net Thu Jan  1 00:00:00 1970\nSubject: torn\n\npart")
    await trio.to_thread.run_sync(smtp_send, port, message(2))

    def read_all() -> dict[int, bytes]:
        imap = imap_login(port_of(server, "imap"))
        try:
            assert select_until(imap, 3) == 3
            return uid_map(imap)
        finally:
            imap.shutdown()

    fetched = await trio.to_thread.run_sync(read_all)
    messages = list(fetched.values())
    assert messages[0].endswith(message(1)) and messages[2].endswith(message(2))
    assert messages[1] == b"Subject: torn\r\n\r\npart\r\n"  # the torn one, cut but harmless


async def test_uids_stable_across_restart_and_equal_to_uidl(config: Config) -> None:
    async def run_once(fn: Callable[[ServerState], Any]) -> Any:
        async with trio.open_nursery() as nursery:
            state: ServerState = await nursery.start(serve, config)
            result = await trio.to_thread.run_sync(fn, state)
            nursery.cancel_scope.cancel()
        return result

    def first(state: ServerState) -> tuple[dict[int, bytes], int]:
        smtp_send(port_of(state, "smtp"), message(1), message(2), message(3))
        imap = imap_login(port_of(state, "imap"))
        try:
            assert select_until(imap, 3) == 3
            ok(imap.uid("STORE", "2", "+FLAGS", r"(\Deleted)"))
            ok(imap.expunge())
            validity = int(imap.response("UIDVALIDITY")[1][0])
            return uid_map(imap), validity
        finally:
            imap.shutdown()

    def second(state: ServerState) -> tuple[dict[int, bytes], int, dict[int, bytes]]:
        smtp_send(port_of(state, "smtp"), message(4))
        imap = imap_login(port_of(state, "imap"))
        try:
            assert select_until(imap, 3) == 3
            validity = int(imap.response("UIDVALIDITY")[1][0])
            fetched = uid_map(imap)
        finally:
            imap.shutdown()
        return fetched, validity, pop_uidls(port_of(state, "pop3"))

    before, validity = await run_once(first)
    after, validity_after, uidls = await run_once(second)
    assert validity_after == validity
    assert sorted(before) == [1, 3] and sorted(after) == [1, 3, 4]
    assert all(after[uid] == before[uid] for uid in before)
    assert list(uidls.values()) == [b"%08x%08x" % (uid, validity) for uid in (1, 3, 4)]


def test_format_change_is_refused_with_one_line(
    make_config: Callable[..., Path], tmp_path: Path
) -> None:
    maildir_conf = make_config()
    # A first start with the default (Maildir) records the format.
    from tinymail.store.format import check_store_format

    check_store_format(load_config(maildir_conf).mail_dir, "maildir")
    mbox_conf = make_config(MBOX_STORE)
    result = subprocess.run(
        [sys.executable, "-m", "tinymail", "-c", str(mbox_conf), "serve"],
        capture_output=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 78, result.stderr
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith('tinymail: config error: store.format is "mbox"')
    assert 'set [store] format = "maildir"' in lines[0] and "convert" in lines[0]


async def test_idle_reports_delivery_and_flag_change(server: ServerState) -> None:
    await trio.to_thread.run_sync(smtp_send, port_of(server, "smtp"), message(1))

    def idle() -> list[bytes]:
        imap, other = imap_login(port_of(server, "imap")), imap_login(port_of(server, "imap"))
        try:
            assert select_until(imap, 1) == 1
            ok(other.select("INBOX"))
            tag = imap._new_tag().decode()
            imap.send(f"{tag} IDLE\r\n".encode())
            assert imap.readline().startswith(b"+")
            smtp_send(port_of(server, "smtp"), message(2))
            lines = [imap.readline(), imap.readline()]  # EXISTS, RECENT (socket timeout 10 s)
            ok(other.store("1", "+FLAGS", r"(\Flagged)"))
            lines.append(imap.readline())
            imap.send(b"DONE\r\n")
            return lines
        finally:
            imap.shutdown()
            other.shutdown()

    lines = await trio.to_thread.run_sync(idle)
    assert lines[:2] == [b"* 2 EXISTS\r\n", b"* 2 RECENT\r\n"], lines
    assert re.match(rb"\* 1 FETCH \(FLAGS \(.*\\Flagged.*\)\)", lines[2]), lines
