"""Run the dialogues in tests/transcripts/smtp/ against the server core."""

from __future__ import annotations

import pytest

from tests.transcripts import Exchange, Transcript, load, mismatch, parse, split_replies

from .helpers import session

TRANSCRIPTS = load("smtp")


def test_transcripts_exist() -> None:
    assert len(TRANSCRIPTS) >= 6
    assert all(t.exchanges and t.exchanges[0].expected[:1] == ("220",) for t in TRANSCRIPTS)


@pytest.mark.parametrize("transcript", TRANSCRIPTS, ids=lambda t: t.name)
def test_transcript_against_core(transcript: Transcript) -> None:
    mechanisms = ("PLAIN", "LOGIN") if "auth" in transcript.needs else ()
    driver = session(auth_mechanisms=mechanisms)
    for index, exchange in enumerate(transcript.exchanges):
        out = driver.conn.greeting() if index == 0 else b""
        out += driver.feed(exchange.sent) if exchange.sent else b""
        problem = mismatch(exchange, split_replies(out))
        assert problem is None, f"{transcript.name}: {problem}"
        assert driver.conn.closed == exchange.closed, f"{transcript.name}: {exchange}"


def test_parse_groups_pipelined_lines_and_needs() -> None:
    transcript = parse("# needs: auth tls\nS: 220\nC: A\nC:\nS: 250\nS: 251\nS: EOF\n", "t")
    assert transcript.needs == frozenset({"auth", "tls"})
    assert transcript.exchanges == (
        Exchange(b"", ("220",)),
        Exchange(b"A\r\n\r\n", ("250", "251"), closed=True),
    )
    with pytest.raises(ValueError, match="t:1"):
        parse("X: what\n", "t")


def test_mismatch_reports_differences() -> None:
    replies = split_replies(b"250-a\r\n250 b\r\n354 go\r\n")
    assert replies == [["250-a", "250 b"], ["354 go"]]
    assert mismatch(Exchange(b"", ("250", "354")), replies) is None
    assert mismatch(Exchange(b"", ("250", "250")), replies) is not None
    assert mismatch(Exchange(b"", ("250",)), replies) is not None
