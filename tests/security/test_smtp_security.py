"""SMTP security over real sockets and real TLS: relay, STARTTLS, AUTH policy, sender ownership."""

from __future__ import annotations

import logging
import shutil
import ssl
from pathlib import Path

import pytest
import trio

from tests.conftest import port_of
from tests.security.conftest import (
    ALICE,
    BOB,
    PASSWORD,
    ConfigFactory,
    LineClient,
    Starter,
    TLSFiles,
    add_users,
    plain_auth,
)
from tinymail.net.context import ServerState


def stored_files(state: ServerState) -> list[Path]:
    """Every message file kept: in the spool (not its lock) or delivered into a mailbox."""
    queue, mail = state.config.queue_dir, state.config.mail_dir
    queued = [p for p in queue.rglob("*") if p.is_file() and p.parent != queue]
    delivered = [p for p in mail.rglob("*") if p.is_file() and p.parent.name in ("new", "cur")]
    return queued + delivered


async def ehlo(client: LineClient) -> str:
    code, text = await client.command("EHLO client.example")
    assert code == 250, text
    return text


async def secure_login(
    port: int, tls: ssl.SSLContext, user: str = ALICE, password: str = PASSWORD
) -> LineClient:
    """Connect, STARTTLS, EHLO, AUTH PLAIN: a logged-in submission client."""
    client = await LineClient.connect(port)
    assert (await client.reply())[0] == 220
    await ehlo(client)
    assert (await client.command("STARTTLS"))[0] == 220
    await client.starttls(tls)
    assert "AUTH PLAIN LOGIN" in await ehlo(client)
    code, text = await client.command("AUTH PLAIN " + plain_auth(user, password))
    assert code == 235, text
    return client


RELAY_MATRIX = [
    ("victim@example.net", 554),  # R1 plain remote domain
    ("victim%example.net@example.test", 550),  # R2 percent hack: an unknown local user
    ("example.net!victim@example.test", 550),  # R3 bang path
    ('"victim@example.net"@example.test', 550),  # R4 quoted local part
    ("@example.test:victim@example.net", 554),  # R5 source route, stripped, then denied
    ("victim@[192.0.2.1]", 554),  # R6 IP literal
]


async def test_open_relay_matrix_from_untrusted_client(
    tls_config: ConfigFactory, start_server: Starter
) -> None:
    state = await start_server(tls_config())
    add_users(state.config, ALICE)
    client = await LineClient.connect(port_of(state, "smtp"))
    assert (await client.reply())[0] == 220
    await ehlo(client)
    # R9: a local sender does not buy relay rights.
    assert (await client.command(f"MAIL FROM:<{ALICE}>"))[0] == 250
    for address, expected in RELAY_MATRIX:
        code, text = await client.command(f"RCPT TO:<{address}>")
        assert code == expected, (address, text)
    code, text = await client.command("RCPT TO:<victim@example.net>")
    assert (code, "5.7.1") == (554, text.split()[1])
    code, _ = await client.command(f"RCPT TO:<{ALICE}>")  # local mail is still welcome
    assert code == 250
    assert (await client.command("RSET"))[0] == 250
    assert stored_files(state) == []
    await client.aclose()


async def test_authenticated_session_may_relay(
    tls_config: ConfigFactory, start_server: Starter, tls_files: TLSFiles
) -> None:
    state = await start_server(tls_config())
    add_users(state.config, ALICE)
    client = await secure_login(port_of(state, "smtp"), tls_files.client_context())
    assert (await client.command(f"MAIL FROM:<{ALICE}>"))[0] == 250
    assert (await client.command("RCPT TO:<friend@example.net>"))[0] == 250
    await client.aclose()


async def test_starttls_injection_is_discarded(
    tls_config: ConfigFactory, start_server: Starter, tls_files: TLSFiles
) -> None:
    state = await start_server(tls_config())
    client = await LineClient.connect(port_of(state, "smtp"))
    assert (await client.reply())[0] == 220
    await ehlo(client)
    # Research 2.2 T1: commands in the same flight as STARTTLS must never run.
    await client.send(b"STARTTLS\r\nEHLO injected\r\nMAIL FROM:<evil@example.net>\r\n")
    code, _ = await client.reply()
    assert code == 220
    assert client.buffer == b""  # nothing answered for the injected lines
    await client.starttls(tls_files.client_context())
    with trio.move_on_after(0.5):
        extra = await client.stream.receive_some(100)
        pytest.fail(f"server spoke after the handshake unprompted: {extra!r}")
    # RFC 3207 4.2: the EHLO before TLS is forgotten, so MAIL needs a new EHLO.
    code, _ = await client.command("MAIL FROM:<alice@example.test>")
    assert code == 503
    assert "STARTTLS" not in await ehlo(client)
    await client.aclose()


async def test_auth_over_plaintext_refused_for_non_local_client(
    tls_config: ConfigFactory, start_server: Starter, tls_files: TLSFiles
) -> None:
    # 127.0.0.2 stands for a remote client: only 127.0.0.1 may AUTH without TLS here.
    path = tls_config(
        listen={"submission": '["127.0.0.2:0"]', "smtp": "[]", "submissions": "[]"},
        auth={"plaintext_networks": '["127.0.0.1/32"]'},
    )
    state = await start_server(path)
    add_users(state.config, ALICE)
    port = port_of(state, "submission")
    remote = await LineClient.connect(port, host="127.0.0.2", local="127.0.0.2")
    assert (await remote.reply())[0] == 220
    extensions = await ehlo(remote)
    assert "STARTTLS" in extensions and "AUTH" not in extensions
    code, text = await remote.command("AUTH PLAIN " + plain_auth(ALICE, PASSWORD))
    assert code == 538, text  # RFC 4954 6: encryption required
    assert (await remote.command(f"MAIL FROM:<{ALICE}>"))[0] == 530
    assert (await remote.command("STARTTLS"))[0] == 220
    await remote.starttls(tls_files.client_context())
    assert "AUTH PLAIN LOGIN" in await ehlo(remote)
    assert (await remote.command("AUTH PLAIN " + plain_auth(ALICE, PASSWORD)))[0] == 235
    await remote.aclose()
    local = await LineClient.connect(port, host="127.0.0.2", local="127.0.0.1")
    assert (await local.reply())[0] == 220
    assert "AUTH PLAIN LOGIN" in await ehlo(local)  # a local client may, as configured
    await local.aclose()


async def test_submission_requires_auth_before_mail(
    tls_config: ConfigFactory, start_server: Starter, tls_files: TLSFiles
) -> None:
    state = await start_server(tls_config())
    client = await LineClient.connect(port_of(state, "submission"))
    assert (await client.reply())[0] == 220
    await ehlo(client)
    code, text = await client.command(f"MAIL FROM:<{ALICE}>")
    assert (code, text.split()[1]) == (530, "5.7.0")
    await client.aclose()


async def test_authzid_different_from_authcid_is_refused(
    tls_config: ConfigFactory, start_server: Starter, tls_files: TLSFiles
) -> None:
    state = await start_server(tls_config())
    add_users(state.config, ALICE, BOB)
    client = await LineClient.connect(port_of(state, "submission"))
    assert (await client.reply())[0] == 220
    await ehlo(client)
    assert (await client.command("STARTTLS"))[0] == 220
    await client.starttls(tls_files.client_context())
    await ehlo(client)
    code, _ = await client.command("AUTH PLAIN " + plain_auth(ALICE, PASSWORD, authzid=BOB))
    assert code == 535
    assert (await client.command("AUTH PLAIN !!!"))[0] == 501  # bad base64: 501 5.5.2
    await client.aclose()


async def test_sender_ownership(
    tls_config: ConfigFactory, start_server: Starter, tls_files: TLSFiles
) -> None:
    state = await start_server(tls_config())
    add_users(state.config, ALICE, BOB)
    state.config.aliases_file.write_text(f"sales: {ALICE}\n")
    client = await secure_login(port_of(state, "submission"), tls_files.client_context())
    for sender in (BOB, "alice@elsewhere.example", "nobody@example.test"):
        code, text = await client.command(f"MAIL FROM:<{sender}>")
        assert (code, text.split()[1]) == (553, "5.7.1"), sender
    for sender in ("sales@example.test", ALICE.upper()):
        assert (await client.command(f"MAIL FROM:<{sender}>"))[0] == 250, sender
        assert (await client.command("RSET"))[0] == 250

    async def send(from_header: str) -> tuple[int, str]:
        assert (await client.command(f"MAIL FROM:<{ALICE}>"))[0] == 250
        assert (await client.command("RCPT TO:<friend@example.net>"))[0] == 250
        assert (await client.command("DATA"))[0] == 354
        await client.send(f"From: {from_header}\r\nSubject: hi\r\n\r\nbody\r\n.\r\n".encode())
        return await client.reply()

    code, text = await send(f'"The Boss" <{BOB}>')
    assert (code, text.split()[1]) == (553, "5.7.1")
    code, text = await send(f"Alice <{ALICE}>, {BOB}")  # every From: address must be owned
    assert code == 553
    assert stored_files(state) == []
    code, text = await send(f"Alice <{ALICE}>")
    assert code == 250, text
    code, text = await send("Sales <sales@example.test>")
    assert code == 250, text
    await client.aclose()


async def test_auth_failures_throttled_then_refused(
    tls_config: ConfigFactory, start_server: Starter, tls_files: TLSFiles
) -> None:
    path = tls_config(
        auth={
            "failure_delay": '"1s"',
            "max_delay": '"1s"',
            "max_failures": "3",
            "plaintext_networks": '["127.0.0.1/32"]',
        }
    )
    state = await start_server(path)
    add_users(state.config, ALICE)
    port = port_of(state, "submission")
    client = await LineClient.connect(port)
    assert (await client.reply())[0] == 220
    await ehlo(client)
    timings = []
    for attempt in range(3):
        started = trio.current_time()
        code, _ = await client.command("AUTH PLAIN " + plain_auth(ALICE, f"wrong{attempt}"))
        timings.append(trio.current_time() - started)
        assert code == 535
    assert timings[0] < 0.9 <= timings[1]  # the penalty starts after the first failure
    # research 2.5 A6: the third failure on one connection ends it.
    assert (await client.reply()) == (421, "421 4.7.0 Too many authentication failures")
    await client.aclose()
    again = await LineClient.connect(port)
    assert (await again.reply())[0] == 220
    await ehlo(again)
    # The budget is spent: even the right password gets a temporary refusal, unchecked.
    code, text = await again.command("AUTH PLAIN " + plain_auth(ALICE, PASSWORD))
    assert (code, text.split()[1]) == (454, "4.7.0")
    await again.aclose()


async def test_implicit_tls_submissions(
    tls_config: ConfigFactory, start_server: Starter, tls_files: TLSFiles
) -> None:
    state = await start_server(tls_config())
    add_users(state.config, ALICE)
    tcp = await trio.open_tcp_stream("127.0.0.1", port_of(state, "submissions"))
    tls = trio.SSLStream(tcp, tls_files.client_context(), server_hostname="mx.example.test")
    client = LineClient(tls)
    assert (await client.reply())[0] == 220
    extensions = await ehlo(client)
    assert "AUTH PLAIN LOGIN" in extensions and "STARTTLS" not in extensions
    assert (await client.command(f"MAIL FROM:<{ALICE}>"))[0] == 530
    assert (await client.command("AUTH PLAIN " + plain_auth(ALICE, PASSWORD)))[0] == 235
    assert (await client.command(f"MAIL FROM:<{ALICE}>"))[0] == 250
    assert (await client.command(f"RCPT TO:<{ALICE}>"))[0] == 250
    assert (await client.command("DATA"))[0] == 354
    code, text = await client.command(f"From: {ALICE}\r\n\r\nhello\r\n.")
    assert code == 250, text
    await client.aclose()
    received = b"".join(p.read_bytes() for p in stored_files(state))
    assert b"using TLSv1." in received and b"with ESMTPSA" in received


async def test_plaintext_client_on_implicit_tls_port_gets_nothing(
    tls_config: ConfigFactory, start_server: Starter
) -> None:
    state = await start_server(tls_config())
    client = await LineClient.connect(port_of(state, "submissions"))
    await client.send(b"EHLO plain\r\n")
    with trio.fail_after(10):
        assert await client.stream.receive_some(100) == b""  # handshake fails, no SMTP spoken
    await client.aclose()


async def test_swaks_sends_with_auth_over_starttls(
    tls_config: ConfigFactory, start_server: Starter, caplog: pytest.LogCaptureFixture
) -> None:
    swaks = shutil.which("swaks")
    if swaks is None:
        pytest.skip("swaks is not installed (.ci/run installs it)")
    caplog.set_level(logging.INFO, logger="tinymail")
    state = await start_server(tls_config())
    add_users(state.config, ALICE)
    command = [
        swaks,
        "--server", "127.0.0.1",
        "--port", str(port_of(state, "submission")),
        "--tls", "--auth", "PLAIN",
        "--auth-user", ALICE, "--auth-password", PASSWORD,
        "--from", ALICE, "--to", "friend@example.net",
        "--header", f"From: {ALICE}",
    ]  # fmt: skip
    done = await trio.run_process(command, capture_stdout=True, check=False)
    out = done.stdout.decode()
    assert done.returncode == 0, out
    # "~" marks swaks lines sent inside TLS: AUTH and the message went encrypted.
    assert "<~  235 2.7.0" in out and "<~  250 2.0.0 Ok: queued as" in out
    assert f"auth ok: service=submission client=[127.0.0.1] user=<{ALICE}>" in caplog.text
    assert PASSWORD not in caplog.text  # research 2.5 A8: never logged
