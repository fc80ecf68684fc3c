"""The SMTP dialogues of tests/transcripts/smtp/, run against a live `tinymail serve`."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from tests.conftest import add_user, port_of
from tests.transcripts import Transcript, load, mismatch, split_replies
from tinymail.net.context import ServerState

TRANSCRIPTS = load("smtp")


async def read_replies(stream: trio.SocketStream, count: int, closed: bool) -> bytes:
    """Read until `count` complete replies arrived (and EOF when `closed`), bounded by time."""
    data = b""
    with trio.fail_after(10):
        while len(split_replies(data)) < count or closed:
            chunk = await stream.receive_some(65536)
            if not chunk:
                break
            data += chunk
    return data


@pytest.mark.parametrize("transcript", TRANSCRIPTS, ids=lambda t: t.name)
async def test_transcript_against_live_server(
    transcript: Transcript,
    server: ServerState,
    config_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if "auth" in transcript.needs:
        add_user(config_path, "alice@example.test", "secret", monkeypatch)
    stream = await trio.open_tcp_stream("127.0.0.1", port_of(server, "smtp"))
    async with stream:
        for exchange in transcript.exchanges:
            if exchange.sent:
                await stream.send_all(exchange.sent)
            out = await read_replies(stream, len(exchange.expected), exchange.closed)
            problem = mismatch(exchange, split_replies(out))
            assert problem is None, f"{transcript.name}: {problem}"
