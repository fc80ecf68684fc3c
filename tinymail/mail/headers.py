"""Bounded readers for RFC 5322 header fields in raw message bytes.

Rules / theory:
- A header block is a run of lines ended by the first empty line (RFC 5322 2.1).
  A line starting with SP or HTAB continues the previous field (2.2.3, folding);
  a field's name is everything before the first colon of its first line (2.2).
- Everything works on offsets into the caller's bytes and is linear in the
  input. Each value is read only up to FIELD_CAP octets, so a 1 MB header line
  costs one slice, never a quadratic parse (CPython's `email` with
  policy.default needs hundreds of MB for ~100 KB of encoded-words).
- Address lists (RFC 5322 3.4) are parsed leniently into the parts an IMAP
  ENVELOPE needs; groups become start/end markers as RFC 3501 7.4.2 requires.
- Values stay raw bytes (no RFC 2047 decoding) except in decode_header_value().
"""

from __future__ import annotations

import binascii
import codecs
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass

# Address lists live in addresses.py (light enough for sendmail -t); still this module's API.
from tinymail.mail.addresses import FIELD_CAP as FIELD_CAP
from tinymail.mail.addresses import MISSING_DOMAIN as MISSING_DOMAIN
from tinymail.mail.addresses import MISSING_MAILBOX as MISSING_MAILBOX
from tinymail.mail.addresses import Address as Address
from tinymail.mail.addresses import parse_address_list as parse_address_list


@dataclass(frozen=True, slots=True)
class Field:
    """One header field located in raw bytes (offsets into the raw message)."""

    name: bytes  # as written, trailing SP/HTAB removed; b"" for a line without colon
    start: int  # first octet of the field's first line
    value_start: int  # just after the colon (== end when there is no colon)
    end: int  # just after the field's last line break (or the block end)


def iter_fields(raw: bytes, start: int, end: int) -> Iterator[Field]:
    """Yield the fields of the header block raw[start:end], stopping at an empty line."""
    pos = start
    cur = -1  # start of the field being collected
    while pos < end:
        nl = raw.find(b"\n", pos, end)
        nxt = end if nl < 0 else nl + 1
        if nl == pos or (nl == pos + 1 and raw[pos] == 13):
            break  # RFC 5322 2.1: the empty line ends the header block
        if raw[pos] not in (32, 9) or cur < 0:  # RFC 5322 2.2.3: SP/HTAB continues a field
            if cur >= 0:
                yield _field(raw, cur, pos)
            cur = pos
        pos = nxt
    if cur >= 0:
        yield _field(raw, cur, pos)


def _field(raw: bytes, start: int, end: int) -> Field:
    line_end = raw.find(b"\n", start, end)
    colon = raw.find(b":", start, end if line_end < 0 else line_end)
    if colon < 0 or raw[start] in (32, 9):
        return Field(b"", start, end, end)
    return Field(raw[start:colon].rstrip(b" \t"), start, colon + 1, end)


def field_value(raw: bytes, field: Field) -> bytes:
    """The unfolded value (CR/LF removed, outer whitespace stripped), capped at FIELD_CAP."""
    value = raw[field.value_start : min(field.end, field.value_start + FIELD_CAP)]
    return value.replace(b"\r", b"").replace(b"\n", b"").strip(b" \t")


_FIELD_END = re.compile(rb"\n(?![ \t])")  # the next line that is not a fold (2.2.3)


@functools.lru_cache(maxsize=32)
def _names_pattern(names: frozenset[bytes]) -> re.Pattern[bytes]:
    # One alternation instead of one find per name: the block is scanned once.
    alts = b"|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    return re.compile(rb"\n(" + alts + rb")[ \t]*:")  # RFC 5322 2.2 (obs: WSP before colon)


def first_values(raw: bytes, start: int, end: int, names: frozenset[bytes]) -> dict[bytes, bytes]:
    """Map each lowercased name in `names` to the value of its first field in raw[start:end].

    `start` must be a line start and `end` the end of the header block. The
    names are found by one regular-expression scan of a lowercased copy, so
    unwanted fields cost no Python work.
    """
    block = b"\n" + raw[start:end].lower()  # block[i] == "\n" <=> raw[start + i] starts a line
    found: dict[bytes, bytes] = {}
    for m in _names_pattern(names).finditer(block):
        name = m.group(1)
        if name in found:
            continue
        colon = start + m.end() - 1  # just after the colon in raw
        stop = _FIELD_END.search(raw, colon, end)
        field_end = stop.start() + 1 if stop else end
        found[name] = field_value(raw, Field(name, start + m.start(), colon, field_end))
        if len(found) == len(names):
            break
    return found


# -- RFC 2047 encoded-words (for SEARCH and display, never for ENVELOPE) -------------

# RFC 2047 2: encoded-word = "=?" charset "?" encoding "?" encoded-text "?=".
# The classes stop at "?" so each scan ends at the next "?": linear overall.
_ENCODED_WORD = re.compile(rb"=\?([^?\s]{1,64})\?([bBqQ])\?([^?\s]*)\?=")
_Q_HEX = re.compile(rb"=([0-9A-Fa-f]{2})")


def decode_header_value(value: bytes) -> str:
    """Decode RFC 2047 encoded-words in an (unfolded or folded) header value.

    Bounded: only the first FIELD_CAP octets are read. Unknown charsets and bad
    encodings decode with U+FFFD replacements instead of raising. Whitespace
    between two adjacent encoded-words is dropped (RFC 2047 6.2).
    """
    text = value[:FIELD_CAP].replace(b"\r", b"").replace(b"\n", b"")
    out: list[str] = []
    pos = 0
    last_was_word = False
    for m in _ENCODED_WORD.finditer(text):
        between = text[pos : m.start()]
        if not (last_was_word and between.strip(b" \t") == b""):
            out.append(between.decode("utf-8", "replace"))
        out.append(_decode_word(m.group(1), m.group(2), m.group(3)))
        pos = m.end()
        last_was_word = True
    out.append(text[pos:].decode("utf-8", "replace"))
    return "".join(out)


def _decode_word(charset: bytes, encoding: bytes, payload: bytes) -> str:
    if encoding in (b"b", b"B"):
        try:
            data = binascii.a2b_base64(payload + b"=" * (-len(payload) % 4))
        except binascii.Error:
            return payload.decode("ascii", "replace")
    else:  # RFC 2047 4.2: "_" is SP, "=XX" is an octet
        data = _Q_HEX.sub(lambda h: bytes([int(h.group(1), 16)]), payload.replace(b"_", b" "))
    name = charset.split(b"*", 1)[0].decode("ascii", "replace")  # RFC 2231 5: charset*lang
    try:
        if not codecs.lookup(name)._is_text_encoding:
            name = "utf-8"
    except LookupError:
        name = "utf-8"
    try:
        return data.decode(name, "replace")
    except (LookupError, ValueError):  # stateful/odd codecs; stay total
        return data.decode("utf-8", "replace")


# -- RFC 2045 5.1 / RFC 2231 structured MIME values ----------------------------------

Params = tuple[tuple[str, str], ...]
# RFC 2045 5.2: a missing or unparsable Content-Type means text/plain; charset=us-ascii.
DEFAULT_TEXT: tuple[str, str, Params] = ("text", "plain", (("charset", "us-ascii"),))

_MAX_PARAMS = 256
_TOKEN = rb"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+"  # RFC 2045 5.1: CHAR except SP, CTL, tspecials
_TYPE = re.compile(rb"[ \t]*(" + _TOKEN + rb")[ \t]*/[ \t]*(" + _TOKEN + rb")[ \t]*")
_BARE = re.compile(rb"[ \t]*(" + _TOKEN + rb")[ \t]*")
_QUOTED = re.compile(rb'((?:[^"\\]|\\.)*)"?', re.S)
_QUOTED_PAIR = re.compile(rb"\\(.)", re.S)
_SECTION = re.compile(r"(.*?)\*([0-9]{1,3})(\*?)")  # RFC 2231 3: name*N or name*N*
_NOT_ATTRIBUTE_CHAR = re.compile(rb"[^A-Za-z0-9!#$&+\-.^_`|~]")  # RFC 2231 7


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _split_params(value: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """Split `head; a=b; c="d"` into head and (lowercased name, value) pairs, leniently."""
    semi = value.find(b";")
    if semi < 0:
        return value, []
    head = value[:semi]
    params: list[tuple[bytes, bytes]] = []
    i, n = semi + 1, len(value)
    while i < n and len(params) < _MAX_PARAMS:
        semi = value.find(b";", i)
        stop = n if semi < 0 else semi
        eq = value.find(b"=", i, stop)
        if eq < 0:  # "; junk" without "=": skip it
            i = stop + 1
            continue
        name = value[i:eq].strip(b" \t").lower()
        j = eq + 1
        while j < n and value[j] in b" \t":
            j += 1
        if j < n and value[j] == 0x22:  # quoted-string (RFC 822 3.3), may contain ";"
            m = _QUOTED.match(value, j + 1)
            assert m is not None  # the pattern matches the empty string
            val = _QUOTED_PAIR.sub(rb"\1", m.group(1))
            semi = value.find(b";", m.end())
            i = n if semi < 0 else semi + 1
        else:  # token; real mail also has unquoted spaces, so take up to ";"
            val = value[j:stop].strip(b" \t")
            i = stop + 1
        if name:
            params.append((name, val))
    return head, params


def _join_2231(pairs: list[tuple[bytes, bytes]]) -> Params:
    """RFC 2231 3: join name*0, name*1... in order; an extended join is named "name*".

    As Dovecot does, the value of an extended parameter stays percent-encoded
    (charset'language'text); clients decode it.
    """
    simple: dict[str, str] = {}
    sections: dict[str, dict[int, tuple[bytes, bool]]] = {}
    order: list[tuple[bool, str]] = []
    for raw_name, val in pairs:
        name = _text(raw_name)
        m = _SECTION.fullmatch(name)
        if m is None:
            if name not in simple:
                simple[name] = _text(val)
                order.append((False, name))
            continue
        base = m.group(1)
        if base not in sections:
            sections[base] = {}
            order.append((True, base))
        sections[base].setdefault(int(m.group(2)), (val, bool(m.group(3))))
    out: list[tuple[str, str]] = []
    for is_section, name in order:
        if not is_section:
            out.append((name, simple[name]))
            continue
        segs = sections[name]
        parts: list[tuple[bytes, bool]] = []
        while len(parts) in segs:  # RFC 2231 3: numbering starts at 0, no gaps
            parts.append(segs[len(parts)])
        if not parts:
            continue
        if not any(extended for _, extended in parts):
            out.append((name, _text(b"".join(v for v, _ in parts))))
            continue
        joined = b"".join(
            v if ext else _NOT_ATTRIBUTE_CHAR.sub(lambda c: b"%%%02X" % c.group()[0], v)
            for v, ext in parts
        )
        out.append((name + "*", _text(joined if parts[0][1] else b"''" + joined)))
    return tuple(out)


def parse_content_type(value: bytes) -> tuple[str, str, Params]:
    """(type, subtype, params) of a Content-Type value; DEFAULT_TEXT when invalid."""
    head, pairs = _split_params(value)
    m = _TYPE.fullmatch(head.split(b"(", 1)[0])
    if m is None:
        return DEFAULT_TEXT
    return _text(m.group(1)).lower(), _text(m.group(2)).lower(), _join_2231(pairs)


def parse_disposition(value: bytes) -> tuple[str, Params] | None:
    """(disposition type, params) of a Content-Disposition value (RFC 2183), or None."""
    head, pairs = _split_params(value)
    m = _BARE.fullmatch(head.split(b"(", 1)[0])
    if m is None:
        return None
    return _text(m.group(1)).lower(), _join_2231(pairs)


def parse_list(value: bytes) -> tuple[str, ...]:
    """Comma-separated tokens, e.g. Content-Language (RFC 3282 2); comments dropped."""
    items = (item.split(b"(", 1)[0].strip(b" \t") for item in value.split(b",", _MAX_PARAMS))
    return tuple(_text(item) for item in items if item)
