"""IMAP FETCH data built from a raw message: ENVELOPE, BODY/BODYSTRUCTURE, BODY[section].

Rules / theory:
- Pure functions over the raw message bytes (CRLF; bare LF tolerated). The
  structure comes from tinymail.mail.mime.parse_structure, which is linear
  and depth-capped, so the recursion in _body() is bounded by its max_depth.
- ENVELOPE strings are the raw header values, unfolded, never RFC 2047-decoded
  (RFC 3501 7.4.2). NUL, CR and LF are dropped from them: a string may not
  carry NUL, and a folded value has no line breaks.
- Types, subtypes, encodings and parameter names go out in upper case as in
  the RFC 3501 examples; parameter values keep their case.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from tinymail.mail.headers import (
    DEFAULT_TEXT,
    Address,
    Params,
    iter_fields,
    parse_address_list,
)
from tinymail.mail.mime import (
    Part,
    crlf_size,
    header_block_end,
    header_values,
    parse_structure,
    to_crlf,
)
from tinymail.mail.mime_quick import quick_structure
from tinymail.proto.imap.quoting import QUOTED_MAX, quoted_or_literal

_ENVELOPE_FIELDS = (
    b"date",
    b"subject",
    b"from",
    b"sender",
    b"reply-to",
    b"to",
    b"cc",
    b"bcc",
    b"in-reply-to",
    b"message-id",
)
_ENVELOPE_NAMES = frozenset(_ENVELOPE_FIELDS)


# What quoted_or_literal sends as a plain quoted string with nothing to drop or escape:
# the common case, answered by one regular-expression match.
_PLAIN_QUOTABLE = re.compile(rb'[^\x00\r\n\x80-\xff"\\]{0,%d}' % QUOTED_MAX)


def _string(data: bytes) -> bytes:
    if _PLAIN_QUOTABLE.fullmatch(data) is not None:
        return b'"' + data + b'"'
    return quoted_or_literal(data.translate(None, b"\x00\r\n"))


def _nstring(data: bytes | None) -> bytes:
    return b"NIL" if data is None else _string(data)


def _text(value: str) -> bytes:
    return _string(value.encode("utf-8", "surrogateescape"))


def _addresses(addresses: list[Address]) -> bytes:
    if not addresses:
        return b"NIL"
    # RFC 3501 7.4.2: (name adl mailbox host); adl (source route) is always NIL.
    items = (
        b"(%s NIL %s %s)" % (_nstring(a.name), _nstring(a.mailbox), _nstring(a.host))
        for a in addresses
    )
    return b"(" + b"".join(items) + b")"


# The address shapes nearly all mail has, `Name Words <local@domain>` and `local@domain`,
# each side plain dot-atoms (RFC 5322 3.2.3) with the atom rule of headers._ATOM. Anything
# else (quotes, comments, groups, routes, literals, odd spacing) goes to the general parser,
# which gives these shapes the same result.
_ATOM_CHARS = rb'[^()<>\[\]:;@\\,."\s]+'
_DOT_ATOM = _ATOM_CHARS + rb"(?:\." + _ATOM_CHARS + rb")*"
# The phrase is atoms separated by WSP, written so that no text can be split two ways:
# the match stays linear (no backtracking blow-up on a long phrase without "<").
_SIMPLE_ADDRESS = re.compile(
    rb"[ \t]*(?:((?:"
    + _ATOM_CHARS
    + rb"(?:[ \t]+"
    + _ATOM_CHARS
    + rb")*[ \t]*)?)<("
    + _DOT_ATOM
    + rb")@("
    + _DOT_ATOM
    + rb")>|("
    + _DOT_ATOM
    + rb")@("
    + _DOT_ATOM
    + rb"))[ \t]*"
)
_NOT_SIMPLE = re.compile(rb'[()\[\]:;\\"]')


def _address_list(value: bytes) -> list[Address]:
    """parse_address_list(value), with a fast path for lists of simple addresses."""
    if not value:
        return []
    if _NOT_SIMPLE.search(value) is None:
        out = []
        for item in value.split(b","):
            m = _SIMPLE_ADDRESS.fullmatch(item)
            if m is None:
                if item.strip(b" \t"):
                    return parse_address_list(value)
                continue  # an empty list element is skipped, as the general parser does
            if m.group(2) is not None:
                name = b" ".join(m.group(1).split()) or None
                out.append(Address(name, m.group(2), m.group(3)))
            else:
                out.append(Address(None, m.group(4), m.group(5)))
        return out
    return parse_address_list(value)


def _envelope(raw: bytes, start: int, end: int) -> bytes:
    return _envelope_of(header_values(raw, start, end, _ENVELOPE_NAMES))


_CACHED_ADDRESS_FIELD = 256  # octets: shorter address fields are remembered (_address_field)


@functools.lru_cache(maxsize=1024)
def _address_field_cached(value: bytes) -> bytes:
    return _addresses(_address_list(value))


def _address_field(value: bytes | None) -> bytes:
    """An address field's ENVELOPE list (NIL when absent). Senders and recipients repeat
    from message to message, so short values are serialized once."""
    if value is None:
        return b"NIL"
    if len(value) <= _CACHED_ADDRESS_FIELD:
        return _address_field_cached(value)
    return _addresses(_address_list(value))


def _envelope_of(values: dict[bytes, bytes]) -> bytes:
    """ENVELOPE from header_values of (at least) the _ENVELOPE_NAMES."""
    get = values.get
    from_ = _address_field(get(b"from"))
    # RFC 3501 7.4.2: absent or empty Sender and Reply-To take the From value.
    sender = _address_field(get(b"sender"))
    reply_to = _address_field(get(b"reply-to"))
    return b"(%s %s %s %s %s %s %s %s %s %s)" % (
        _nstring(get(b"date")),
        _nstring(get(b"subject")),
        from_,
        from_ if sender == b"NIL" else sender,
        from_ if reply_to == b"NIL" else reply_to,
        _address_field(get(b"to")),
        _address_field(get(b"cc")),
        _address_field(get(b"bcc")),
        _nstring(get(b"in-reply-to")),
        _nstring(get(b"message-id")),
    )


def envelope(raw: bytes) -> bytes:
    """The ENVELOPE parenthesized list of the message `raw`, serialized."""
    return _envelope(raw, 0, header_block_end(raw))


def _params(params: Params) -> bytes:
    if not params:
        return b"NIL"
    return b"(" + b" ".join(_text(k.upper()) + b" " + _text(v) for k, v in params) + b")"


def _extension(part: Part) -> bytes:
    """body-fld-dsp SP body-fld-lang SP body-fld-loc (RFC 3501 7.4.2, 9)."""
    if part.disposition is None:
        dsp = b"NIL"
    else:
        dsp = b"(%s %s)" % (_text(part.disposition.upper()), _params(part.disposition_params))
    # Never an empty list: "()" here crashed Dovecot's own parser (commit dd51ae09a8).
    lang = b"(" + b" ".join(_text(x) for x in part.language) + b")" if part.language else b"NIL"
    return b"%s %s %s" % (dsp, lang, _nstring(part.location))


def _body(raw: bytes, part: Part, extensible: bool) -> bytes:
    if part.is_multipart:
        # RFC 3501 9: body-type-mpart needs at least one body; an empty multipart
        # gets an empty text/plain part, as Dovecot sends.
        at = part.body_start
        children = part.children or (Part(at, at, at, at, *DEFAULT_TEXT, ()),)
        out = b"(" + b"".join(_body(raw, c, extensible) for c in children)
        out += b" " + _text(part.content_subtype.upper())
        if extensible:  # body-ext-mpart
            out += b" " + _params(part.params) + b" " + _extension(part)
        return out + b")"
    if (
        not part.is_message
        and part.content_id is None
        and part.description is None
        and part.location is None
        and sum(len(v) for _, v in (*part.params, *part.disposition_params)) < _CACHED_FIELDS
    ):
        # The fields around size and lines repeat from part to part: built once each.
        head, tail = _leaf_frame(
            part.content_type,
            part.content_subtype,
            part.params,
            part.encoding,
            part.md5,
            part.disposition,
            part.disposition_params,
            part.language,
            extensible,
        )
        if part.content_type == "text":
            return b"%s %d %d%s" % (head, part.size, part.lines, tail)
        return b"%s %d%s" % (head, part.size, tail)
    return _leaf_body(raw, part, extensible)


_CACHED_FIELDS = 512  # parameter octets: parts with fewer have their frame cached


@functools.lru_cache(maxsize=512)
def _leaf_frame(
    content_type: str,
    subtype: str,
    params: Params,
    encoding: str,
    md5: bytes | None,
    disposition: str | None,
    disposition_params: Params,
    language: tuple[str, ...],
    extensible: bool,
) -> tuple[bytes, bytes]:
    """_leaf_head and _leaf_tail of a part with these fields (and no ID, description or
    location)."""
    part = Part(0, 0, 0, 0, content_type, subtype, params, (), encoding=encoding, md5=md5,
                disposition=disposition, disposition_params=disposition_params,
                language=language)  # fmt: skip
    return _leaf_head(part), _leaf_tail(part, extensible)


def _leaf_head(part: Part) -> bytes:
    """body-type-1part up to body-fld-octets (RFC 3501 9), with the opening parenthesis."""
    params = part.params
    if part.content_type == "text" and not any(k == "charset" for k, _ in params):
        params = (("charset", "us-ascii"), *params)  # RFC 2045 5.2 default, as Dovecot sends
    return b"(%s %s %s %s %s %s" % (
        _text(part.content_type.upper()),
        _text(part.content_subtype.upper()),
        _params(params),
        _nstring(part.content_id),
        _nstring(part.description),
        _text(part.encoding.upper()),
    )


def _leaf_tail(part: Part, extensible: bool) -> bytes:
    """body-ext-1part when extensible, and the closing parenthesis."""
    if extensible:
        return b" " + _nstring(part.md5) + b" " + _extension(part) + b")"
    return b")"


def _leaf_body(raw: bytes, part: Part, extensible: bool) -> bytes:
    """body-type-1part of a leaf (RFC 3501 9), built whole."""
    fields = _leaf_head(part) + b" %d" % part.size
    if part.is_message:  # body-type-msg: envelope body body-fld-lines
        inner = part.children[0]
        fields += b" %s %s %d" % (
            _envelope(raw, inner.header_start, inner.header_end),
            _body(raw, inner, extensible),
            part.lines,
        )
    elif part.content_type == "text":  # body-type-text: body-fld-lines
        fields += b" %d" % part.lines
    return fields + _leaf_tail(part, extensible)


def bodystructure(raw: bytes, *, extensible: bool) -> bytes:
    """BODYSTRUCTURE (extensible=True) or BODY (False) of `raw`, serialized."""
    return _body(raw, parse_structure(raw), extensible)


def derive(raw: bytes, kinds: str) -> dict[str, bytes]:
    """Several cacheable items of one message from one parse, keyed by kind: "E" ENVELOPE,
    "B" BODYSTRUCTURE, "N" BODY, "S" RFC822.SIZE (decimal). Each value equals what
    envelope(), bodystructure() and crlf_size() give; a cold FETCH of many messages pays
    for one structure parse per message instead of one per item."""
    out: dict[str, bytes] = {}
    values = None
    if "B" in kinds or "N" in kinds:
        # The common shapes by the quick scanner, with the top-level ENVELOPE fields from
        # the same header scan; anything else by the general parser.
        quick = quick_structure(raw, _ENVELOPE_NAMES)
        if quick is None:
            root = parse_structure(raw)
        else:
            root, values = quick
        header_end = root.header_end  # the same rule as header_block_end (mime.py)
        if "B" in kinds:
            out["B"] = _body(raw, root, True)
        if "N" in kinds:
            out["N"] = _body(raw, root, False)
    else:
        header_end = header_block_end(raw)
    if "E" in kinds:
        if values is None:
            values = header_values(raw, 0, header_end, _ENVELOPE_NAMES)
        out["E"] = _envelope_of(values)
    if "S" in kinds:
        out["S"] = b"%d" % crlf_size(raw)
    return out


# -- BODY[section] (RFC 3501 6.4.5) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Section:
    """A parsed section-spec: part numbers, then an optional text specifier."""

    part: tuple[int, ...] = ()
    text: str | None = None  # "HEADER" | "HEADER.FIELDS" | "HEADER.FIELDS.NOT" | "TEXT" | "MIME"
    fields: tuple[str, ...] = ()


def _select(root: Part, numbers: tuple[int, ...]) -> Part | None:
    """Follow part numbers from the message `root` (RFC 3501 6.4.5)."""
    cur, is_message = root, True
    for number in numbers:
        if cur.is_message and not is_message:  # a message/rfc822 part: enter its message
            cur, is_message = cur.children[0], True
        if cur.is_multipart:
            if not 1 <= number <= len(cur.children):
                return None
            cur = cur.children[number - 1]
        elif is_message and number == 1:
            pass  # a non-multipart message has only part 1: its body
        else:
            return None
        is_message = False
    return cur


def _header_fields(raw: bytes, part: Part, names: tuple[str, ...], keep: bool) -> bytes:
    wanted = {n.lower().encode("utf-8", "surrogateescape") for n in names}
    out: list[bytes] = []
    for f in iter_fields(raw, part.header_start, part.header_end):
        if f.name and (f.name.lower() in wanted) == keep:
            line = raw[f.start : f.end]
            out.append(line if line.endswith(b"\n") else line + b"\r\n")
    return b"".join(out) + b"\r\n"  # RFC 3501 6.4.5: the blank line is included


def section_bytes(raw: bytes, section: Section) -> bytes:
    """The BODY[section] content (before any <origin.size> partial); b"" when absent."""
    root = parse_structure(raw)
    target = _select(root, section.part)
    if target is None:
        return b""
    text = section.text
    if text is None:
        if not section.part:
            return to_crlf(raw)
        return to_crlf(raw[target.body_start : target.body_end])
    if text == "MIME":
        if not section.part:
            return b""
        return to_crlf(raw[target.header_start : target.header_end])
    if section.part:  # HEADER*/TEXT of a part address its encapsulated message
        if not target.is_message:
            return b""
        target = target.children[0]
    if text == "TEXT":
        return to_crlf(raw[target.body_start : target.body_end])
    if text == "HEADER":
        return to_crlf(raw[target.header_start : target.header_end])
    if text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        return to_crlf(_header_fields(raw, target, section.fields, text == "HEADER.FIELDS"))
    return b""
