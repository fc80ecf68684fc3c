"""Argument helpers shared by the IMAP command handlers (RFC 3501 section 9 grammar)."""

from __future__ import annotations

import datetime
import re

from tinymail.proto.imap import utf7
from tinymail.proto.imap.parse import Atom, Command, PList, Str, Token
from tinymail.proto.imap.seqset import SeqSet, SeqSetError, parse_seqset
from tinymail.store.mailbox import FlagMode

_SYSTEM = {f.lower(): f for f in ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")}
_KEYWORD_RE = re.compile(r"[!#$&'+-.0-9:-Z^-z|~]+")  # atom chars minus "]" and specials
_DATE_TIME_RE = re.compile(
    r"\A([ \d]?\d)-(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)-(\d{4}) "
    r"(\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)\Z",
    re.I,
)
_MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
)}  # fmt: skip


class Bad(Exception):
    """A syntax error inside a command: tagged BAD."""


def astring(tok: Token) -> bytes:
    """The bytes of an astring argument."""
    if isinstance(tok, Atom):
        return tok.text.encode()
    if isinstance(tok, Str):
        return tok.data
    raise Bad("String expected")


def mailbox_name(tok: Token) -> str:
    """A mailbox argument decoded from modified UTF-7 (RFC 3501 5.1.3)."""
    raw = astring(tok)
    if not raw.isascii():
        raise Bad("Mailbox name must be modified UTF-7")
    try:
        return utf7.decode(raw.decode("ascii"))
    except utf7.Utf7Error as exc:
        raise Bad(f"Invalid mailbox name: {exc}") from exc


def seqset(tok: Token) -> SeqSet:
    """A sequence-set argument."""
    if not isinstance(tok, Atom):
        raise Bad("Sequence set expected")
    try:
        return parse_seqset(tok.text)
    except SeqSetError as exc:
        raise Bad(str(exc)) from exc


def nargs(cmd: Command, low: int, high: int | None = None) -> None:
    """BAD unless the command has between `low` and `high` arguments."""
    if not low <= len(cmd.args) <= (low if high is None else high):
        raise Bad(f"Wrong number of arguments to {cmd.name}")


def parse_flags(tokens: tuple[Token, ...]) -> frozenset[str]:
    """System flags (canonical case) and keywords; \\Recent is dropped (RFC 3501 2.3.2)."""
    out = set()
    for tok in tokens:
        if not isinstance(tok, Atom):
            raise Bad("Flag expected")
        text = tok.text
        if text.startswith("\\"):
            if text.lower() == "\\recent":
                continue
            if text.lower() not in _SYSTEM:
                raise Bad(f"Unknown system flag {text[:30]}")
            out.add(_SYSTEM[text.lower()])
        elif _KEYWORD_RE.fullmatch(text) and len(text) <= 100:
            out.add(text)
        else:
            raise Bad("Invalid keyword")
    return frozenset(out)


def flag_list(tokens: tuple[Token, ...]) -> frozenset[str]:
    """Flags from STORE's argument(s): one list or bare atoms."""
    if len(tokens) == 1 and isinstance(tokens[0], PList):
        return parse_flags(tokens[0].items)
    return parse_flags(tokens)


def store_mode(tok: Token) -> tuple[FlagMode, bool]:
    """`[+|-]FLAGS[.SILENT]` -> (mode, silent) (RFC 3501 6.4.6)."""
    if not isinstance(tok, Atom):
        raise Bad("FLAGS item expected")
    text = tok.text.upper()
    silent = text.endswith(".SILENT")
    base = text.removesuffix(".SILENT")
    modes = {"FLAGS": FlagMode.REPLACE, "+FLAGS": FlagMode.ADD, "-FLAGS": FlagMode.REMOVE}
    if base not in modes:
        raise Bad("FLAGS, +FLAGS or -FLAGS expected")
    return modes[base], silent


def date_time(text: str) -> float:
    """APPEND's date-time `"17-Jul-1996 02:44:25 -0700"` as a POSIX timestamp (RFC 3501 9)."""
    match = _DATE_TIME_RE.match(text)
    if match is None:
        raise Bad("Invalid date-time")
    day, month, year, hh, mm, ss, sign, zh, zm = match.groups()
    offset = datetime.timedelta(hours=int(zh), minutes=int(zm))
    try:
        when = datetime.datetime(
            int(year), _MONTHS[month.lower()], int(day), int(hh), int(mm), int(ss),
            tzinfo=datetime.timezone(offset if sign == "+" else -offset),
        )  # fmt: skip
    except ValueError as exc:
        raise Bad("Invalid date-time") from exc
    return when.timestamp()


def append_args(args: tuple[Token, ...]) -> tuple[str, frozenset[str], float | None, bytes]:
    """APPEND mailbox [(flags)] [date-time] message -> (mailbox, flags, date, message)."""
    if len(args) < 2 or len(args) > 4:
        raise Bad("Wrong number of arguments to APPEND")
    name = mailbox_name(args[0])
    flags: frozenset[str] = frozenset()
    when: float | None = None
    rest = list(args[1:])
    first = rest[0]
    if isinstance(first, PList):
        flags = parse_flags(first.items)
        rest.pop(0)
    if len(rest) == 2:
        stamp = rest.pop(0)
        if not isinstance(stamp, Str):
            raise Bad("date-time must be a quoted string")
        when = date_time(stamp.data.decode("ascii", "replace"))
    if len(rest) != 1 or not isinstance(rest[0], Str):
        raise Bad("Message literal expected")
    return name, flags, when, rest[0].data
