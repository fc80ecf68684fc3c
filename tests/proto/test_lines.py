"""The CRLF line buffer."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinymail.proto.lines import LINE_TOO_LONG, LineBuffer


def drain(buffer: LineBuffer) -> list[object]:
    out: list[object] = []
    for _ in range(10_000):
        item = buffer.next_line()
        if item is None:
            return out
        out.append(item)
    raise AssertionError("unbounded")


def test_only_crlf_ends_a_line() -> None:
    buffer = LineBuffer(100)
    buffer.feed(b"a\nb\rc\r\nd")
    assert drain(buffer) == [b"a\nb\rc"]
    buffer.feed(b"\r")
    assert drain(buffer) == []
    buffer.feed(b"\n")
    assert drain(buffer) == [b"d"]
    assert len(buffer) == 0


def test_limit_counts_crlf() -> None:
    buffer = LineBuffer(10)
    buffer.feed(b"12345678\r\n123456789\r\nok\r\n")
    assert drain(buffer) == [b"12345678", LINE_TOO_LONG, b"ok"]


def test_overlong_line_reported_once_and_memory_bounded() -> None:
    buffer = LineBuffer(512)
    results: list[object] = []
    for _ in range(1000):
        buffer.feed(b"x" * 1000)
        results += drain(buffer)
        assert len(buffer) <= 1
    buffer.feed(b"xx\r")
    results += drain(buffer)
    buffer.feed(b"\nnext\r\n")
    results += drain(buffer)
    assert results == [LINE_TOO_LONG, b"next"]


def test_take_buffered_hands_over_everything() -> None:
    buffer = LineBuffer(100)
    buffer.feed(b"one\r\ntwo\r\nrest")
    assert buffer.next_line() == b"one"
    assert buffer.take_buffered() == b"two\r\nrest"
    assert buffer.next_line() is None


def test_rejects_silly_limit() -> None:
    with pytest.raises(ValueError):
        LineBuffer(2)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=20))
def test_split_invariance(chunks: list[bytes]) -> None:
    whole = LineBuffer(32)
    whole.feed(b"".join(chunks))
    expected = drain(whole)
    pieces = LineBuffer(32)
    got: list[object] = []
    for chunk in chunks:
        for i in range(len(chunk)):
            pieces.feed(chunk[i : i + 1])
            got += drain(pieces)
    assert got == expected
