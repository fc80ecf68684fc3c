"""IMAP command tokenizing (RFC 3501 sections 4 and 9).

Rules: a framed command (reader.Frame) becomes a tag, a command name and a
tuple of arguments, each an atom, a string (quoted or literal; NIL stays an
atom) or a parenthesized list. A fetch attribute like
`BODY.PEEK[HEADER.FIELDS (A B)]<0.100>` is one atom: inside `[...]` spaces and
parentheses belong to the atom (RFC 3501 9, "section"). Nesting is bounded
and handled with an explicit stack, never Python recursion (research I6).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tinymail.proto.imap.reader import Frame

MAX_DEPTH = 64
MAX_TOKENS = 100_000
# An atom runs to a space, parenthesis, quote or brace; a "[" takes everything up to its "]".
# One C-level match instead of a Python loop per byte: parsing is a third of a light FETCH.
_ATOM = re.compile(rb'(?:[^ ()"{\[]|\[[^\]]*\])*')
_NOT_ATOM_CHAR = re.compile(rb"[^\x20-\x7e]")
# A line of atoms only, one space between them, where any "[" closes before the next space
# or parenthesis (`UID FETCH 7 BODY.PEEK[]`, most commands): split instead of tokenized.
_SIMPLE_CHAR = rb"[\x21\x23-\x27\x2a-\x5a\x5c\x5e-\x7a\x7c-\x7e]"  # not ()"{[] or space
_SIMPLE_ATOM = rb"(?:" + _SIMPLE_CHAR + rb"|\[" + _SIMPLE_CHAR + rb"*\])+"
_SIMPLE_LINE = re.compile(_SIMPLE_ATOM + rb"(?: " + _SIMPLE_ATOM + rb")*")


@dataclass(frozen=True, slots=True)
class Atom:
    """An atom (also NIL, numbers, flags like \\Seen, sequence sets, fetch attributes)."""

    text: str


@dataclass(frozen=True, slots=True)
class Str:
    """A quoted string or a literal, as bytes."""

    data: bytes


@dataclass(frozen=True, slots=True)
class PList:
    """A parenthesized list."""

    items: tuple[Token, ...]


Token = Atom | Str | PList


@dataclass(frozen=True, slots=True)
class Command:
    """A tagged command; `uid` is set for `UID FETCH` etc. and `name` is then FETCH."""

    tag: str
    name: str
    uid: bool
    args: tuple[Token, ...]


class ParseError(Exception):
    """The command is malformed; the server answers `tag BAD message` (RFC 3501 7.1.5)."""

    def __init__(self, tag: str, message: str) -> None:
        super().__init__(message)
        self.tag = tag
        self.message = message


def _quoted(line: bytes, pos: int, tag: str) -> tuple[bytes, int]:
    out = bytearray()
    i = pos + 1
    while i < len(line):
        b = line[i]
        if b == 0x22:
            return bytes(out), i + 1
        if b == 0x5C:  # RFC 3501 9: only \" and \\ are quoted-specials
            if i + 1 >= len(line) or line[i + 1] not in b'"\\':
                raise ParseError(tag, "Invalid escape in quoted string")
            out.append(line[i + 1])
            i += 2
            continue
        if b == 0:
            raise ParseError(tag, "NUL in quoted string")
        out.append(b)
        i += 1
    raise ParseError(tag, "Unterminated quoted string")


def _atom(line: bytes, pos: int, tag: str) -> tuple[str, int]:
    match = _ATOM.match(line, pos)
    assert match is not None  # the pattern also matches the empty string
    i = match.end()
    if line[i : i + 1] == b"[":  # a section without its "]"
        raise ParseError(tag, "Missing ] in section")
    raw = line[pos:i]
    if not raw or _NOT_ATOM_CHAR.search(raw):
        raise ParseError(tag, "Invalid characters in atom")
    return raw.decode("ascii"), i


def tokenize(frame: Frame, tag: str = "*") -> list[Token]:
    """All tokens of a framed command, in order; raise ParseError when malformed."""
    if not frame.literals and _SIMPLE_LINE.fullmatch(frame.lines[0]):
        words = frame.lines[0].decode("ascii").split(" ")
        if len(words) <= MAX_TOKENS:
            return [Atom(word) for word in words]
    return tokenize_general(frame, tag)


def tokenize_general(frame: Frame, tag: str = "*") -> list[Token]:
    """tokenize() for any command: quoted strings, literals, lists, sections with spaces."""
    stack: list[list[Token]] = [[]]
    count = 0
    for index, full in enumerate(frame.lines):
        line = full
        if index < len(frame.literals):
            line = full[: full.rindex(b"{")]
        pos = 0
        while pos < len(line):
            b = line[pos]
            if b == 0x20:
                pos += 1
                continue
            count += 1
            if count > MAX_TOKENS:
                raise ParseError(tag, "Too many tokens")
            if b == 0x28:
                if len(stack) > MAX_DEPTH:
                    raise ParseError(tag, "Lists nested too deeply")
                stack.append([])
                pos += 1
            elif b == 0x29:
                if len(stack) == 1:
                    raise ParseError(tag, "Unexpected )")
                items = stack.pop()
                stack[-1].append(PList(tuple(items)))
                pos += 1
            elif b == 0x22:
                data, pos = _quoted(line, pos, tag)
                stack[-1].append(Str(data))
            elif b == 0x7B:
                raise ParseError(tag, "Literal announcement not at end of line")
            else:
                text, pos = _atom(line, pos, tag)
                stack[-1].append(Atom(text))
        if index < len(frame.literals):
            stack[-1].append(Str(frame.literals[index]))
    if len(stack) != 1:
        raise ParseError(tag, "Missing )")
    return stack[0]


def _is_tag(text: str) -> bool:
    # RFC 3501 9: tag = 1*<any ASTRING-CHAR except "+">
    return bool(text) and not any(c in '+%*"(){\\' for c in text)


def parse_command(frame: Frame) -> Command:
    """Turn a framed command into a Command; raise ParseError with the tag when known."""
    first = frame.lines[0]
    tag_text = first.split(b" ", 1)[0]
    tag = "*"
    if tag_text and all(0x21 <= b <= 0x7E for b in tag_text):
        candidate = tag_text.decode("ascii")
        tag = candidate if _is_tag(candidate) else "*"
    if tag == "*":
        raise ParseError("*", "Invalid tag")
    tokens = tokenize(frame, tag)
    if len(tokens) < 2 or not isinstance(tokens[1], Atom):
        raise ParseError(tag, "Missing command")
    name = tokens[1].text.upper()
    args = tokens[2:]
    uid = False
    if name == "UID":
        if not args or not isinstance(args[0], Atom):
            raise ParseError(tag, "Missing command after UID")
        uid = True
        name = args[0].text.upper()
        args = args[1:]
    return Command(tag, name, uid, tuple(args))
