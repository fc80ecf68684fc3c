"""Outbound PIPELINING and connection reuse against scripted loopback servers.

Each server is a script of what it reads and writes, so the tests can see what the client
sends before it has any reply (one flight for MAIL, RCPT and DATA) and what it does when a
pooled connection has died.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from tests.helpers.sink import Sink
from tinymail.delivery.courier import Status
from tinymail.delivery.remote import MessageSource, RemoteCourier, RemoteSettings
from tinymail.delivery.router import Route, RouteKind
from tinymail.net.smtp_client import Timeouts
from tinymail.testing import FakeResolver

HOST = "127.0.0.6"
FAST = Timeouts(connect=2, greeting=2, command=2, mail=2, rcpt=2, data_init=2, data_block=2)
BODY = b"Subject: hi\n\nbody\n"
EHLO_REPLY = b"250-fake.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n"


class Lines:
    """The server side of one connection: CRLF lines in, raw bytes out."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def line(self) -> str | None:
        """The next line, None at end of input."""
        while b"\r\n" not in self.buffer:
            data = await self.stream.receive_some(4096)
            if not data:
                return None
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line.decode()

    async def data(self) -> list[str]:
        lines = []
        while (line := await self.line()) not in (".", None):
            assert line is not None
            lines.append(line)
        return lines

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)


Script = Callable[[Lines, int], Awaitable[None]]


async def serve_script(
    port: int, script: Script, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Accept connections on HOST:port; the n-th (from 0) runs script(lines, n)."""
    [listener] = await trio.open_tcp_listeners(port, host=HOST)
    task_status.started()
    count = 0
    async with listener, trio.open_nursery() as nursery:
        while True:
            stream = await listener.accept()

            async def run(stream: trio.SocketStream, n: int) -> None:
                async with stream:
                    conn = Lines(stream)
                    await conn.send(b"220 fake.test ESMTP\r\n")
                    assert (await conn.line() or "").startswith("EHLO ")
                    await conn.send(EHLO_REPLY)
                    await script(conn, n)

            nursery.start_soon(run, stream, count)
            count += 1


def courier() -> RemoteCourier:
    return RemoteCourier(RemoteSettings(hostname="client.test", timeouts=FAST), FakeResolver())


def route(port: int) -> Route:
    return Route(RouteKind.TRANSPORT_HOST, HOST, port)


async def test_mail_rcpt_and_data_go_out_before_any_reply(nursery: trio.Nursery) -> None:
    seen: list[str] = []

    async def script(conn: Lines, n: int) -> None:
        # Nothing is answered until DATA has arrived: a client that waits for the MAIL reply
        # before sending DATA would stall here and time out.
        while not seen or seen[-1] != "DATA":
            seen.append(await conn.line() or "")
        await conn.send(b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 unknown\r\n354 go\r\n")
        seen.extend(await conn.data())
        await conn.send(b"250 2.0.0 queued as X\r\n")
        assert await conn.line() == "QUIT"
        await conn.send(b"221 bye\r\n")

    await nursery.start(serve_script, 2601, script)
    c = courier()
    with trio.fail_after(10):
        outcomes = await c.deliver(
            route(2601),
            "a@x.test",
            ["y@r.test", "z@r.test"],
            MessageSource("", len(BODY), data=BODY),
        )
        await c.aclose()
    assert outcomes["y@r.test"].status is Status.OK
    assert outcomes["y@r.test"].reply == "250 2.0.0 queued as X"
    assert (outcomes["z@r.test"].status, outcomes["z@r.test"].dsn) == (Status.PERM, "5.1.1")
    assert seen == [
        "MAIL FROM:<a@x.test>",
        "RCPT TO:<y@r.test>",
        "RCPT TO:<z@r.test>",
        "DATA",
        "Subject: hi",
        "",
        "body",
    ]


async def test_354_after_every_rcpt_failed_ends_the_data_at_once(nursery: trio.Nursery) -> None:
    """RFC 2920 3.1: a server may accept the pipelined DATA when no recipient was accepted; the
    client then sends only the final dot, and the connection stays good for the next message."""
    seen: list[str] = []

    async def script(conn: Lines, n: int) -> None:
        for _ in range(3):
            seen.append(await conn.line() or "")
        await conn.send(b"250 ok\r\n550 5.1.1 unknown\r\n354 go\r\n")
        seen.append(await conn.line() or "")
        await conn.send(b"554 5.5.1 no valid recipients\r\n")
        while (line := await conn.line()) not in ("QUIT", None):
            assert line is not None
            seen.append(line)
            await conn.send(b"250 ok\r\n")
        await conn.send(b"221 bye\r\n")

    await nursery.start(serve_script, 2602, script)
    c = courier()
    with trio.fail_after(10):
        outcomes = await c.deliver(
            route(2602), "a@x.test", ["z@r.test"], MessageSource("", len(BODY), data=BODY)
        )
        await c.aclose()
    assert (outcomes["z@r.test"].status, outcomes["z@r.test"].dsn) == (Status.PERM, "5.1.1")
    assert seen == ["MAIL FROM:<a@x.test>", "RCPT TO:<z@r.test>", "DATA", ".", "RSET"]


async def test_a_pooled_connection_found_dead_is_replaced_in_the_same_attempt(
    nursery: trio.Nursery,
) -> None:
    delivered: list[int] = []

    async def script(conn: Lines, n: int) -> None:
        # Every connection takes one message, then the server drops it without a word, as
        # one that timed out an idle client would.
        for _ in range(3):
            await conn.line()
        await conn.send(b"250 ok\r\n250 ok\r\n354 go\r\n")
        await conn.data()
        await conn.send(b"250 2.0.0 queued\r\n")
        delivered.append(n)

    await nursery.start(serve_script, 2603, script)
    c = courier()
    with trio.fail_after(10):
        for i in range(2):
            outcomes = await c.deliver(
                route(2603), "a@x.test", [f"y{i}@r.test"], MessageSource("", len(BODY), data=BODY)
            )
            assert outcomes[f"y{i}@r.test"].status is Status.OK
            await trio.sleep(0.05)  # let the close reach the client's socket
        await c.aclose()
    assert delivered == [0, 1]
    assert c.connections_opened == 2


async def test_a_pooled_connection_closed_with_421_is_replaced(nursery: trio.Nursery) -> None:
    async def script(conn: Lines, n: int) -> None:
        # One message, then the idle-timeout 421 a server sends before it closes.
        for _ in range(3):
            await conn.line()
        await conn.send(b"250 ok\r\n250 ok\r\n354 go\r\n")
        await conn.data()
        await conn.send(b"250 2.0.0 queued\r\n421 4.4.2 fake.test idle timeout\r\n")

    await nursery.start(serve_script, 2606, script)
    c = courier()
    with trio.fail_after(10):
        for i in range(2):
            outcomes = await c.deliver(
                route(2606), "a@x.test", [f"y{i}@r.test"], MessageSource("", len(BODY), data=BODY)
            )
            assert outcomes[f"y{i}@r.test"].status is Status.OK
        await c.aclose()
    assert c.connections_opened == 2


async def test_a_421_to_mail_on_a_fresh_connection_defers(nursery: trio.Nursery) -> None:
    async def script(conn: Lines, n: int) -> None:
        for _ in range(3):
            await conn.line()
        await conn.send(b"421 4.3.2 shutting down\r\n")

    await nursery.start(serve_script, 2607, script)
    c = courier()
    with trio.fail_after(10):
        outcomes = await c.deliver(
            route(2607), "a@x.test", ["y@r.test"], MessageSource("", len(BODY), data=BODY)
        )
    assert (outcomes["y@r.test"].status, outcomes["y@r.test"].dsn) == (Status.TEMP, "4.3.2")
    assert c.connections_opened == 1


async def test_a_connection_lost_after_a_reply_defers(nursery: trio.Nursery) -> None:
    """Once the server has answered, a lost connection is no longer "stale": deferred."""

    async def script(conn: Lines, n: int) -> None:
        for _ in range(3):
            await conn.line()
        await conn.send(b"250 ok\r\n")  # then gone, with RCPT and DATA unanswered

    await nursery.start(serve_script, 2604, script)
    c = courier()
    with trio.fail_after(10):
        outcomes = await c.deliver(
            route(2604), "a@x.test", ["y@r.test"], MessageSource("", len(BODY), data=BODY)
        )
    assert (outcomes["y@r.test"].status, outcomes["y@r.test"].dsn) == (Status.TEMP, "4.4.2")
    assert c.connections_opened == 1


async def test_content_in_memory_is_sent_without_opening_the_file(tmp_path: Path) -> None:
    body = b"Subject: x\n\n.dot\nline\r\nbare\rcr\nno final newline"
    missing = str(tmp_path / "does-not-exist")
    with Sink(HOST, 2605) as sink:
        c = courier()
        outcomes = await c.deliver(
            route(2605), "a@x.test", ["y@r.test"], MessageSource(missing, len(body), data=body)
        )
        await c.aclose()
    assert outcomes["y@r.test"].status is Status.OK
    [got] = sink.messages
    assert got.content == b"Subject: x\r\n\r\n.dot\r\nline\r\nbare cr\r\nno final newline\r\n"
