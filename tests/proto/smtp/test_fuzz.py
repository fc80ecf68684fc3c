"""Property tests: arbitrary input never makes the core raise, and every reply is well formed."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinymail.proto import smtp

from .helpers import Driver, session, well_formed

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

WORDS = [
    b"EHLO x",
    b"HELO x",
    b"MAIL FROM:<a@example.net>",
    b"RCPT TO:<b@example.test>",
    b"RCPT TO:<x@example.net>",
    b"DATA",
    b"RSET",
    b"NOOP",
    b"STARTTLS",
    b"AUTH PLAIN",
    b"AUTH LOGIN",
    b"AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=",
    b"*",
    b".",
    b"..",
    b"QUIT",
    b"\r\n",
    b"\n",
    b"\r",
    b"\x00",
    b"\xff",
    b" SIZE=99999999999999999999",
]

CLIENT_TURNS = [
    b"EHLO client.example.net\r\n",
    b"AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=\r\n",
    b"MAIL FROM:<a@example.net> SIZE=20\r\nRCPT TO:<b@example.test>\r\n"
    b"RCPT TO:<x@example.net>\r\nDATA\r\n",
    b"Subject: t\r\n\r\n..dot\r\nline\r\n.\r\n",
    b"MAIL FROM:<>\r\nRCPT TO:<postmaster>\r\nDATA\r\n",
    b".\r\n",
    b"VRFY x\r\nNOOP\r\nRSET\r\nQUIT\r\n",
]


def run(chunks: list[bytes]) -> tuple[bytes, Driver]:
    driver = session(tls_available=True, auth_mechanisms=("PLAIN", "LOGIN"))
    out = driver.conn.greeting()
    for chunk in chunks:
        out += driver.feed(chunk)
    out += driver.feed(b"")
    assert driver.conn.next_event() is smtp.CLOSED
    return out, driver


@SETTINGS
@given(st.lists(st.binary(max_size=300), max_size=12))
def test_arbitrary_bytes(chunks: list[bytes]) -> None:
    out, _ = run(chunks)
    assert well_formed(out), out


@SETTINGS
@given(st.lists(st.lists(st.sampled_from(WORDS), max_size=8).map(b"".join), max_size=15))
def test_command_soup(chunks: list[bytes]) -> None:
    out, _ = run(chunks)
    assert well_formed(out), out


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges) if b > a]


@SETTINGS
@given(st.lists(st.lists(st.integers(min_value=0), max_size=6), min_size=len(CLIENT_TURNS)))
def test_random_splits_of_a_valid_session_change_nothing(cuts: list[list[int]]) -> None:
    expected, reference = run(CLIENT_TURNS)
    pieces = [split_at(turn, c) for turn, c in zip(CLIENT_TURNS, cuts, strict=False)]
    driver = session(tls_available=True, auth_mechanisms=("PLAIN", "LOGIN"))
    out = driver.conn.greeting()
    for turn in pieces:
        turn_out = b""
        for piece in turn:
            turn_out += driver.feed(piece)
        out += turn_out
    out += driver.feed(b"")
    assert out == expected
    assert driver.messages == reference.messages == [b"Subject: t\n\n.dot\nline\n", b""]
