"""POP3 end to end: Python's poplib against the trio adapter, on Maildir and on mbox."""

from __future__ import annotations

import poplib
import shutil
import ssl
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

import pytest
import trio
import trustme

from tinymail.config import load_config
from tinymail.net.context import ServiceContext
from tinymail.net.pop3_session import handle_pop3
from tinymail.net.serve import build_state
from tinymail.store import maildir, mbox
from tinymail.store.layout import mailbox_path
from tinymail.store.maildir_folders import MaildirStore
from tinymail.store.mbox_folder import MboxFolder
from tinymail.store.users import set_password

T = TypeVar("T")
USER, PASSWORD = "bob@example.test", "pop-secret"
MESSAGES = [
    b"Return-Path: <a@example.test>\nSubject: m%d\n\nline one\n.starts with dot\n" % n
    for n in range(3)
]


@dataclass
class Server:
    port: int
    data_dir: Path
    client_ssl: ssl.SSLContext
    store_format: str

    def client(self) -> poplib.POP3:
        return poplib.POP3("127.0.0.1", self.port, timeout=10)

    def login(self) -> poplib.POP3:
        pop = self.client()
        pop.stls(self.client_ssl)
        pop.user(USER)
        pop.pass_(PASSWORD)
        return pop

    def deliver(self, content: bytes) -> None:
        if self.store_format == "mbox":
            mbox.deliver(mbox.folder_path(self.data_dir, USER), content, "a@example.test")
        else:
            maildir.deliver([mailbox_path(self.data_dir, USER)], content)

    def imap_uids(self) -> tuple[int, list[int]]:
        """UIDVALIDITY and UIDs as the IMAP side of the store sees them."""
        if self.store_format == "mbox":
            parsed = MboxFolder(mbox.folder_path(self.data_dir, USER)).sync()
            return parsed.uidvalidity, [e.uid or 0 for e in parsed.entries]
        view = MaildirStore(mailbox_path(self.data_dir, USER)).open("INBOX").sync(False)
        return view.uidvalidity, list(view.uids)


@pytest.fixture(params=["maildir", "mbox"])
async def server(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Server]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    cert.private_key_and_cert_chain_pem.write_to_path(str(data_dir / "cert.pem"))
    conf = tmp_path / "tinymail.toml"
    conf.write_text(
        f'hostname = "mx.example.test"\ndomains = ["example.test"]\ndata_dir = "{data_dir}"\n'
        f'[tls]\ncert = "cert.pem"\n[store]\nformat = "{request.param}"\n'
    )
    cfg = load_config(conf)
    set_password(cfg.users_file, USER, PASSWORD, create=True)
    ctx = ServiceContext(build_state(cfg), "pop3")
    client_ssl = ssl.create_default_context()
    ca.configure_trust(client_ssl)

    async def handler(stream: trio.SocketStream) -> None:
        await handle_pop3(stream, stream.socket.getpeername()[:2], ctx)

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    srv = Server(port, data_dir, client_ssl, request.param)
    for content in MESSAGES:
        srv.deliver(content)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(trio.serve_listeners, handler, listeners))
        yield srv
        nursery.cancel_scope.cancel()


async def in_thread(fn: Callable[[], T]) -> T:
    with trio.fail_after(30):
        return await trio.to_thread.run_sync(fn)


async def test_stls_login_list_retr_dele_quit(server: Server) -> None:
    def session() -> None:
        pop = server.login()
        count, total = pop.stat()
        assert count == 3
        sizes = [int(line.split()[1]) for line in pop.list()[1]]
        assert total == sum(sizes) == sum(len(m) + m.count(b"\n") for m in MESSAGES)
        uidls = pop.uidl()[1]
        uidvalidity, uids = server.imap_uids()
        assert uidls == [b"%d %08x%08x" % (n, uid, uidvalidity) for n, uid in enumerate(uids, 1)]
        _, lines, octets = pop.retr(2)
        assert b"\n".join(lines) + b"\n" == MESSAGES[1]  # poplib un-stuffs the "." line
        assert octets == sizes[1]  # poplib counts the message octets without the stuffing
        assert pop.top(1, 0)[1] == [b"Return-Path: <a@example.test>", b"Subject: m0", b""]
        assert pop.dele(1).startswith(b"+OK")
        with pytest.raises(poplib.error_proto, match="deleted"):
            pop.retr(1)
        assert pop.quit().startswith(b"+OK")

    await in_thread(session)

    def next_session() -> list[bytes]:
        pop = server.login()
        try:
            return pop.uidl()[1]
        finally:
            pop.quit()

    uidvalidity, uids = server.imap_uids()
    assert len(uids) == 2
    remaining = await in_thread(next_session)
    # UIDL is stable across sessions and matches the IMAP UIDs of the remaining messages.
    assert remaining == [b"%d %08x%08x" % (n, uid, uidvalidity) for n, uid in enumerate(uids, 1)]


async def test_second_session_gets_in_use_and_drop_deletes_nothing(server: Server) -> None:
    def sessions() -> None:
        first = server.login()
        first.dele(1)
        second = server.client()
        second.stls(server.client_ssl)
        second.user(USER)
        with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
            second.pass_(PASSWORD)
        second.quit()
        first.sock.close()  # the connection drops without QUIT: RFC 1939 §6, nothing deleted

    await in_thread(sessions)
    await trio.sleep(0.2)  # let the server notice the drop and release the lock

    def again() -> int:
        pop = server.login()
        try:
            return int(pop.stat()[0])
        finally:
            pop.quit()

    assert await in_thread(again) == 3


async def test_mail_arriving_during_a_session_shows_next_time(server: Server) -> None:
    def session() -> None:
        pop = server.login()
        assert pop.stat()[0] == 3
        server.deliver(b"Subject: late\n\nhello\n")
        assert pop.stat()[0] == 3  # RFC 1939: the listing is fixed for the session
        pop.dele(3)
        pop.quit()
        pop = server.login()
        assert pop.stat()[0] == 3
        assert pop.retr(3)[1] == [b"Subject: late", b"", b"hello"]
        pop.quit()

    await in_thread(session)


async def test_capa_before_and_after_stls(server: Server) -> None:
    def session() -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        pop = server.client()
        try:
            before = pop.capa()
            pop.stls(server.client_ssl)
            return before, pop.capa()
        finally:
            pop.quit()

    before, after = await in_thread(session)
    assert "STLS" in before and before["SASL"] == ["PLAIN"] and "USER" in before
    assert "STLS" not in after and "UIDL" in after and "TOP" in after


@pytest.mark.skipif(shutil.which("getmail") is None, reason="getmail6 not installed (apt getmail6)")
async def test_getmail_downloads_and_deletes(server: Server, tmp_path: Path) -> None:
    out = tmp_path / "downloaded"
    out.mkdir()
    # An external MDA: getmail's Maildir/Mboxrd destinations refuse to run as root (CI does).
    saver = f"import sys, uuid; open({str(out)!r} + '/' + uuid.uuid4().hex, 'wb')" + (
        ".write(sys.stdin.buffer.read())"
    )
    rc = tmp_path / "getmailrc"
    rc.write_text(
        f"[retriever]\ntype = SimplePOP3Retriever\nserver = 127.0.0.1\nport = {server.port}\n"
        f"username = {USER}\npassword = {PASSWORD}\n"
        f"[destination]\ntype = MDA_external\npath = {sys.executable}\n"
        f"arguments = ('-c', {saver!r})\nallow_root_commands = true\n"
        "[options]\ndelete = true\nread_all = true\nverbose = 0\n"
    )
    with trio.fail_after(60):
        result = await trio.run_process(
            ["getmail", "--rcfile", str(rc), "--getmaildir", str(tmp_path)],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    got = sorted(out.iterdir())
    assert len(got) == len(MESSAGES)
    bodies = sorted(path.read_bytes() for path in got)
    for content, body in zip(MESSAGES, bodies, strict=True):
        assert body.endswith(content.split(b"\n", 1)[1])  # getmail adds its own headers first
    assert server.imap_uids()[1] == []  # DELE + QUIT removed them from the store


async def test_mbox_listing_gives_uids_without_rewriting_the_file(server: Server) -> None:
    """A fresh mbox (no X-UID yet) gets its UIDs at the first POP3 listing without a rewrite
    of the file; they are the ones IMAP sees, and the same in the next session."""
    if server.store_format != "mbox":
        pytest.skip("mbox only")
    path = mbox.folder_path(server.data_dir, USER)
    before, inode = path.read_bytes(), path.stat().st_ino

    def uidls() -> list[bytes]:
        pop = server.login()
        try:
            return pop.uidl()[1]
        finally:
            pop.quit()

    first = await in_thread(uidls)
    assert path.read_bytes() == before and path.stat().st_ino == inode
    uidvalidity, uids = server.imap_uids()
    assert first == [b"%d %08x%08x" % (n, uid, uidvalidity) for n, uid in enumerate(uids, 1)]
    assert await in_thread(uidls) == first
