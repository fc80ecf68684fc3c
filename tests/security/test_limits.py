"""Slowloris and connection caps over real sockets: a slot cannot be held by trickling bytes."""

from __future__ import annotations

import trio

from tests.conftest import port_of
from tests.security.conftest import ConfigFactory, LineClient, Starter


async def trickle(client: LineClient, data: bytes, every: float, limit: float) -> float:
    """Send `data` one byte per `every` seconds until the server closes; the time it took."""
    started = trio.current_time()
    with trio.fail_after(limit):
        for byte in data:
            try:
                await client.send(bytes([byte]))
            except trio.BrokenResourceError:
                break
            with trio.move_on_after(every):
                if not await client.stream.receive_some(4096):
                    break
    return trio.current_time() - started


async def test_command_trickle_is_cut_at_the_request_deadline(
    tls_config: ConfigFactory, start_server: Starter
) -> None:
    state = await start_server(tls_config(smtp={"command_timeout": '"2s"'}))
    client = await LineClient.connect(port_of(state, "smtp"))
    assert (await client.reply())[0] == 220
    # Each byte arrives well inside the 2 s timeout, yet the command never completes:
    # a per-read timeout would wait forever, the per-request deadline ends it.
    took = await trickle(client, b"EHLO " + b"x" * 200, every=0.3, limit=15)
    assert 1.5 <= took < 6
    await client.aclose()


async def test_data_below_the_minimum_rate_is_cut(
    tls_config: ConfigFactory, start_server: Starter
) -> None:
    path = tls_config(
        smtp={"data_timeout": '"2s"'},
        limits={"min_data_rate": "1000"},
        relay={"trusted_networks": '["127.0.0.0/8"]'},
    )
    state = await start_server(path)
    client = await LineClient.connect(port_of(state, "smtp"))
    assert (await client.reply())[0] == 220
    assert (await client.command("EHLO slow.example"))[0] == 250
    assert (await client.command("MAIL FROM:<a@example.net>"))[0] == 250
    assert (await client.command("RCPT TO:<root@localhost>"))[0] == 250
    assert (await client.command("DATA"))[0] == 354
    # ~30 bytes/s: far below 1000 B/s, so received bytes barely extend the 2 s deadline.
    took = await trickle(client, b"Subject: slow\r\n\r\n" + b"y" * 500, every=0.03, limit=15)
    assert 1.5 <= took < 6
    await client.aclose()


async def test_data_at_a_fair_rate_outlives_the_timeout(
    tls_config: ConfigFactory, start_server: Starter
) -> None:
    path = tls_config(
        smtp={"data_timeout": '"1s"'},
        limits={"min_data_rate": "100"},
        relay={"trusted_networks": '["127.0.0.0/8"]'},
    )
    state = await start_server(path)
    client = await LineClient.connect(port_of(state, "smtp"))
    assert (await client.reply())[0] == 220
    assert (await client.command("EHLO fair.example"))[0] == 250
    assert (await client.command("MAIL FROM:<a@example.net>"))[0] == 250
    assert (await client.command("RCPT TO:<root@localhost>"))[0] == 250
    assert (await client.command("DATA"))[0] == 354
    started = trio.current_time()
    for _ in range(10):  # 200 bytes every 0.2 s = 1000 B/s > 100 B/s, for 2 s
        await client.send(b"z" * 198 + b"\r\n")
        await trio.sleep(0.2)
    await client.send(b".\r\n")
    code, text = await client.reply()
    assert code == 250, text
    assert trio.current_time() - started > 1.5  # longer than data_timeout, still served
    await client.aclose()


async def test_connections_per_client_and_total_are_capped(
    tls_config: ConfigFactory, start_server: Starter
) -> None:
    state = await start_server(tls_config(limits={"connections_per_ip": "2", "connections": "3"}))
    port = port_of(state, "smtp")
    first = [await LineClient.connect(port) for _ in range(2)]
    for client in first:
        assert (await client.reply())[0] == 220
    extra = await LineClient.connect(port)
    code, text = await extra.reply()
    assert (code, text.split()[1]) == (421, "4.7.0")
    assert await extra.line() == b""  # and closed
    other = await LineClient.connect(port, local="127.0.0.3")  # another client is welcome
    assert (await other.reply())[0] == 220
    fourth = await LineClient.connect(port, local="127.0.0.4")  # but the server is full
    assert (await fourth.reply())[0] == 421
    await first[0].command("QUIT")
    await first[0].aclose()
    with trio.fail_after(5):
        while True:  # the slot comes back once the server has seen the QUIT
            again = await LineClient.connect(port)
            code, _ = await again.reply()
            await again.aclose()
            if code == 220:
                break
            await trio.sleep(0.05)
    for client in (first[1], extra, other, fourth):
        await client.aclose()
