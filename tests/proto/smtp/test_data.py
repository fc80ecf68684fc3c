"""DATA framing: dot-unstuffing, line ends, smuggling variants, size and line limits."""

from __future__ import annotations

import pytest

from tinymail.proto import smtp
from tinymail.proto.smtp.dotstuff import DataProblem, DotDecoder

from .helpers import Driver, codes, ready, reply_lines

SMUGGLING_ENDINGS = [
    b"\n.\n",
    b"\n.\r",
    b"\r.\n",
    b"\r.\r",
    b"\n.\r\n",
    b"\r.\r\n",
    b"\r\n\x00.\r\n",
]
SMUGGLED = (
    b"mail FROM:<s@example.net>\r\nrcpt TO:<v@example.test>\r\ndata\r\n"
    b"From: s@example.net\r\n\r\nsmuggled\r\n.\r\n"
)


def in_data(limits: smtp.Limits | None = None) -> Driver:
    driver = ready(limits)
    driver.say("MAIL FROM:<a@example.net>", "RCPT TO:<b@example.test>")
    assert driver.say("DATA")[0].startswith("354")
    return driver


def test_dot_unstuffing_is_byte_exact() -> None:
    driver = in_data()
    wire = b"..\r\n...\r\n..x\r\n.x\r\nx.\r\n\r\n..\r\n.\r\n"
    assert codes(reply_lines(driver.feed(wire))) == ["250 2.0.0"]
    assert driver.messages == [b".\n..\n.x\nx\nx.\n\n.\n"]


def test_first_line_dot_ends_an_empty_message() -> None:
    driver = in_data()
    assert codes(reply_lines(driver.feed(b".\r\n"))) == ["250 2.0.0"]
    assert driver.messages == [b""]


@pytest.mark.parametrize("step", [1, 2, 3, 5, 64])
def test_content_survives_any_split(step: int) -> None:
    driver = in_data()
    wire = b"Subject: x\r\n\r\n..dot\r\nlong line " + b"y" * 300 + b"\r\n.\r\nNOOP\r\n"
    out = b"".join(driver.feed(wire[i : i + step]) for i in range(0, len(wire), step))
    assert codes(reply_lines(out)) == ["250 2.0.0", "250 2.0.0"]
    assert driver.messages == [b"Subject: x\n\n.dot\nlong line " + b"y" * 300 + b"\n"]


def test_bare_lf_is_normalised() -> None:
    driver = in_data()
    assert codes(reply_lines(driver.feed(b"line1\nline2\r\n.\r\n"))) == ["250 2.0.0"]
    assert driver.messages == [b"line1\nline2\n"]


@pytest.mark.parametrize("ending", SMUGGLING_ENDINGS, ids=repr)
@pytest.mark.parametrize("split", [False, True])
def test_smuggling_variants_give_exactly_one_transaction(ending: bytes, split: bool) -> None:
    driver = in_data()
    wire = b"From: a@example.net\r\n\r\nbody" + ending + SMUGGLED
    if split:
        out = b"".join(driver.feed(wire[i : i + 1]) for i in range(len(wire)))
    else:
        out = driver.feed(wire)
    lines = reply_lines(out)
    assert len(lines) == 1, lines  # one reply for the one message, none for smuggled commands
    assert sum(isinstance(e, smtp.MailFrom) for e in driver.events) == 1
    assert sum(isinstance(e, smtp.DataEnd) for e in driver.events) <= 1
    if b"\r" in ending.replace(b"\r\n", b""):
        assert lines == ["550 5.5.2 Message refused: bare <CR> received"]
        assert driver.messages == [] and driver.aborted == [DataProblem.BARE_CR.value]
    else:
        assert codes(lines) == ["250 2.0.0"]
        (message,) = driver.messages
        assert b"mail FROM:<s@example.net>\n" in message  # the "commands" stayed content
    assert codes(driver.say("NOOP")) == ["250 2.0.0"]  # the session is still in sync


def test_message_over_size_limit_is_refused_after_the_terminator() -> None:
    driver = in_data(smtp.Limits(max_message_size=1000))
    out = b"".join(driver.feed(b"x" * 99 + b"\r\n") for _ in range(50))
    assert out == b""  # swallowed silently until the real end
    assert driver.aborted == [DataProblem.TOO_BIG.value]
    assert codes(reply_lines(driver.feed(b".\r\n"))) == ["552 5.3.4"]
    assert driver.messages == []
    assert driver.conn.mail_from is None
    chunks = [e for e in driver.events if isinstance(e, smtp.DataChunk)]
    assert sum(len(c.data) for c in chunks) <= 1000


def test_message_at_size_limit_is_accepted() -> None:
    driver = in_data(smtp.Limits(max_message_size=12))
    assert codes(reply_lines(driver.feed(b"0123456789\r\n.\r\n"))) == ["250 2.0.0"]


def test_long_data_line_streams_and_is_refused() -> None:
    driver = in_data(smtp.Limits(max_data_line=1000))
    assert driver.feed(b"z" * 999) == b""
    assert driver.aborted == []
    assert driver.feed(b"zz") == b""
    assert driver.aborted == [DataProblem.LINE_TOO_LONG.value]
    assert reply_lines(driver.feed(b"\r\n.\r\n")) == [
        "552 5.5.2 Message refused: a line is too long"
    ]


def test_megabyte_line_without_lf_is_streamed_in_bounded_memory() -> None:
    driver = in_data(smtp.Limits(max_data_line=2 * 1024 * 1024))
    decoded = 0
    for _ in range(256):
        driver.feed(b"a" * 4096)
        assert len(driver.conn._lines) == 0  # nothing accumulates in the core
        chunks = [e for e in driver.events if isinstance(e, smtp.DataChunk)]
        decoded = sum(len(c.data) for c in chunks)
    assert decoded == 1024 * 1024
    assert codes(reply_lines(driver.feed(b"\r\n.\r\n"))) == ["250 2.0.0"]


def test_eof_during_data_aborts() -> None:
    driver = in_data()
    driver.feed(b"partial message\r\n")
    assert driver.feed(b"") == b""
    assert driver.aborted == ["connection closed during DATA"]
    assert driver.conn.next_event() is smtp.CLOSED


def test_decoder_holds_at_most_two_bytes() -> None:
    decoder = DotDecoder(max_size=10**6, max_line=10**6)
    assert decoder.feed(b"ab\r") == b"ab"
    assert decoder.feed(b"\n.") == b"\n"
    assert decoder.feed(b"\r") == b""
    assert decoder.feed(b"\n") == b""
    assert decoder.done and decoder.leftover == b"" and decoder.size == 4
    with pytest.raises(ValueError):
        decoder.feed(b"more")
