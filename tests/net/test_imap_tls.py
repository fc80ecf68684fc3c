"""STARTTLS and implicit TLS for IMAP over real sockets, with a trustme certificate."""

from __future__ import annotations

import imaplib
import socket
import ssl
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
import trio
import trustme

from tests.net.test_imap_session import PASSWORD, USER, Ctx, in_thread
from tinymail.config import TLSConfig, load_config
from tinymail.net.imap_session import handle_imap
from tinymail.net.tls import TLSHolder
from tinymail.store.users import UserSource, set_password


@dataclass(frozen=True)
class RemoteCtx(Ctx):
    """A context whose peers are not loopback: plaintext login must be refused."""

    def is_loopback(self, peer: tuple[str, int] | str) -> bool:
        return False


async def serve(
    nursery: trio.Nursery, tmp_path: Path, implicit: bool
) -> tuple[int, ssl.SSLContext]:
    ca = trustme.CA()
    pem = tmp_path / "server.pem"
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(pem))
    (tmp_path / "tinymail.toml").write_text(f'data_dir = "{tmp_path}"\n')
    set_password(tmp_path / "users", USER, PASSWORD, create=True)
    config = load_config(tmp_path / "tinymail.toml")
    holder = TLSHolder(TLSConfig(cert=str(pem), key=str(pem)), tmp_path)
    ctx = RemoteCtx(config, UserSource(config.users_file), holder, "imaps" if implicit else "imap",
                    implicit)  # fmt: skip

    async def handler(stream: trio.SocketStream) -> None:
        await handle_imap(stream, ("192.0.2.1", 1), ctx)

    listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    return listeners[0].socket.getsockname()[1], client_ctx


async def test_starttls_then_login(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        port, client_ctx = await serve(nursery, tmp_path, implicit=False)

        def run() -> None:
            m = imaplib.IMAP4("127.0.0.1", port, timeout=20)
            assert "LOGINDISABLED" in m.capabilities and "STARTTLS" in m.capabilities
            with pytest.raises(imaplib.IMAP4.error):
                m.login(USER, PASSWORD)
            m.starttls(ssl_context=client_ctx)
            assert "LOGINDISABLED" not in m.capabilities and "AUTH=PLAIN" in m.capabilities
            assert m.login(USER, PASSWORD)[0] == "OK"
            assert m.select("INBOX")[0] == "OK"
            m.logout()

        await in_thread(run)
        nursery.cancel_scope.cancel()


async def test_starttls_drops_pipelined_plaintext(tmp_path: Path) -> None:
    # research 2.2 T2: "A STARTTLS\r\nB NOOP\r\n" in one packet must not answer B
    async with trio.open_nursery() as nursery:
        port, client_ctx = await serve(nursery, tmp_path, implicit=False)

        def run() -> None:
            with socket.create_connection(("127.0.0.1", port), timeout=20) as raw:
                f = raw.makefile("rb")
                f.readline()
                raw.sendall(b"A STARTTLS\r\nB NOOP\r\n")
                assert f.readline() == b"A OK Begin TLS negotiation now\r\n"
                tls = client_ctx.wrap_socket(raw, server_hostname="127.0.0.1")
                tls.sendall(b"C NOOP\r\n")
                assert tls.recv(1000) == b"C OK NOOP completed\r\n"

        await in_thread(run)
        nursery.cancel_scope.cancel()


async def test_implicit_tls(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        port, client_ctx = await serve(nursery, tmp_path, implicit=True)

        def run() -> None:
            m = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=client_ctx, timeout=20)
            assert "STARTTLS" not in m.capabilities and "AUTH=PLAIN" in m.capabilities
            assert m.login(USER, PASSWORD)[0] == "OK"
            m.logout()

        await in_thread(run)
        nursery.cancel_scope.cancel()
