from hypothesis import given, settings
from hypothesis import strategies as st

from tinymail.proto.imap.reader import (
    NEED_DATA,
    CommandReader,
    ContinuationNeeded,
    Frame,
    Limits,
    RawLine,
    Refused,
)


def drain(reader: CommandReader) -> list[object]:
    out: list[object] = []
    for _ in range(1000):
        ev = reader.next_event()
        if ev is NEED_DATA:
            return out
        out.append(ev)
    raise AssertionError("reader did not settle")


def test_simple_line() -> None:
    r = CommandReader()
    r.receive(b"a1 NOOP\r\nb")
    assert drain(r) == [Frame((b"a1 NOOP",), ())]
    r.receive(b"2 CAPABILITY\r\n")
    assert drain(r) == [Frame((b"b2 CAPABILITY",), ())]


def test_sync_literal_asks_for_continuation() -> None:
    r = CommandReader()
    r.receive(b"a LOGIN {3}\r\n")
    assert drain(r) == [ContinuationNeeded(3)]
    r.receive(b"bob {2}\r\n")
    assert drain(r) == [ContinuationNeeded(2)]
    r.receive(b"pw\r\n")
    assert drain(r) == [Frame((b"a LOGIN {3}", b" {2}", b""), (b"bob", b"pw"))]


def test_nonsync_literal_needs_no_continuation() -> None:
    r = CommandReader()
    r.receive(b"a LOGIN {3+}\r\nbob pw\r\n")
    assert drain(r) == [Frame((b"a LOGIN {3+}", b" pw"), (b"bob",))]


def test_huge_sync_literal_refused_without_plus() -> None:
    # research I1: no "+" and nothing buffered for {4294967295}
    r = CommandReader()
    r.receive(b"a APPEND INBOX {4294967295}\r\nb NOOP\r\n")
    assert drain(r) == [
        Refused("a", "Literal too big", fatal=False, toobig=True),
        Frame((b"b NOOP",), ()),
    ]


def test_huge_nonsync_literal_is_fatal() -> None:
    r = CommandReader()
    r.receive(b"a APPEND INBOX {4294967295+}\r\n")
    (ev,) = drain(r)
    assert isinstance(ev, Refused) and ev.fatal


def test_literal_limit_depends_on_command() -> None:
    r = CommandReader(limits=Limits(literal=10, append=100))
    r.receive(b"a LOGIN {11}\r\n")
    assert isinstance(drain(r)[0], Refused)
    r.receive(b"b APPEND INBOX {50}\r\n")
    assert drain(r) == [ContinuationNeeded(50)]
    r.receive(b"x" * 50 + b"\r\n")
    (frame,) = drain(r)
    assert isinstance(frame, Frame) and frame.literals == (b"x" * 50,)


def test_long_line_refused_and_skipped() -> None:
    r = CommandReader(limits=Limits(line=100))
    r.receive(b"a " + b"x" * 500)
    assert drain(r) == []
    r.receive(b"yyy\r\nb NOOP\r\n")
    events = drain(r)
    assert isinstance(events[0], Refused) and not events[0].fatal
    assert events[1] == Frame((b"b NOOP",), ())
    assert r.buffered() == 0


def test_raw_line_mode() -> None:
    r = CommandReader()
    r.receive(b"DONE\r\n")
    assert r.next_event(raw=True) == RawLine(b"DONE")


pieces_st = st.lists(
    st.sampled_from(
        [b"a NOOP\r\n", b"b LOGIN {3}\r\n", b"xyz", b" {2+}\r\n", b"\r\n", b" ", b"{99}\r\n", b"q"]
    ),
    max_size=20,
)


@settings(max_examples=200, deadline=None)
@given(pieces_st, st.lists(st.integers(1, 40), max_size=10))
def test_chunking_does_not_matter(parts: list[bytes], cuts: list[int]) -> None:
    data = b"".join(parts)
    whole = CommandReader(limits=Limits(line=1000, literal=50))
    whole.receive(data)
    want = drain(whole)
    pieces = CommandReader(limits=Limits(line=1000, literal=50))
    got: list[object] = []
    pos = 0
    for cut in cuts:
        pieces.receive(data[pos : pos + cut])
        pos += cut
        got += drain(pieces)
    pieces.receive(data[pos:])
    got += drain(pieces)
    assert got == want
