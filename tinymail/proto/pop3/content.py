"""The wire form of a stored message for RETR and TOP (pure functions).

Rules:
- Stored messages have LF line ends (SPEC "Promises"); POP3 sends CRLF (RFC 1939 §3). A bare LF
  becomes CRLF, an existing CRLF stays, any other byte (a lone CR, NUL, 8-bit) is sent as stored:
  the message is byte-exact up to LF -> CRLF.
- A line starting with "." gets one more "." (RFC 1939 §3 byte-stuffing); the multi-line answer
  ends with CRLF "." CRLF, so a message not ending in a line end gets one before the terminator.
- TOP n m sends the header, the blank line that ends it, and at most m body lines (RFC 1939 §7).
- ``encode`` is the one place that builds the answer body, with as few copies as possible: one
  ``replace`` for the line ends, a second only when some line really starts with "." (rare), and
  the terminator as a separate chunk so the message is never concatenated again. It is pure and
  may run in a worker thread, so a large message is converted off the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass

from tinymail.mail.mime import to_crlf


@dataclass(frozen=True, slots=True)
class Encoded:
    """A RETR or TOP answer body: the chunks to send after the status line, in order."""

    top_lines: int | None  # as asked by the FetchMessage it answers (None: RETR)
    octets: int  # the message's size on the wire before byte-stuffing (RETR "+OK n octets")
    chunks: tuple[bytes, ...]  # byte-stuffed text, then the terminating ".CRLF" line


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


def stuff(wire: bytes) -> bytes:
    """Byte-stuff CRLF ``wire``: one more "." on every line that starts with one (§3)."""
    if not wire.startswith(b".") and b"\n." not in wire:
        return wire  # the fast path: nothing to stuff, no copy
    stuffed = wire.replace(b"\r\n.", b"\r\n..")
    return b"." + stuffed if stuffed.startswith(b".") else stuffed


def encode(data: bytes, top_lines: int | None = None) -> Encoded:
    """The answer body for stored ``data``: whole (RETR) or its first ``top_lines`` (TOP)."""
    wire = to_crlf(data)
    if top_lines is not None:
        wire = top(wire, top_lines)
    end = b".\r\n" if not wire or wire.endswith(b"\r\n") else b"\r\n.\r\n"
    return Encoded(top_lines, len(wire), (stuff(wire), end))
