"""IMAP string serialization (RFC 3501 4.3, 9 "string", "astring", "nstring").

Rules: an atom is used only where the grammar allows one (astring); otherwise a
string is sent quoted when that is safe and short, else as a synchronizing-free
server literal `{n}CRLF<n octets>`. A quoted string may not hold CR, LF, NUL or
8-bit octets (RFC 3501 9: QUOTED-CHAR is 7-bit TEXT-CHAR), and inside it only
`"` and `\\` are escaped. NIL stands for an absent nstring.
"""

from __future__ import annotations

import re

# Longer strings go out as literals: a client need not scan for escapes, and a
# long quoted line is what some parsers choke on.
QUOTED_MAX = 1024

# RFC 3501 9: quoted = DQUOTE *QUOTED-CHAR DQUOTE; QUOTED-CHAR excludes CR, LF, NUL, 8-bit.
_NOT_QUOTABLE = re.compile(rb"[\x00\r\n\x80-\xff]")
# RFC 3501 9: ASTRING-CHAR = ATOM-CHAR / resp-specials; ATOM-CHAR excludes
# atom-specials "(" ")" "{" SP CTL "%" "*" DQUOTE "\" (and "]" only in plain atoms).
_ASTRING_ATOM = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\]+')


def literal(data: bytes) -> bytes:
    """Return `data` as an IMAP literal: `{len}\\r\\n` followed by the octets."""
    return b"{%d}\r\n" % len(data) + data


def quoted_or_literal(data: bytes) -> bytes:
    """Return `data` as a quoted string when allowed and short, else as a literal."""
    if len(data) <= QUOTED_MAX and _NOT_QUOTABLE.search(data) is None:
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return literal(data)


def nstring(data: bytes | None) -> bytes:
    """Return NIL for None, else `data` as a string (quoted or literal)."""
    if data is None:
        return b"NIL"
    return quoted_or_literal(data)


def astring(data: bytes) -> bytes:
    """Return `data` as an atom when every octet is an ASTRING-CHAR, else as a string."""
    if _ASTRING_ATOM.fullmatch(data) is not None:
        return data
    return quoted_or_literal(data)
