"""IMAP string serialization: atoms, quoted strings, literals, NIL."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tinymail.proto.imap.quoting import QUOTED_MAX, astring, literal, nstring, quoted_or_literal


def test_plain_text_is_quoted() -> None:
    assert quoted_or_literal(b"hello world") == b'"hello world"'


def test_quote_and_backslash_are_escaped() -> None:
    assert quoted_or_literal(b'a "b" \\c') == b'"a \\"b\\" \\\\c"'


def test_empty_string_is_quoted() -> None:
    assert quoted_or_literal(b"") == b'""'
    assert astring(b"") == b'""'


def test_line_breaks_nul_and_8bit_need_a_literal() -> None:
    assert quoted_or_literal(b"a\r\nb") == b"{4}\r\na\r\nb"
    assert quoted_or_literal(b"a\nb") == b"{3}\r\na\nb"
    assert quoted_or_literal(b"a\x00") == b"{2}\r\na\x00"
    assert quoted_or_literal("Grüße".encode()) == b"{7}\r\n" + "Grüße".encode()


def test_long_string_is_a_literal() -> None:
    data = b"x" * (QUOTED_MAX + 1)
    assert quoted_or_literal(data) == b"{%d}\r\n" % len(data) + data
    assert quoted_or_literal(data[:-1]) == b'"' + data[:-1] + b'"'


def test_literal() -> None:
    assert literal(b"") == b"{0}\r\n"
    assert literal(b"abc") == b"{3}\r\nabc"


def test_nstring() -> None:
    assert nstring(None) == b"NIL"
    assert nstring(b"NIL") == b'"NIL"'  # a string NIL must not read as the NIL atom


def test_astring_uses_an_atom_when_allowed() -> None:
    assert astring(b"INBOX") == b"INBOX"
    assert astring(b"Sent]") == b"Sent]"  # RFC 3501 9: resp-specials are ASTRING-CHARs
    assert astring(b"a b") == b'"a b"'
    for special in (b"(", b")", b"{", b"%", b"*", b'"', b"\\"):
        assert astring(b"x" + special) != b"x" + special


def _unquote(wire: bytes) -> bytes:
    """Decode one serialized IMAP string (quoted or literal), checking it is whole."""
    if wire.startswith(b"{"):
        head, _, rest = wire.partition(b"}\r\n")
        assert int(head[1:]) == len(rest)
        return rest
    assert wire[:1] == b'"' and wire[-1:] == b'"'
    out, i, body = bytearray(), 0, wire[1:-1]
    while i < len(body):
        if body[i] == 0x5C:
            assert body[i + 1] in b'"\\'
            i += 1
        else:
            assert body[i] != 0x22
        out.append(body[i])
        i += 1
    return bytes(out)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=1200))
def test_round_trip(data: bytes) -> None:
    assert _unquote(quoted_or_literal(data)) == data
    wire = astring(data)
    assert wire == data or _unquote(wire) == data
