from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinymail.proto.imap import parse
from tinymail.proto.imap.parse import (
    Atom,
    Command,
    ParseError,
    PList,
    Str,
    Token,
    _atom,
    parse_command,
    tokenize,
    tokenize_general,
)
from tinymail.proto.imap.reader import Frame


def cmd(line: bytes, *literals: bytes) -> Command:
    parts = line.split(b"\n")
    return parse_command(Frame(tuple(parts), literals))


def test_atoms_strings_lists() -> None:
    c = cmd(b"a1 STORE 1:* +FLAGS.SILENT (\\Seen $Junk)")
    assert c == Command(
        "a1",
        "STORE",
        False,
        (Atom("1:*"), Atom("+FLAGS.SILENT"), PList((Atom("\\Seen"), Atom("$Junk")))),
    )


def test_quoted_and_literal() -> None:
    c = cmd(b'x LOGIN "bo\\"b" {2}\n', b"pw")
    assert c.args == (Str(b'bo"b'), Str(b"pw"))


def test_uid_command_and_sections() -> None:
    c = cmd(b"t uid fetch 1:5 (UID BODY.PEEK[HEADER.FIELDS (From To)]<0.100> FLAGS)")
    assert c.uid and c.name == "FETCH"
    assert c.args[1] == PList(
        (Atom("UID"), Atom("BODY.PEEK[HEADER.FIELDS (From To)]<0.100>"), Atom("FLAGS"))
    )


def test_literal_inside_list() -> None:
    c = cmd(b"a SEARCH CHARSET UTF-8 (SUBJECT {4}\n)", "ü!".encode())
    assert c.args[2] == PList((Atom("SUBJECT"), Str("ü!".encode())))


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"+ NOOP",
        b"a",
        b'a LOGIN "x',
        b"a X (",
        b"a X )",
        b"a X {3} y",
        b'a X "\\q"',
        b"a X BODY[",
        b"a SEARCH " + b"(" * 100000 + b"ALL" + b")" * 100000,
        b"a X \x01",
    ],
)
def test_malformed(line: bytes) -> None:
    with pytest.raises(ParseError):
        cmd(line)


def test_error_carries_tag() -> None:
    with pytest.raises(ParseError) as info:
        cmd(b"tag7 X (")
    assert info.value.tag == "tag7"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_never_raises_anything_else(data: bytes) -> None:
    try:
        c = parse_command(Frame((data,), ()))
    except ParseError as exc:
        assert exc.message
    else:
        assert c.tag and c.name


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=30), min_size=1, max_size=5))
def test_quoting_roundtrip(values: list[bytes]) -> None:
    values = [v.replace(b"\r", b"").replace(b"\n", b"").replace(b"\0", b"") for v in values]
    line = b"a X " + b" ".join(
        b'"' + v.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"' for v in values
    )
    assert cmd(line).args == tuple(Str(v) for v in values)


def _atom_by_bytes(line: bytes, pos: int) -> tuple[str, int] | str:
    """The atom rule spelled out byte by byte (RFC 3501 9), as parse._atom must read it."""
    i = pos
    while i < len(line) and line[i] not in b' ()"{':
        if line[i] == 0x5B:  # "[": a section, read to its "]" (spaces and parens allowed)
            end = line.find(b"]", i)
            if end < 0:
                return "Missing ] in section"
            i = end + 1
            continue
        i += 1
    raw = line[pos:i]
    if not raw or any(b < 0x20 or b > 0x7E for b in raw):
        return "Invalid characters in atom"
    return raw.decode("ascii"), i


@given(
    st.lists(
        st.one_of(
            st.sampled_from([b" ", b"(", b")", b'"', b"{", b"[", b"]", b"\x00", b"\xff", b"\x7f"]),
            st.binary(max_size=4),
            st.text(alphabet="ABCdef.123<>\\*%", max_size=6).map(str.encode),
        ),
        max_size=12,
    ).map(b"".join),
    st.integers(min_value=0, max_value=8),
)
def test_atom_scanner_equals_the_byte_rule(line: bytes, pos: int) -> None:
    pos = min(pos, len(line))
    expected = _atom_by_bytes(line, pos)
    try:
        got: tuple[str, int] | str = _atom(line, pos, "t")
    except ParseError as exc:
        got = exc.message
    assert got == expected


def _tokens_or_error(tokenizer: Callable[[Frame, str], list[Token]], line: bytes) -> object:
    try:
        return tokenizer(Frame((line,), ()), "t")
    except ParseError as exc:
        return exc.message


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from([b" ", b"  ", b"(", b")", b'"', b"{", b"[", b"]", b"\\", b"\x7f"]),
            st.sampled_from([b"UID", b"FETCH", b"BODY.PEEK[]", b"1:*", b"<0.5>", b"a", b"7"]),
        ),
        max_size=12,
    )
)
def test_split_lines_tokenize_as_the_general_path(parts: list[bytes]) -> None:
    # a line of simple atoms is split on spaces; it must give what the general path gives
    line = b"t " + b"".join(parts)
    assert _tokens_or_error(tokenize, line) == _tokens_or_error(tokenize_general, line)


def test_simple_lines_take_the_split_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def general_path(frame: Frame, tag: str = "*") -> list[Token]:
        raise AssertionError(f"tokenized, not split: {frame.lines[0]!r}")

    monkeypatch.setattr(parse, "tokenize_general", general_path)
    frame = Frame((b"A1 UID FETCH 7 BODY.PEEK[]<0.10>",), ())
    assert tokenize(frame) == [Atom(t) for t in ("A1", "UID", "FETCH", "7", "BODY.PEEK[]<0.10>")]
    assert parse_command(frame) == Command(
        "A1", "FETCH", True, (Atom("7"), Atom("BODY.PEEK[]<0.10>"))
    )
    for line in (b"a FETCH 1 (FLAGS)", b'a LOGIN "x" y', b"a  NOOP", b"a X[1 2]"):
        with pytest.raises(AssertionError, match="tokenized"):
            tokenize(Frame((line,), ()))
