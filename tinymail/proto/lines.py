"""A CRLF line buffer with a maximum line length, shared by the SMTP, IMAP and POP3 cores.

Rules:
- Only CRLF ends a line. A bare LF or a bare CR stays *inside* the line, where the core sees it
  as a control character and refuses the command: a bare line end must never start a command
  (SMTP smuggling, research 2.1; RFC 5321 §2.3.8).
- ``max_length`` counts the CRLF. A longer line is reported once as ``LINE_TOO_LONG`` when the
  limit is crossed; the rest of it is then dropped up to its CRLF, so memory stays bounded by
  ``max_length`` plus one chunk handed to ``feed()`` (research 2.4 L1).
- ``take_buffered()`` hands the unparsed bytes to another decoder (SMTP DATA) or drops them
  (STARTTLS, CVE-2011-0411).
"""

from __future__ import annotations

from enum import Enum
from typing import Final


class LineEvent(Enum):
    """Non-line results of ``LineBuffer.next_line``."""

    LINE_TOO_LONG = "LINE_TOO_LONG"


LINE_TOO_LONG: Final = LineEvent.LINE_TOO_LONG


class LineBuffer:
    """Collects received bytes and returns complete CRLF lines, without their CRLF."""

    def __init__(self, max_length: int) -> None:
        if max_length < 3:
            raise ValueError("max_length must leave room for at least one byte and CRLF")
        self._max = max_length
        self._buf = bytearray()
        self._scan_from = 0  # no CRLF starts before this offset (avoids quadratic rescans)
        self._discarding = False  # inside an overlong line, dropping bytes up to its CRLF

    def feed(self, data: bytes) -> None:
        """Append received bytes."""
        self._buf += data

    def __len__(self) -> int:
        """Number of bytes buffered and not yet returned."""
        return len(self._buf)

    def next_line(self) -> bytes | LineEvent | None:
        """Return the next line (bytes), ``LINE_TOO_LONG``, or None when more input is needed."""
        if self._discarding and not self._skip_rest_of_long_line():
            return None
        end = self._buf.find(b"\r\n", self._scan_from)
        if end >= 0:
            self._scan_from = 0
            if end + 2 > self._max:
                del self._buf[: end + 2]
                return LINE_TOO_LONG
            line = bytes(self._buf[:end])
            del self._buf[: end + 2]
            return line
        if len(self._buf) >= self._max:
            # No CRLF within the limit: the line is too long whatever comes next.
            self._discarding = True
            self._skip_rest_of_long_line()
            return LINE_TOO_LONG
        # A CR at the very end may be completed by the next chunk's LF: rescan from it.
        self._scan_from = max(0, len(self._buf) - 1)
        return None

    def take_buffered(self) -> bytes:
        """Return and forget every unparsed byte (for DATA decoding or a STARTTLS discard)."""
        data = bytes(self._buf)
        self._buf.clear()
        self._scan_from = 0
        self._discarding = False
        return data

    def _skip_rest_of_long_line(self) -> bool:
        """Drop bytes of an overlong line; True once its CRLF was found and dropped."""
        self._scan_from = 0
        end = self._buf.find(b"\r\n")
        if end >= 0:
            del self._buf[: end + 2]
            self._discarding = False
            return True
        keep = 1 if self._buf.endswith(b"\r") else 0
        del self._buf[: len(self._buf) - keep]
        return False
