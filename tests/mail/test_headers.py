"""Header field reading, RFC 2047 decoding, address lists and MIME parameters."""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from tinymail.mail.headers import (
    FIELD_CAP,
    MISSING_DOMAIN,
    Address,
    decode_header_value,
    field_value,
    first_values,
    iter_fields,
    parse_address_list,
    parse_content_type,
    parse_disposition,
    parse_list,
)

BLOCK = (
    b"Subject: one\r\n two\r\nX-Empty:\r\nno colon here\r\nFrom : a@b\r\n\r\nBody: not a header\r\n"
)


def test_iter_fields_unfolds_and_stops_at_the_empty_line() -> None:
    fields = list(iter_fields(BLOCK, 0, len(BLOCK)))
    assert [f.name for f in fields] == [b"Subject", b"X-Empty", b"", b"From"]
    assert BLOCK[fields[0].start : fields[0].end] == b"Subject: one\r\n two\r\n"
    assert field_value(BLOCK, fields[0]) == b"one two"
    assert field_value(BLOCK, fields[1]) == b""
    assert field_value(BLOCK, fields[3]) == b"a@b"


def test_first_values_takes_the_first_occurrence_case_insensitively() -> None:
    raw = b"subject: first\r\nSUBJECT: second\r\n\r\n"
    assert first_values(raw, 0, len(raw), frozenset({b"subject"})) == {b"subject": b"first"}


def test_field_value_is_capped() -> None:
    raw = b"Subject: " + b"x" * (3 * FIELD_CAP) + b"\r\n\r\n"
    (field,) = list(iter_fields(raw, 0, len(raw)))
    assert len(field_value(raw, field)) <= FIELD_CAP


def test_decode_header_value() -> None:
    assert decode_header_value(b"=?UTF-8?Q?R=C3=A9sum=C3=A9?= attached") == "Résumé attached"
    assert decode_header_value(b"=?utf-8?b?Wm/DqQ==?=") == "Zoé"
    # RFC 2047 6.2: whitespace between adjacent encoded-words disappears
    assert decode_header_value(b"=?utf-8?q?a?= \r\n =?utf-8?q?b?= c") == "ab c"
    assert decode_header_value(b"=?iso-8859-1*fr?q?Fran=E7ois?=") == "François"
    assert decode_header_value(b"=?x-unknown?q?abc?=") == "abc"
    assert decode_header_value(b"=?base64_codec?q?abc?=") == "abc"  # not a text codec
    assert decode_header_value(b"=?utf-8?b?YW?=") == "a"  # padding repaired
    assert decode_header_value("plain Grüße".encode()) == "plain Grüße"


def test_decode_header_value_is_bounded() -> None:
    hostile = b"=?utf-8?q?a?= " * 100_000  # ~1.4 MB; CPython's policy.default needs GBs
    start = time.perf_counter()
    decoded = decode_header_value(hostile)
    assert time.perf_counter() - start < 2.0
    assert 0 < len(decoded) <= FIELD_CAP


def test_address_list_rfc3501_shapes() -> None:
    got = parse_address_list(b'"Doe, John" <john@example.com>, a@b.c (Alice), x <@route:y@z>')
    assert got == [
        Address(b"Doe, John", b"john", b"example.com"),
        Address(b"Alice", b"a", b"b.c"),
        Address(b"x", b"y", b"z"),  # RFC 3501: the source route is dropped (adl NIL)
    ]


def test_address_list_groups_become_markers() -> None:
    assert parse_address_list(b"undisclosed-recipients:;") == [
        Address(None, b"undisclosed-recipients", None),
        Address(None, None, None),
    ]
    got = parse_address_list(b"Team: a@b, C <c@d>; e@f")
    assert got == [
        Address(None, b"Team", None),
        Address(None, b"a", b"b"),
        Address(b"C", b"c", b"d"),
        Address(None, None, None),
        Address(None, b"e", b"f"),
    ]
    # an unterminated group is still closed
    assert parse_address_list(b"G: a@b")[-1] == Address(None, None, None)


def test_address_list_missing_host_is_filled_not_nil() -> None:
    # A NIL host would read as a group start (RFC 3501 7.4.2).
    assert parse_address_list(b"root") == [Address(None, b"root", MISSING_DOMAIN)]
    assert parse_address_list(b"") == []
    assert parse_address_list(b"<>") == []


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_address_list_never_raises_and_groups_balance(value: bytes) -> None:
    depth = 0
    for address in parse_address_list(value):
        if address.host is None:
            depth += 1 if address.mailbox is not None else -1
            assert depth in (0, 1)
    assert depth == 0


def test_content_type_params() -> None:
    assert parse_content_type(b'Text/HTML; Charset="utf-8"; x=y z') == (
        "text",
        "html",
        (("charset", "utf-8"), ("x", "y z")),
    )
    assert parse_content_type(b'a/b; name="x;y\\"z"') == ("a", "b", (("name", 'x;y"z'),))
    assert parse_content_type(b"garbage")[0:2] == ("text", "plain")
    assert parse_content_type(b"")[0:2] == ("text", "plain")


def test_rfc2231_continuations_are_joined() -> None:
    _, _, params = parse_content_type(b'a/b; name*1="two"; name*0="one "; name*3=gap')
    assert params == (("name", "one two"),)
    _, _, params = parse_content_type(b"a/b; f*0*=UTF-8''R%C3%A9; f*1=\"s .txt\"")
    assert params == (("f*", "UTF-8''R%C3%A9s%20.txt"),)
    _, _, params = parse_content_type(b"a/b; f*=iso-8859-1'en'%E9")
    assert params == (("f*", "iso-8859-1'en'%E9"),)


def test_disposition_and_language() -> None:
    assert parse_disposition(b'Attachment; filename="a.pdf"') == (
        "attachment",
        (("filename", "a.pdf"),),
    )
    assert parse_disposition(b"; filename=a") is None
    assert parse_list(b"en-GB, de (German),,") == ("en-GB", "de")


def test_params_are_linear_on_hostile_input() -> None:
    start = time.perf_counter()
    parse_content_type(b"a/b" + b";" * 60_000 + b"=x")
    parse_content_type(b"a/b; n=" + b'"' + b"\\" * 60_000)
    assert time.perf_counter() - start < 1.0
