"""FETCH attributes: parsing the request and building one message's response (RFC 3501 6.4.5).

Rules:
- Macros ALL, FAST, FULL expand as RFC 3501 6.4.5 says; BODY[...] and
  BODY.PEEK[...] take every section spec (parsed here into fetchdata.Section)
  and a partial `<origin.size>`, answered as `BODY[section]<origin>` with
  exactly the requested bytes (an origin past the end gives an empty string).
- BODY[...] without PEEK, RFC822 and RFC822.TEXT set \\Seen (6.4.5); the
  caller does that and adds FLAGS to the response.
- The message is read only for what needs it: RFC822.SIZE and INTERNALDATE
  come from the store, ENVELOPE from the store's cache or the header, the rest from the
  whole message. Stored messages have LF line ends and are served with CRLF.
"""

from __future__ import annotations

import datetime
import functools
import re
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Protocol, runtime_checkable

from tinymail.mail.mime import to_crlf
from tinymail.proto.imap.fetchdata import Section, bodystructure, envelope, section_bytes
from tinymail.proto.imap.parse import Atom, PList, Token
from tinymail.proto.imap.quoting import literal

_MACROS = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
_SIMPLE = frozenset(
    ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "UID", "ENVELOPE", "BODY", "BODYSTRUCTURE",
     "RFC822", "RFC822.HEADER", "RFC822.TEXT")
)  # fmt: skip
_BODY_RE = re.compile(r"\A(BODY(?:\.PEEK)?)\[([^\]]*)\](?:<(\d{1,10})\.(\d{1,10})>)?\Z", re.I)
_FIELD_RE = re.compile(r"[!-9;-~]+")  # RFC 5322 ftext
_MONTH_BYTES = tuple(b"Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split())


class FetchSyntaxError(ValueError):
    """The FETCH attribute list is malformed (tagged BAD)."""


@dataclass(frozen=True, slots=True)
class BodyItem:
    """BODY[section]<partial> or BODY.PEEK[...]."""

    label: str  # "BODY[HEADER.FIELDS (FROM)]" as echoed back (RFC 3501 7.4.2)
    section: Section
    peek: bool
    partial: tuple[int, int] | None


FetchItem = str | BodyItem


def _section(spec: str) -> tuple[Section, str]:
    """Parse a section spec such as `1.2.HEADER.FIELDS (From To)` into a Section and label."""
    head, _, rest = spec.partition(" ")
    parts: list[int] = []
    words = head.split(".") if head else []
    i = 0
    while i < len(words) and words[i].isdigit():
        if words[i].startswith("0") or len(parts) >= 100:
            raise FetchSyntaxError("invalid section part number")
        parts.append(int(words[i]))
        i += 1
    text = ".".join(words[i:]).upper() or None
    if text not in (None, "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"):
        raise FetchSyntaxError("invalid section text")
    if text == "MIME" and not parts:
        raise FetchSyntaxError("MIME needs a part number")
    fields: tuple[str, ...] = ()
    if text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        rest = rest.strip()
        if not (rest.startswith("(") and rest.endswith(")")):
            raise FetchSyntaxError("header list expected")
        fields = tuple(rest[1:-1].split())
        if not fields or not all(_FIELD_RE.fullmatch(f) for f in fields):
            raise FetchSyntaxError("invalid header field name")
        fields = tuple(f.upper() for f in fields)
    elif rest:
        raise FetchSyntaxError("unexpected text in section")
    label = ".".join([*map(str, parts), *([text] if text else [])])
    if fields:
        label += " (" + " ".join(fields) + ")"
    return Section(tuple(parts), text, fields), label


def parse_items(arg: Token) -> list[FetchItem]:
    """The attribute list of a FETCH command (one atom, a macro or a parenthesized list)."""
    if isinstance(arg, PList) and len(arg.items) > _CACHED_ITEMS:
        return list(_parse_items.__wrapped__(arg))
    return list(_parse_items(arg))


_CACHED_ITEMS = 32  # attributes: longer lists are parsed each time, never kept


@functools.lru_cache(maxsize=64)
def _parse_items(arg: Token) -> tuple[FetchItem, ...]:
    # Clients send the same few lists over and over (one FETCH per message for bodies).
    if isinstance(arg, Atom) and arg.text.upper() in _MACROS:
        return _MACROS[arg.text.upper()]
    tokens = arg.items if isinstance(arg, PList) else (arg,)
    if not tokens:
        raise FetchSyntaxError("empty FETCH attribute list")
    items: list[FetchItem] = []
    for tok in tokens:
        if not isinstance(tok, Atom):
            raise FetchSyntaxError("FETCH attribute expected")
        name = tok.text.upper()
        if name in _SIMPLE:
            items.append(name)
            continue
        match = _BODY_RE.match(tok.text)
        if match is None:
            raise FetchSyntaxError(f"unknown FETCH attribute {tok.text[:40]!r}")
        section, label = _section(match.group(2))
        partial = None
        if match.group(3) is not None:
            size = int(match.group(4))
            if size == 0:  # RFC 3501 9: the partial size is an nz-number
                raise FetchSyntaxError("zero partial size")
            partial = (int(match.group(3)), size)
        items.append(BodyItem(f"BODY[{label}]", section, match.group(1).upper() != "BODY", partial))
    return tuple(items)


def sets_seen(items: list[FetchItem]) -> bool:
    """True if fetching these items sets \\Seen (RFC 3501 6.4.5)."""
    return any(
        (isinstance(i, BodyItem) and not i.peek) or i in ("RFC822", "RFC822.TEXT") for i in items
    )


def needs_message(items: list[FetchItem]) -> bool:
    """True if the whole message must be read."""
    return any(isinstance(i, BodyItem) or i in _FULL_NEEDED for i in items)


_FULL_NEEDED = frozenset(("BODY", "BODYSTRUCTURE", "RFC822", "RFC822.HEADER", "RFC822.TEXT"))


def format_date(when: float) -> bytes:
    """INTERNALDATE as `"17-Jul-1996 02:44:25 +0000"` (RFC 3501 9, date-time), in UTC."""
    d = datetime.datetime.fromtimestamp(when, datetime.UTC)
    # %-formatting of the fields: strftime would cost more than all the rest (FETCH 1:*)
    return b'"%2d-%s-%04d %02d:%02d:%02d +0000"' % (
        d.day, _MONTH_BYTES[d.month - 1], d.year, d.hour, d.minute, d.second
    )  # fmt: skip


def format_flags(flags: frozenset[str] | set[str]) -> bytes:
    """`(\\Seen $Junk)` in a stable order."""
    return b"(" + " ".join(sorted(flags)).encode() + b")"


@runtime_checkable
class DerivedCache(Protocol):
    """A mailbox that caches data computed from a whole message (messages never change)."""

    def derived(self, uid: int, kind: str, compute: Callable[[bytes], bytes]) -> bytes:
        """`compute(message)`, cached under `kind`: "B" BODYSTRUCTURE, "N" BODY."""
        ...


@runtime_checkable
class BatchCache(Protocol):
    """A DerivedCache that can fill several kinds for a message from one read."""

    def prime(
        self, uid: int, kinds: str, compute: Callable[[bytes, str], dict[str, bytes]]
    ) -> None:
        """Cache every missing kind of `kinds` with one `compute(message, missing)`."""
        ...


@runtime_checkable
class OrderedCache(Protocol):
    """A BatchCache that can prime a whole run of messages, in order, sharing the work."""

    def prime_all(
        self, uids: Sequence[int], kinds: str, compute: Callable[[bytes, str], dict[str, bytes]]
    ) -> Generator[None, None, None]:
        """BatchCache.prime for each of `uids` in order, yielding once after each."""
        ...


_KINDS = {"ENVELOPE": "E", "BODYSTRUCTURE": "B", "BODY": "N", "RFC822.SIZE": "S"}


def cached_kinds(items: list[FetchItem]) -> str:
    """The store cache kinds (see BatchCache) that these items read."""
    return "".join(_KINDS[i] for i in items if isinstance(i, str) and i in _KINDS)


def structure_of(extensible: bool) -> Callable[[bytes], bytes]:
    """The function computing BODYSTRUCTURE (extensible) or BODY from a raw message."""
    return partial(bodystructure, extensible=extensible)


@dataclass(slots=True)
class MessageData:
    """Lazy access to one message for building its FETCH response."""

    uid: int
    flags: Callable[[], frozenset[str]]
    size: Callable[[], int]
    internal_date: Callable[[], float]
    envelope: Callable[[], bytes]  # ENVELOPE, possibly from the store's cache
    message: Callable[[], bytes]
    # BODYSTRUCTURE (True) / BODY (False), possibly from the store's cache; None: compute here
    structure: Callable[[bool], bytes] | None = None


_WHOLE = Section()


def _body_item(item: BodyItem, raw: bytes) -> bytes:
    # BODY[] needs no structure parse
    data = to_crlf(raw) if item.section == _WHOLE else section_bytes(raw, item.section)
    label = item.label.encode()
    if item.partial is not None:
        origin, size = item.partial
        data = data[origin : origin + size]  # RFC 3501 6.4.5: exactly the octets asked for
        label += b"<%d>" % origin
    return label + b" " + literal(data)


def build_response(seq: int, items: list[FetchItem], msg: MessageData, with_uid: bool) -> bytes:
    """`* seq FETCH (...)` with CRLF for one message."""
    parts: list[bytes] = []
    raw: bytes | None = None
    if with_uid and "UID" not in items:
        parts.append(b"UID %d" % msg.uid)
    for item in items:
        if isinstance(item, BodyItem):
            raw = msg.message() if raw is None else raw
            parts.append(_body_item(item, raw))
        elif item == "UID":
            parts.append(b"UID %d" % msg.uid)
        elif item == "FLAGS":
            parts.append(b"FLAGS " + format_flags(msg.flags()))
        elif item == "INTERNALDATE":
            parts.append(b"INTERNALDATE " + format_date(msg.internal_date()))
        elif item == "RFC822.SIZE":
            parts.append(b"RFC822.SIZE %d" % msg.size())
        elif item == "ENVELOPE":
            parts.append(b"ENVELOPE " + (msg.envelope() if raw is None else envelope(raw)))
        elif item in ("BODY", "BODYSTRUCTURE"):
            extensible = item == "BODYSTRUCTURE"
            if msg.structure is not None:
                structure = msg.structure(extensible)
            else:
                raw = msg.message() if raw is None else raw
                structure = bodystructure(raw, extensible=extensible)
            parts.append(item.encode() + b" " + structure)
        else:
            raw = msg.message() if raw is None else raw
            if item == "RFC822":
                parts.append(b"RFC822 " + literal(to_crlf(raw)))
            elif item == "RFC822.HEADER":
                parts.append(b"RFC822.HEADER " + literal(section_bytes(raw, Section((), "HEADER"))))
            else:
                parts.append(b"RFC822.TEXT " + literal(section_bytes(raw, Section((), "TEXT"))))
    return b"* %d FETCH (" % seq + b" ".join(parts) + b")\r\n"
