import pytest

from tinymail.proto.imap.fetch import (
    BodyItem,
    FetchItem,
    FetchSyntaxError,
    MessageData,
    build_response,
    format_date,
    needs_message,
    parse_items,
    sets_seen,
)
from tinymail.proto.imap.fetchdata import Section, envelope
from tinymail.proto.imap.parse import Atom, PList

RAW = b"Subject: hi\nFrom: a@b\n\nline one\nline two\n"


def items(*words: str) -> list[FetchItem]:
    return parse_items(PList(tuple(Atom(w) for w in words)))


def test_macros_and_simple() -> None:
    assert parse_items(Atom("fast")) == ["FLAGS", "INTERNALDATE", "RFC822.SIZE"]
    assert parse_items(Atom("ALL"))[-1] == "ENVELOPE"
    assert items("uid", "Flags") == ["UID", "FLAGS"]


def test_body_sections() -> None:
    (item,) = items("BODY.PEEK[1.2.HEADER.FIELDS.NOT (x-spam Received)]<5.10>")
    assert item == BodyItem(
        "BODY[1.2.HEADER.FIELDS.NOT (X-SPAM RECEIVED)]",
        Section((1, 2), "HEADER.FIELDS.NOT", ("X-SPAM", "RECEIVED")),
        True,
        (5, 10),
    )
    (item,) = items("body[]")
    assert isinstance(item, BodyItem) and not item.peek and item.section == Section()
    assert sets_seen(items("BODY[]")) and not sets_seen(items("BODY.PEEK[]", "RFC822.SIZE"))
    assert sets_seen(items("RFC822.TEXT")) and needs_message(items("BODYSTRUCTURE"))
    assert not needs_message(items("UID", "ENVELOPE"))


@pytest.mark.parametrize(
    "bad",
    ["BODY[0]", "BODY[MIME]", "BODY[HEADER.FIELDS]", "BODY[HEADER.FIELDS ()]", "BODY[FOO]",
     "BODY[]<1.0>", "NOPE", "BODY[TEXT]<a.1>", "BODY[HEADER.FIELDS (a:b)]"],
)  # fmt: skip
def test_bad_items(bad: str) -> None:
    with pytest.raises(FetchSyntaxError):
        items(bad)


def data() -> MessageData:
    return MessageData(
        uid=7,
        flags=lambda: frozenset({"\\Seen", "$A"}),
        size=lambda: len(RAW.replace(b"\n", b"\r\n")),
        internal_date=lambda: 0.0,
        envelope=lambda: envelope(RAW[: RAW.index(b"\n\n") + 2]),
        message=lambda: RAW,
    )


def test_response_with_partials_and_crlf() -> None:
    wanted = parse_items(
        PList((Atom("FLAGS"), Atom("BODY.PEEK[]<0.9>"), Atom("BODY[TEXT]"), Atom("RFC822.SIZE")))
    )
    out = build_response(3, wanted, data(), with_uid=True)
    assert out == (
        b"* 3 FETCH (UID 7 FLAGS ($A \\Seen) BODY[]<0> {9}\r\nSubject: "
        b" BODY[TEXT] {20}\r\nline one\r\nline two\r\n RFC822.SIZE 46)\r\n"
    )


def test_partial_past_end_is_empty_and_date_format() -> None:
    out = build_response(1, parse_items(Atom("BODY.PEEK[]<1000.5>")), data(), with_uid=False)
    assert out == b"* 1 FETCH (BODY[]<1000> {0}\r\n)\r\n"
    assert format_date(0.0) == b'" 1-Jan-1970 00:00:00 +0000"'
