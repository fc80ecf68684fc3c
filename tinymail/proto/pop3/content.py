"""The wire form of a stored message for RETR and TOP (pure functions).

Rules:
- Stored messages have LF line ends (SPEC "Promises"); POP3 sends CRLF (RFC 1939 §3). A bare LF
  becomes CRLF, an existing CRLF stays, any other byte (a lone CR, NUL, 8-bit) is sent as stored:
  the message is byte-exact up to LF -> CRLF.
- A line starting with "." gets one more "." (RFC 1939 §3 byte-stuffing); the multi-line answer
  ends with CRLF "." CRLF, so a message not ending in a line end gets one before the terminator.
- TOP n m sends the header, the blank line that ends it, and at most m body lines (RFC 1939 §7).
"""

from __future__ import annotations


def to_crlf(data: bytes) -> bytes:
    """Return ``data`` with every line end as CRLF (bare LF -> CRLF; CRLF unchanged)."""
    if b"\r" not in data:
        return data.replace(b"\n", b"\r\n")  # the common case: an LF-stored message
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def top(data: bytes, body_lines: int) -> bytes:
    """The header block, its blank line and the first ``body_lines`` body lines of CRLF ``data``."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return data  # no body at all: the whole message is header (RFC 1939 §7)
    pos = end + 4
    for _ in range(body_lines):
        nxt = data.find(b"\r\n", pos)
        if nxt < 0:
            return data
        pos = nxt + 2
    return data[:pos]


def multiline(data: bytes) -> bytes:
    """Byte-stuff CRLF ``data`` and add the terminating ``.`` line (RFC 1939 §3)."""
    stuffed = data.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    if stuffed and not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    return stuffed + b".\r\n"
