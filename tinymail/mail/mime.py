"""Bounded MIME structure parser over raw message bytes.

Rules / theory:
- One forward pass, no recursion. The scanner keeps `chain`, the open entities
  from the message down to the innermost one, and `active`, the boundaries of
  open multiparts (RFC 2046 5.1.1). Body text is skipped with bytes.find to
  the next line starting with "--", so the cost is linear in the input and
  does not grow with the number of lines.
- A boundary line of an enclosing multipart also ends every entity nested
  inside it (RFC 2046 5.1.2), which is what makes a missing close delimiter
  harmless. The CRLF before a delimiter belongs to the delimiter (5.1.1).
- A header block ends at the empty line, at a boundary line, or at the first
  line that is neither a field nor a continuation (as CPython's feedparser
  does: that line starts the body).
- Depth is capped (Dovecot's MESSAGE_PARSER_DEFAULT_MAX_NESTED_MIME_PARTS is
  100) and so is the total part count (10 000): a container beyond either cap
  is parsed as a text/plain leaf.
- Offsets index the caller's bytes; sizes and line counts describe the CRLF
  form, which is what IMAP serves.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import NamedTuple

from tinymail.mail.headers import (
    DEFAULT_TEXT,
    FIELD_CAP,
    Params,
    parse_content_type,
    parse_disposition,
    parse_list,
)


class Part(NamedTuple):
    """One MIME entity. Offsets index the original raw bytes. (Immutable; a NamedTuple
    rather than a frozen dataclass because a cold FETCH builds tens of thousands of them
    and a frozen dataclass's __init__ costs several times a tuple's.)"""

    header_start: int
    header_end: int  # header block incl. the blank line (if there is one)
    body_start: int
    body_end: int
    content_type: str  # lowercased; text/plain when absent or invalid (RFC 2045 5.2)
    content_subtype: str
    params: Params  # lowercased names, RFC 2231 continuations joined
    children: tuple[Part, ...]  # multipart children, or the message inside message/rfc822
    content_id: bytes | None = None
    description: bytes | None = None
    encoding: str = "7bit"  # Content-Transfer-Encoding as written (RFC 2045 6.1 default)
    disposition: str | None = None  # lowercased
    disposition_params: Params = ()
    language: tuple[str, ...] = ()
    location: bytes | None = None
    md5: bytes | None = None
    size: int = 0  # body octets in CRLF form
    lines: int = 0  # body lines

    @property
    def is_multipart(self) -> bool:
        """True for a multipart whose children were parsed."""
        return self.content_type == "multipart"

    @property
    def is_message(self) -> bool:
        """True for a message/rfc822 part (its one child is the encapsulated message)."""
        return self.content_type == "message" and self.content_subtype == "rfc822"


# content-id, description, encoding, disposition, disposition params, language, location, md5
Fields = tuple[
    bytes | None, bytes | None, str, str | None, Params, tuple[str, ...], bytes | None, bytes | None
]
NO_FIELDS: Fields = (None, None, "7bit", None, (), (), None, None)


_WANTED = frozenset(
    (
        b"content-type",
        b"content-transfer-encoding",
        b"content-id",
        b"content-description",
        b"content-disposition",
        b"content-language",
        b"content-location",
        b"content-md5",
    )
)

# A line that continues a header block: a fold (RFC 5322 2.2.3) or "name:" (2.2).
_HEADER_LINE = re.compile(rb"[\t ]|[!-9;-~]*:")
# Next line that may end a header block: it starts with "--" or is not a header line.
_HEADER_STOP = re.compile(rb"\n(?:(?=--)|(?![\t ]|[!-9;-~]*:))")
_BOUNDARY_WINDOW = 256  # a delimiter line longer than this cannot match (boundary <= 70, 5.1.1)


@dataclass(slots=True)
class _Node:
    """Mutable entity under construction."""

    header_start: int
    depth: int
    in_digest: bool  # RFC 2046 5.1.5: parts of multipart/digest default to message/rfc822
    header_end: int = -1
    body_start: int = -1
    body_end: int = -1
    fields: Fields = NO_FIELDS
    ctype: tuple[str, str, Params] = DEFAULT_TEXT
    children: list[_Node] = field(default_factory=list)
    boundary: bytes | None = None  # set while this multipart's boundary is active
    shadowed: int | None = None  # chain index of an outer multipart with the same boundary


class _Scanner:
    """The single forward pass; see the module comment."""

    def __init__(self, raw: bytes, max_depth: int, max_parts: int) -> None:
        self.raw = raw
        self.max_depth = max_depth
        self.max_parts = max_parts
        self.root = _Node(0, 0, False)
        self.nodes = [self.root]
        self.chain = [self.root]
        self.active: dict[bytes, int] = {}  # boundary -> chain index of its multipart

    def run(self) -> _Node:
        raw, n = self.raw, len(self.raw)
        pos, in_header, line_start = 0, True, True
        while pos < n:
            if in_header:
                pos, in_header = self._header_step(pos)
                line_start = True
                continue
            if not self.active:
                break  # no open multipart: the rest is body
            if line_start and raw.startswith(b"--", pos):
                cand = pos
            else:
                cand = raw.find(b"\n--", pos) + 1
                if cand == 0:
                    break
            hit = self._match(cand)
            if hit is None:
                pos, line_start = cand, False  # the next search starts past this "--"
                continue
            pos, in_header = self._delimiter(cand, *hit)
            line_start = True
        node = self.chain[-1]
        if in_header:
            self._end_header(node, n, n)
        for node in self.chain:
            node.body_end = n
        return self.root

    def _header_step(self, pos: int) -> tuple[int, bool]:
        """Examine the line at `pos` inside a header block; return (next pos, still in header)."""
        raw, node = self.raw, self.chain[-1]
        if self.active and raw.startswith(b"--", pos):
            hit = self._match(pos)
            if hit is not None:
                return self._delimiter(pos, *hit)
        if raw.startswith(b"\r\n", pos) or raw.startswith(b"\n", pos):  # RFC 5322 2.1
            after = pos + (2 if raw[pos] == 13 else 1)
            self._end_header(node, after, after)
            return after, self._open_container(node)
        if _HEADER_LINE.match(raw, pos) is None:  # not a field: the body starts here
            self._end_header(node, pos, pos)
            return pos, self._open_container(node)
        m = _HEADER_STOP.search(raw, pos)
        if m is None:
            return len(raw), True
        return m.start() + 1, True

    def _match(self, line: int) -> tuple[int, bool] | None:
        """(chain index, is close delimiter) when the line at `line` is an active delimiter."""
        raw = self.raw
        eol = raw.find(b"\n", line, line + _BOUNDARY_WINDOW)
        if eol < 0:
            if line + _BOUNDARY_WINDOW < len(raw):
                return None
            eol = len(raw)
        text = raw[line + 2 : eol].rstrip(b" \t\r")  # RFC 2046 5.1.1: trailing LWSP allowed
        index = self.active.get(text)
        if index is not None:
            return index, False
        if text.endswith(b"--"):
            index = self.active.get(text[:-2])
            if index is not None:
                return index, True
        return None

    def _delimiter(self, line: int, index: int, close: bool) -> tuple[int, bool]:
        """Handle a delimiter line of the multipart at chain[index]."""
        raw = self.raw
        delim = line  # RFC 2046 5.1.1: the preceding CRLF is part of the delimiter
        if delim > 0 and raw[delim - 1] == 10:
            delim -= 2 if delim > 1 and raw[delim - 2] == 13 else 1
        eol = raw.find(b"\n", line)
        after = len(raw) if eol < 0 else eol + 1
        self._close_above(index, line, delim)
        parent = self.chain[index]
        if close:
            self._deactivate(parent)
            return after, False  # epilogue: body of `parent` until an outer delimiter
        if len(self.nodes) >= self.max_parts:
            return after, False  # out of parts: the rest is epilogue text (Dovecot does the same)
        child = _Node(after, parent.depth + 1, parent.ctype[1] == "digest")
        parent.children.append(child)
        self.nodes.append(child)
        self.chain.append(child)
        return after, True

    def _close_above(self, index: int, line: int, delim: int) -> None:
        """End every entity nested inside chain[index] at this delimiter."""
        inner_end = -1  # a part cut right after its own delimiter may start past `delim`
        while len(self.chain) > index + 1:
            node = self.chain.pop()
            if node.header_end < 0:  # cut inside its header: no body
                self._end_header(node, line, line)
            node.body_end = max(node.body_start, delim, inner_end)  # children stay inside
            inner_end = node.body_end
            if node.boundary is not None:
                self._deactivate(node)

    def _deactivate(self, node: _Node) -> None:
        if node.boundary is None:
            return
        if node.shadowed is not None:
            self.active[node.boundary] = node.shadowed
        else:
            del self.active[node.boundary]
        node.boundary = None

    def _end_header(self, node: _Node, header_end: int, body_start: int) -> None:
        node.header_end, node.body_start = header_end, body_start
        parsed, node.fields = block_fields(self.raw, node.header_start, header_end)
        if parsed is None:
            if node.in_digest:
                node.ctype = ("message", "rfc822", ())
        else:
            node.ctype = parsed
        limited = node.depth >= self.max_depth or len(self.nodes) >= self.max_parts
        kind, subtype, params = node.ctype
        if kind == "multipart" and (limited or not dict(params).get("boundary")):
            node.ctype = DEFAULT_TEXT  # no usable boundary, or too deep: opaque text
        elif kind == "message" and subtype == "rfc822" and limited:
            node.ctype = DEFAULT_TEXT

    def _open_container(self, node: _Node) -> bool:
        """After a header block: start a multipart's boundary or an encapsulated message.

        Returns True when an encapsulated message's header block starts here.
        """
        kind, subtype, params = node.ctype
        if kind == "multipart":
            boundary = dict(params)["boundary"].encode("utf-8", "surrogateescape")
            node.boundary = boundary
            node.shadowed = self.active.get(boundary)
            self.active[boundary] = len(self.chain) - 1
        elif kind == "message" and subtype == "rfc822":
            child = _Node(node.body_start, node.depth + 1, False)
            node.children.append(child)
            self.nodes.append(child)
            self.chain.append(child)
            return True
        return False


@functools.lru_cache(maxsize=8)
def _values_pattern(names: frozenset[bytes]) -> re.Pattern[bytes]:
    # headers.first_values' name rule (a line start, the name, optional WSP, colon), plus
    # the value with its folded continuation lines (RFC 5322 2.2.3) captured. The leading
    # "\n" lets the engine skip from line to line with a fast literal search.
    alts = b"|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    return re.compile(rb"\n(" + alts + rb")[ \t]*:([^\n]*(?:\n[ \t][^\n]*)*)")


def header_values(raw: bytes, start: int, end: int, names: frozenset[bytes]) -> dict[bytes, bytes]:
    """What headers.first_values gives (lowercased name -> unfolded value of its first
    field; `start` is a line start), with the values cut by the same regular-expression
    scan that finds the names: this runs for every entity of every message on a cold
    FETCH."""
    block = b"\n" + raw[start:end].lower()  # block[i + 1] is raw[start + i]
    found: dict[bytes, bytes] = {}
    shift = start - 1
    for m in _values_pattern(names).finditer(block):
        name = m.group(1)
        if name in found:
            continue
        v_start, v_end = m.span(2)
        v_start += shift
        value = raw[v_start : min(v_end + shift, v_start + FIELD_CAP)]
        if b"\n" in value or b"\r" in value:
            value = value.replace(b"\r", b"").replace(b"\n", b"")
        found[name] = value.strip(b" \t")
        if len(found) == len(names):
            break
    return found


_SMALL_HEADER = 512  # octets: a part's header block this short is looked up in the cache below


def block_fields(raw: bytes, start: int, end: int) -> tuple[tuple[str, str, Params] | None, Fields]:
    """The parsed Content-Type (None if absent) and the other MIME fields (part_fields) of
    the header block raw[start:end]."""
    if end - start <= _SMALL_HEADER:
        return _small_header(raw[start:end])
    return _fields_of(header_values(raw, start, end, _WANTED))


@functools.lru_cache(maxsize=1024)
def _small_header(block: bytes) -> tuple[tuple[str, str, Params] | None, Fields]:
    # Part headers repeat (`Content-Type: text/plain; charset=utf-8` and an encoding in
    # most mail): a cold FETCH of many messages parses each distinct one once.
    return _fields_of(header_values(block, 0, len(block), _WANTED))


def _fields_of(info: dict[bytes, bytes]) -> tuple[tuple[str, str, Params] | None, Fields]:
    ctype = info.get(b"content-type")
    return None if ctype is None else parse_content_type(ctype), part_fields(info)


def header_block_end(raw: bytes, start: int = 0) -> int:
    """End of the header block at `start` (after its empty line), by parse_structure's rules
    for a block no multipart delimiter can cut (the top-level one)."""
    pos, n = start, len(raw)
    while pos < n:
        if raw.startswith(b"\r\n", pos) or raw.startswith(b"\n", pos):  # RFC 5322 2.1
            return pos + (2 if raw[pos] == 13 else 1)
        if _HEADER_LINE.match(raw, pos) is None:
            return pos
        m = _HEADER_STOP.search(raw, pos)
        if m is None:
            break
        pos = m.start() + 1
    return n


def parse_structure(raw: bytes, *, max_depth: int = 100, max_parts: int = 10_000) -> Part:
    """Parse the MIME structure of `raw` (CRLF or bare LF) without raising.

    Linear time; containers deeper than `max_depth` or beyond `max_parts`
    entities become text/plain leaves.
    """
    scanner = _Scanner(raw, max_depth, max_parts)
    scanner.run()
    # Stored messages have bare LF: without any CR, one memchr answers what two counts of
    # CRLF per part would (sizes below count each LF as two octets).
    has_cr = b"\r" in raw
    crlf_only = raw.count(b"\n") == raw.count(b"\r\n") if has_cr else b"\n" not in raw
    frozen: dict[int, Part] = {}
    # Children are always created after their parent: build bottom-up without recursion.
    for node in reversed(scanner.nodes):
        children = [frozen[id(c)] for c in node.children]
        frozen[id(node)] = _freeze(raw, node, crlf_only, has_cr, children)
    return frozen[id(scanner.root)]


def _freeze(raw: bytes, node: _Node, crlf_only: bool, has_cr: bool, children: list[Part]) -> Part:
    kind, subtype, _params = node.ctype
    start, end = node.body_start, node.body_end
    if kind == "message" and subtype == "rfc822" and not children:
        # Cut off inside its own header: still give the grammar its encapsulated message.
        children = [Part(end, end, end, end, *DEFAULT_TEXT, ())]
    size = lines = 0
    if kind != "multipart":
        newlines = raw.count(b"\n", start, end)
        size = end - start
        if not crlf_only:  # bare LF is sent as CRLF, so it counts two octets
            size += newlines - (raw.count(b"\r\n", start, end) if has_cr else 0)
        lines = newlines + (1 if end > start and raw[end - 1] != 10 else 0)
    return make_part(
        node.header_start,
        node.header_end,
        start,
        end,
        node.ctype,
        node.fields,
        children,
        size,
        lines,
    )


def part_fields(info: dict[bytes, bytes]) -> Fields:
    """The Part fields after the children, from header_values of the _WANTED names (other
    names in `info` are ignored)."""
    disposition = (
        parse_disposition(info[b"content-disposition"]) if b"content-disposition" in info else None
    )
    encoding = info.get(b"content-transfer-encoding", b"").split(b"(", 1)[0].strip()
    return (
        info.get(b"content-id"),
        info.get(b"content-description"),
        encoding.decode("utf-8", "surrogateescape") or "7bit",
        disposition[0] if disposition else None,
        disposition[1] if disposition else (),
        parse_list(info[b"content-language"]) if b"content-language" in info else (),
        info.get(b"content-location"),
        info.get(b"content-md5"),
    )


def make_part(
    header_start: int,
    header_end: int,
    start: int,
    end: int,
    ctype: tuple[str, str, Params],
    fields: Fields,
    children: list[Part],
    size: int,
    lines: int,
) -> Part:
    """The Part of an entity whose type, fields (part_fields) and body extent are known;
    size and lines in CRLF form."""
    kind, subtype, params = ctype
    return Part(header_start, header_end, start, end, kind, subtype, params, tuple(children),
                *fields, size, lines)  # fmt: skip


def crlf_size(raw: bytes) -> int:
    """RFC822.SIZE of a stored message: its size with every line ending as CRLF."""
    if b"\r" not in raw:  # the usual stored form: LF only, so no second count
        return len(raw) + raw.count(b"\n")
    return len(raw) + raw.count(b"\n") - raw.count(b"\r\n")


def to_crlf(data: bytes) -> bytes:
    """Every line end as CRLF, as IMAP and POP3 serve a message stored with LF: a bare LF
    becomes CRLF, an existing CRLF stays (so do a lone CR, NUL and 8-bit octets)."""
    if b"\r" not in data:
        return data.replace(b"\n", b"\r\n")  # the usual stored form: one pass
    if data.count(b"\n") == data.count(b"\r\n"):
        return data  # already CRLF throughout: no copy
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
