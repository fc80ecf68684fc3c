"""STARTTLS injection for IMAP and POP3 (research 2.2 T2, T3), over real sockets and TLS."""

from __future__ import annotations

import pytest
import trio

from tests.conftest import port_of
from tests.security.conftest import ConfigFactory, LineClient, Starter, TLSFiles
from tinymail.net.serve import HANDLERS


def needs(service: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(service not in HANDLERS, reason="IMAP/POP3 adapters not wired yet")


async def assert_silent(client: LineClient) -> None:
    """After the handshake the server must not answer anything the client has not sent."""
    with trio.move_on_after(0.5):
        extra = await client.stream.receive_some(100)
        pytest.fail(f"server answered an injected command: {extra!r}")


@needs("pop3")
async def test_pop3_stls_injection(
    tls_config: ConfigFactory, start_server: Starter, tls_files: TLSFiles
) -> None:
    state = await start_server(tls_config(listen={"pop3": '["127.0.0.1:0"]'}))
    client = await LineClient.connect(port_of(state, "pop3"))
    assert (await client.line()).startswith(b"+OK")
    await client.send(b"STLS\r\nCAPA\r\n")
    assert (await client.line()).startswith(b"+OK")
    assert client.buffer == b""  # CAPA was not answered in plaintext
    await client.starttls(tls_files.client_context())
    await assert_silent(client)
    await client.send(b"CAPA\r\n")
    assert (await client.line()).startswith(b"+OK")
    await client.aclose()


@needs("imap")
async def test_imap_starttls_injection(
    tls_config: ConfigFactory, start_server: Starter, tls_files: TLSFiles
) -> None:
    state = await start_server(tls_config(listen={"imap": '["127.0.0.1:0"]'}))
    client = await LineClient.connect(port_of(state, "imap"))
    assert (await client.line()).startswith(b"* OK")
    await client.send(b"A STARTTLS\r\nB NOOP\r\n")
    assert (await client.line()).startswith(b"A OK")
    assert client.buffer == b""  # B was not answered in plaintext
    await client.starttls(tls_files.client_context())
    await assert_silent(client)
    await client.send(b"C NOOP\r\n")
    assert (await client.line()).startswith(b"C OK")
    await client.aclose()
