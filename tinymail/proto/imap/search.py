"""SEARCH keys: parsing into a tree and matching one message (RFC 3501 6.4.4).

Rules:
- Every RFC 3501 key, NOT/OR and parenthesized groups; nesting is bounded
  (research I6: `NOT NOT ...` x 100,000 is a BAD, not a RecursionError).
- String matching is case-insensitive substring matching on Unicode text:
  header values with RFC 2047 words decoded, bodies with their transfer
  encoding undone and their charset applied (what users expect from Dovecot).
- Date keys compare dates only: INTERNALDATE in UTC, Date: in its own zone.
- A message is read only when a key needs its header or body.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import email.utils
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tinymail.mail.headers import decode_header_value, field_value, iter_fields
from tinymail.mail.mime import Part, parse_structure
from tinymail.proto.imap.parse import Atom, PList, Str, Token
from tinymail.proto.imap.seqset import SeqSet, SeqSetError, parse_seqset, select_indices

MAX_DEPTH = 100
_MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
)}  # fmt: skip
_FLAG_KEYS = {
    "ANSWERED": ("\\Answered", True), "UNANSWERED": ("\\Answered", False),
    "DELETED": ("\\Deleted", True), "UNDELETED": ("\\Deleted", False),
    "DRAFT": ("\\Draft", True), "UNDRAFT": ("\\Draft", False),
    "FLAGGED": ("\\Flagged", True), "UNFLAGGED": ("\\Flagged", False),
    "SEEN": ("\\Seen", True), "UNSEEN": ("\\Seen", False),
}  # fmt: skip
_HEADER_KEYS = ("BCC", "CC", "FROM", "SUBJECT", "TO")
_DATE_KEYS = ("BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE")


class SearchSyntaxError(ValueError):
    """The search program is malformed (tagged BAD)."""


@dataclass(frozen=True, slots=True)
class And:
    keys: tuple[Key, ...]


@dataclass(frozen=True, slots=True)
class Or:
    left: Key
    right: Key


@dataclass(frozen=True, slots=True)
class Not:
    key: Key


@dataclass(frozen=True, slots=True)
class Flag:
    flag: str
    present: bool


@dataclass(frozen=True, slots=True)
class Recent:
    kind: str  # RECENT, NEW, OLD


@dataclass(frozen=True, slots=True)
class Header:
    name: str  # lowercase
    text: str  # casefolded


@dataclass(frozen=True, slots=True)
class Body:
    text: str
    with_header: bool  # TEXT searches the header too


@dataclass(frozen=True, slots=True)
class Date:
    key: str  # one of _DATE_KEYS
    day: datetime.date


@dataclass(frozen=True, slots=True)
class Size:
    larger: bool
    octets: int


@dataclass(frozen=True, slots=True)
class Numbers:
    seqset: SeqSet
    uid: bool


@dataclass(frozen=True, slots=True)
class All:
    pass


@dataclass(frozen=True, slots=True)
class Positions:
    """A Numbers key resolved against one mailbox: 0-based positions (see resolve_numbers)."""

    positions: frozenset[int]


Key = And | Or | Not | Flag | Recent | Header | Body | Date | Size | Numbers | All | Positions


def resolve_numbers(key: Key, uids: Sequence[int]) -> Key:
    """Replace sequence/UID sets by position sets once, so a set of 10,000 ranges costs one
    bisection per range instead of a scan per message (research I5). Depth is bounded."""
    if isinstance(key, Numbers):
        return Positions(frozenset(select_indices(key.seqset, uids, key.uid)))
    if isinstance(key, And):
        return And(tuple(resolve_numbers(k, uids) for k in key.keys))
    if isinstance(key, Or):
        return Or(resolve_numbers(key.left, uids), resolve_numbers(key.right, uids))
    if isinstance(key, Not):
        return Not(resolve_numbers(key.key, uids))
    return key


def _date(tok: Token) -> datetime.date:
    text = (
        tok.text
        if isinstance(tok, Atom)
        else tok.data.decode("ascii", "replace")
        if isinstance(tok, Str)
        else ""
    )
    day, _, rest = text.partition("-")
    month, _, year = rest.partition("-")
    if not (day.isdigit() and year.isdigit() and month.lower() in _MONTHS):
        raise SearchSyntaxError("invalid date")
    try:
        return datetime.date(int(year), _MONTHS[month.lower()], int(day))
    except ValueError as exc:
        raise SearchSyntaxError("invalid date") from exc


class _Parser:
    def __init__(self, tokens: tuple[Token, ...], charset: str) -> None:
        self.tokens = tokens
        self.pos = 0
        self.charset = charset

    def _next(self) -> Token:
        if self.pos >= len(self.tokens):
            raise SearchSyntaxError("missing search argument")
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def _string(self) -> str:
        tok = self._next()
        if isinstance(tok, Atom):
            return tok.text.casefold()
        if isinstance(tok, Str):
            try:
                return tok.data.decode(self.charset).casefold()
            except UnicodeDecodeError as exc:
                raise SearchSyntaxError("string is not valid in the given charset") from exc
        raise SearchSyntaxError("string expected")

    def _atom(self) -> str:
        tok = self._next()
        if not isinstance(tok, Atom):
            raise SearchSyntaxError("atom expected")
        return tok.text

    def key(self, depth: int) -> Key:
        if depth > MAX_DEPTH:
            raise SearchSyntaxError("search program nested too deeply")
        tok = self._next()
        if isinstance(tok, PList):
            inner = _Parser(tok.items, self.charset)
            keys = []
            while inner.pos < len(inner.tokens):
                keys.append(inner.key(depth + 1))
            if not keys:
                raise SearchSyntaxError("empty search group")
            return And(tuple(keys))
        if not isinstance(tok, Atom):
            raise SearchSyntaxError("search key expected")
        name = tok.text.upper()
        if name in _FLAG_KEYS:
            return Flag(*_FLAG_KEYS[name])
        if name == "ALL":
            return All()
        if name in ("RECENT", "NEW", "OLD"):
            return Recent(name)
        if name in ("KEYWORD", "UNKEYWORD"):
            return Flag(self._atom(), name == "KEYWORD")
        if name in _HEADER_KEYS:
            return Header(name.lower(), self._string())
        if name == "HEADER":
            field = self._string()
            return Header(field, self._string())
        if name in ("BODY", "TEXT"):
            return Body(self._string(), name == "TEXT")
        if name in _DATE_KEYS:
            return Date(name, _date(self._next()))
        if name in ("LARGER", "SMALLER"):
            number = self._atom()
            if not number.isdigit() or len(number) > 20:
                raise SearchSyntaxError("number expected")
            return Size(name == "LARGER", int(number))
        if name == "NOT":
            return Not(self.key(depth + 1))
        if name == "OR":
            left = self.key(depth + 1)
            return Or(left, self.key(depth + 1))
        try:
            if name == "UID":
                return Numbers(parse_seqset(self._atom()), True)
            return Numbers(parse_seqset(tok.text), False)
        except SeqSetError as exc:
            raise SearchSyntaxError(f"unknown search key {tok.text[:30]!r}") from exc


def parse_search(args: tuple[Token, ...]) -> tuple[Key, str]:
    """(search program, charset) from the arguments of SEARCH; SearchSyntaxError if malformed."""
    charset = "utf-8"
    if len(args) >= 2 and isinstance(args[0], Atom) and args[0].text.upper() == "CHARSET":
        name = (
            args[1].text
            if isinstance(args[1], Atom)
            else args[1].data.decode("ascii", "replace")
            if isinstance(args[1], Str)
            else ""
        )
        if name.upper() not in ("UTF-8", "US-ASCII"):
            raise LookupError(name)  # the caller answers NO [BADCHARSET]
        charset = "ascii" if name.upper() == "US-ASCII" else "utf-8"
        args = args[2:]
    parser = _Parser(args, charset)
    keys = []
    while parser.pos < len(args):
        keys.append(parser.key(0))
    if not keys:
        raise SearchSyntaxError("empty search program")
    return (keys[0] if len(keys) == 1 else And(tuple(keys))), charset


@dataclass(slots=True)
class Candidate:
    """One message as SEARCH sees it; header/message are read lazily and kept for this match."""

    seq: int
    uid: int
    largest_seq: int
    largest_uid: int
    recent: bool
    flags: Callable[[], frozenset[str]]
    size: Callable[[], int]
    internal_date: Callable[[], float]
    read_header: Callable[[], bytes]
    read_message: Callable[[], bytes]
    _header: bytes | None = None
    _message: bytes | None = None

    def header(self) -> bytes:
        if self._header is None:
            self._header = self._message if self._message is not None else self.read_header()
        return self._header

    def message(self) -> bytes:
        if self._message is None:
            self._message = self.read_message()
        return self._message


def _header_values(raw: bytes, name: str | None) -> list[str]:
    out = []
    end = len(raw)
    for f in iter_fields(raw, 0, end):
        if name is None or f.name.decode("latin-1").lower() == name:
            out.append(decode_header_value(field_value(raw, f)).casefold())
    return out


def _leaf_texts(raw: bytes) -> list[str]:
    root = parse_structure(raw)
    out: list[str] = []
    stack: list[Part] = [root]
    while stack:
        part = stack.pop()
        if part.children:
            stack.extend(part.children)
            continue
        if part.content_type not in ("text", "message"):
            continue
        data = raw[part.body_start : part.body_end]
        encoding = part.encoding.lower()
        try:
            if encoding == "base64":
                data = base64.b64decode(b"".join(data.split()), validate=False)
            elif encoding == "quoted-printable":
                data = binascii.a2b_qp(data)
        except (binascii.Error, ValueError):
            pass  # search the encoded text rather than fail the whole SEARCH
        charset = dict(part.params).get("charset", "utf-8")
        try:
            out.append(data.decode(charset, "replace").casefold())
        except LookupError:
            out.append(data.decode("utf-8", "replace").casefold())
    return out


# Charsets whose decoders map every ASCII octet to the same character (RFC 2046 4.1.2).
_ASCII_SAFE_CHARSET = re.compile(
    rb'charset="?(us-ascii|utf-8|iso-8859-\d{1,2}|windows-125\d)"?(?=[;\s]|$)'
)


def cannot_match(needle: str, raw: bytes, with_header: bool) -> bool:
    """True when BODY/TEXT `needle` (ASCII, case-folded) is sure not to match; a pre-filter.

    It may say False for a message that does not match, never True for one that
    does. The full path changes octets only by unfolding and RFC 2047 words in
    the header, quoted-printable and base64 in the body, charsets and Unicode
    case folding; the quick answer is given only where none of them can produce
    the needle: no base64, only ASCII-compatible charsets, quoted-printable
    decoded over the whole message, 8-bit text folded as UTF-8 when every
    charset is UTF-8 or US-ASCII. Checks run on a copy without CR, because
    header values are read with CR and LF removed.
    """
    want = needle.encode()
    low = raw.lower()
    flat = low.replace(b"\r", b"")
    if want in low or b"base64" in flat:
        return False
    charsets = _ASCII_SAFE_CHARSET.findall(flat)
    if len(charsets) != flat.count(b"charset"):
        return False  # an unusual charset (utf-7, utf-16, RFC 2231 form...): decode it
    if with_header:
        ends = [i for i in (raw.find(b"\n\n"), raw.find(b"\n\r\n")) if i >= 0]
        if not raw[: min(ends, default=len(raw))].isascii() or want in flat.replace(b"\n", b""):
            return False  # 8-bit header octets, or unfolding may join it (RFC 5322 2.2.3)
        if b"=?" in low:  # RFC 2047 words: the exact per-field test of the full path
            for f in iter_fields(raw, 0, len(raw)):
                value = field_value(raw, f)
                if b"=?" in value and needle in decode_header_value(value).casefold():
                    return False
    text = binascii.a2b_qp(raw) if b"quoted-printable" in flat else raw
    if text.isascii():
        return want not in text.lower()
    if any(c not in (b"utf-8", b"us-ascii") for c in charsets):
        return False  # e.g. Latin-1 "\xdf" case-folds to "ss"
    return needle not in text.decode("utf-8", "replace").casefold()


def _sent_date(msg: Candidate) -> datetime.date | None:
    values = _header_values(msg.header(), "date")
    if not values:
        return None
    parsed = email.utils.parsedate_tz(values[0][:200])
    if parsed is None:
        return None
    try:
        return datetime.date(parsed[0], parsed[1], parsed[2])
    except ValueError:
        return None


def _compare(day: datetime.date | None, key: str, want: datetime.date) -> bool:
    if day is None:
        return False
    if key.endswith("BEFORE"):
        return day < want
    if key.endswith("ON"):
        return day == want
    return day >= want


def matches(key: Key, msg: Candidate) -> bool:
    """Does the message satisfy the search key?"""
    if isinstance(key, And):
        return all(matches(k, msg) for k in key.keys)
    if isinstance(key, Or):
        return matches(key.left, msg) or matches(key.right, msg)
    if isinstance(key, Not):
        return not matches(key.key, msg)
    if isinstance(key, All):
        return True
    if isinstance(key, Flag):
        lowered = {f.lower() for f in msg.flags()}
        return (key.flag.lower() in lowered) == key.present
    if isinstance(key, Recent):
        seen = "\\Seen" in msg.flags()
        if key.kind == "RECENT":
            return msg.recent
        return msg.recent and not seen if key.kind == "NEW" else not msg.recent
    if isinstance(key, Size):
        return msg.size() > key.octets if key.larger else msg.size() < key.octets
    if isinstance(key, Positions):
        return msg.seq - 1 in key.positions
    if isinstance(key, Numbers):
        number, largest = (msg.uid, msg.largest_uid) if key.uid else (msg.seq, msg.largest_seq)
        return any(lo <= number <= hi for lo, hi in key.seqset.resolve(largest))
    if isinstance(key, Date):
        if key.key.startswith("SENT"):
            return _compare(_sent_date(msg), key.key, key.day)
        when = datetime.datetime.fromtimestamp(msg.internal_date(), datetime.UTC).date()
        return _compare(when, key.key, key.day)
    if isinstance(key, Header):
        values = _header_values(msg.header(), key.name)
        return any(key.text in v for v in values)  # an empty string matches a present field
    if key.text.isascii() and cannot_match(key.text, msg.message(), key.with_header):
        return False
    return body_matches(key, msg)


def body_matches(key: Body, msg: Candidate) -> bool:
    """BODY / TEXT the full way: every header value and text part decoded (no pre-filter)."""
    if key.with_header and any(key.text in v for v in _header_values(msg.header(), None)):
        return True
    return any(key.text in text for text in _leaf_texts(msg.message()))
