"""The MIME structure of the common message shapes, found faster than by mime.parse_structure.

Rules / theory:
- quick_structure(raw) gives exactly the Part tree parse_structure(raw) gives, or None
  when the message is not of a shape it knows; the caller then runs the general parser.
  Known shapes: bare LF line ends (as stored; no CR anywhere), and either a single
  part (anything but message/rfc822) or a multipart (not digest) whose parts are all
  single parts. Nearly all stored mail is one of these.
- Why the answers agree: with no nested container, only the top multipart's boundary B
  is ever active, so the general scanner's delimiter lines are exactly the lines that
  start with "--" + B and pass mime's _match test (reproduced here as it is, window and
  trailing-whitespace rules included). A part's header block ends where
  header_block_end says, as long as none of its lines starts with "--" (such a line
  could be a delimiter; then the message goes to the general parser) and it ends with
  the empty line. Field values come from the same functions (header_values,
  block_fields, parse_content_type, make_part), so they cannot differ.
- Also returned: the top-level header values for the extra names asked for (ENVELOPE),
  found by the same one scan of the header block as the MIME fields.
- Property tests (tests/mail/test_mime_quick.py) hold the claim on generated messages.
"""

from __future__ import annotations

import re

from tinymail.mail.headers import DEFAULT_TEXT, Params, parse_content_type
from tinymail.mail.mime import (
    _WANTED,
    NO_FIELDS,
    Fields,
    Part,
    block_fields,
    header_block_end,
    header_values,
    make_part,
    part_fields,
)

MAX_QUICK_PARTS = 1000  # more parts than this go to the general parser (its caps apply)
_BOUNDARY_WINDOW = 256  # as mime._BOUNDARY_WINDOW

# Content-Type values of the plain shape `type/subtype; name=token; name="quoted"`: the
# general parser gives them (lowercased type, subtype and names; values as written).
_TOKEN = rb"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+"
_PARAM = rb'[ \t]*([A-Za-z0-9-]+)[ \t]*=[ \t]*(?:"([^"\\;]*)"|([^\s;"()\\]+))[ \t]*'
_PLAIN_TYPE = re.compile(
    rb"[ \t]*(" + _TOKEN + rb")[ \t]*/[ \t]*(" + _TOKEN + rb")[ \t]*((?:;" + _PARAM + rb")*)"
)
_PARAM_RE = re.compile(rb";" + _PARAM)
_MAX_PLAIN_PARAMS = 128  # below headers._MAX_PARAMS, where the general parser stops


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def content_type(value: bytes) -> tuple[str, str, Params]:
    """parse_content_type(value), by one match when the value has the plain shape."""
    m = _PLAIN_TYPE.fullmatch(value)
    if m is None or value.count(b";") >= _MAX_PLAIN_PARAMS:
        return parse_content_type(value)
    params: dict[str, str] = {}
    rest = m.group(3)
    if rest:
        for p in _PARAM_RE.finditer(rest):
            name = _text(p.group(1).lower())
            if name not in params:  # the first of a repeated name counts (as _join_2231)
                quoted = p.group(2)
                params[name] = _text(p.group(3) if quoted is None else quoted)
    return _text(m.group(1)).lower(), _text(m.group(2)).lower(), tuple(params.items())


def _counts(raw: bytes, start: int, end: int) -> tuple[int, int]:
    """(size, lines) of a leaf body in CRLF form, for LF-only raw (as mime._freeze)."""
    newlines = raw.count(b"\n", start, end)
    return end - start + newlines, newlines + (1 if end > start and raw[end - 1] != 10 else 0)


def _delimiter(raw: bytes, line: int, boundary: bytes) -> int:
    """mime._Scanner._match for the one active boundary: 1 open, 2 close, 0 neither."""
    eol = raw.find(b"\n", line, line + _BOUNDARY_WINDOW)
    if eol < 0:
        if line + _BOUNDARY_WINDOW < len(raw):
            return 0
        eol = len(raw)
    text = raw[line + 2 : eol].rstrip(b" \t\r")
    if text == boundary:
        return 1
    if text.endswith(b"--") and text[:-2] == boundary:
        return 2
    return 0


def _next_delimiter(raw: bytes, pos: int, boundary: bytes) -> tuple[int, int]:
    """(line start, kind) of the first delimiter line at or after the line start `pos`."""
    marker = b"--" + boundary
    if raw.startswith(marker, pos):
        kind = _delimiter(raw, pos, boundary)
        if kind:
            return pos, kind
    find = raw.find
    at = pos
    while True:
        at = find(b"\n" + marker, at) + 1
        if at == 0:
            return -1, 0
        kind = _delimiter(raw, at, boundary)
        if kind:
            return at, kind


def _part_header(raw: bytes, start: int) -> tuple[int, Fields, tuple[str, str, Params]]:
    """(header end, part fields, type) of a part's header block at `start`; end -1 when the
    block is not one the quick path may take (see the module comment)."""
    end = header_block_end(raw, start)
    if end == start or raw[end - 1] != 10 or (end - start > 1 and raw[end - 2] != 10):
        return -1, NO_FIELDS, DEFAULT_TEXT  # not ended by the empty line
    if raw.startswith(b"--", start) or raw.find(b"\n--", start, end) >= 0:
        return -1, NO_FIELDS, DEFAULT_TEXT  # a line that could be a delimiter
    parsed, fields = block_fields(raw, start, end)
    return end, fields, DEFAULT_TEXT if parsed is None else parsed


def quick_structure(raw: bytes, extra: frozenset[bytes]) -> tuple[Part, dict[bytes, bytes]] | None:
    """(parse_structure(raw), top-level header_values for _WANTED and `extra`), or None."""
    if b"\r" in raw:
        return None
    n = len(raw)
    hend = header_block_end(raw)
    values = header_values(raw, 0, hend, _WANTED | extra)
    value = values.get(b"content-type")
    ctype = DEFAULT_TEXT if value is None else content_type(value)
    kind, subtype, params = ctype
    if kind == "message" and subtype == "rfc822":
        return None
    boundary = dict(params).get("boundary") if kind == "multipart" else None
    if not boundary:
        if kind == "multipart":
            ctype = DEFAULT_TEXT  # no usable boundary: opaque text (as _end_header)
        size, lines = _counts(raw, hend, n)
        return make_part(0, hend, hend, n, ctype, part_fields(values), [], size, lines), values
    if subtype == "digest":
        return None
    b = boundary.encode("utf-8", "surrogateescape")
    children: list[Part] = []
    line, kind_of = _next_delimiter(raw, hend, b)
    while kind_of == 1:
        eol = raw.find(b"\n", line)
        start = n if eol < 0 else eol + 1
        if len(children) >= MAX_QUICK_PARTS:
            return None
        pend, fields, ptype = _part_header(raw, start)
        if pend < 0:
            return None
        if ptype[0] == "multipart":
            if dict(ptype[2]).get("boundary"):
                return None  # nested multipart: the general parser
            ptype = DEFAULT_TEXT
        elif ptype[0] == "message" and ptype[1] == "rfc822":
            return None
        line, kind_of = _next_delimiter(raw, pend, b)
        if kind_of:
            delim = line - 1 if line > 0 and raw[line - 1] == 10 else line
            end = max(pend, delim)
        else:
            end = n
        size, lines = _counts(raw, pend, end)
        children.append(make_part(start, pend, pend, end, ptype, fields, [], size, lines))
    if not children:
        return None  # no part at all: the general parser supplies the grammar's one
    return make_part(0, hend, hend, n, ctype, part_fields(values), children, 0, 0), values
