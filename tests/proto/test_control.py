"""The control-socket protocol core: requests, limits, replies."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tinymail.proto import control


def parse(data: bytes, *, chunk: int = 0, max_size: int = 1000, max_rcpt: int = 3) -> object:
    parser = control.RequestParser(max_size=max_size, max_recipients=max_rcpt)
    pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)] if chunk else [data]
    event: object = control.NEED_DATA
    for piece in [*pieces, b""]:
        parser.receive_data(piece)
        event = parser.next_event()
        if not isinstance(event, control.NeedData):
            return event
    return event


def test_nudge_and_flush() -> None:
    assert parse(control.nudge("4C2K9QX7BM1TZ8H")) == control.Nudge("4C2K9QX7BM1TZ8H")
    assert parse(control.flush()) == control.Flush(None)
    assert parse(control.flush("ABC")) == control.Flush("ABC")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.from_regex(r"[a-z0-9.]{1,20}@[a-z]{1,10}\.test", fullmatch=True), min_size=1, max_size=3
    ),
    st.binary(max_size=1000),
    st.integers(min_value=1, max_value=64),
)
def test_submit_round_trips_in_any_chunking(rcpts: list[str], content: bytes, chunk: int) -> None:
    event = parse(control.submit(tuple(rcpts), content), chunk=chunk)
    assert event == control.Submit(tuple(rcpts), content)


def test_limits_and_garbage_are_refused() -> None:
    too_big = parse(control.submit(("a@x.test",), b"x" * 1001))
    assert isinstance(too_big, control.Refused) and too_big.status == control.EX_DATAERR
    many = parse(control.submit(tuple(f"a{i}@x.test" for i in range(4)), b"x"))
    assert isinstance(many, control.Refused) and "recipients" in many.text
    for bad in [
        b"NUDGE ../../etc\n",
        b"HELLO\n",
        b"SUBMIT\nDATA 1\nx",
        b"SUBMIT\nRCPT a b\n",
        b"x" * 5000,
        b"NUDGE \xff\n",
        b"SUBMIT\nRCPT a@x.test\n",
    ]:
        event = parse(bad)
        assert isinstance(event, control.Refused), bad


def test_a_decided_request_stays_decided() -> None:
    parser = control.RequestParser(max_size=10, max_recipients=1)
    parser.receive_data(b"FLUSH\nNUDGE A\n")
    assert parser.next_event() == control.Flush(None)
    parser.receive_data(b"more")
    assert parser.next_event() == control.Flush(None)


def test_replies_round_trip_and_cannot_add_lines() -> None:
    line = control.encode_reply(control.Reply(False, 75, "disk\nfull\r\nOK injected"))
    assert line.count(b"\n") == 1
    assert control.parse_reply(line) == control.Reply(False, 75, "disk full OK injected")
    assert control.parse_reply(control.encode_reply(control.Reply(True, 0, "QID1"))) == (
        control.Reply(True, 0, "QID1")
    )
    assert control.parse_reply(b"what\n").status == control.EX_TEMPFAIL
