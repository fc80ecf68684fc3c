"""Decoding of the SMTP DATA stream: end detection, dot-unstuffing, line-end normalisation.

Rules (SMTP smuggling defence, research 2.1; RFC 5321 §2.3.8, §4.1.1.4, §4.5.2):
- Only the exact bytes CRLF "." CRLF end the message; ".\\r\\n" also ends it as the very first
  line after the 354 (the CRLF before it is the DATA command's). A line start reached through a
  bare LF never ends the message.
- Bare LF is *normalised*: it ends a content line, like Postfix 3.9
  ``smtpd_forbid_bare_newline = normalize``. So a smuggled "\\n.\\n" or "\\n.\\r\\n" becomes an
  ordinary "." content line, which any onward relay dot-stuffs; the "commands" after it stay
  message content.
- Bare CR (a CR not followed by LF) *refuses* the message: ``DataProblem.BARE_CR``. Decoding
  goes on, silently, to the real terminator, so no smuggled command is ever executed.
- Dot-unstuffing: a line starting with "." loses that dot if other characters follow
  (RFC 5321 §4.5.2); a lone "." line (only possible after a bare LF) is kept.
- Output uses LF line ends (SPEC: stored messages use LF). Partial lines are emitted as they
  arrive; at most two undecided bytes (".", ".\\r" at a line start or a trailing "\\r") are
  held back, so memory is bounded whatever the line length.
- ``size`` counts wire bytes before unstuffing, so the content kept never exceeds the limit.
  Over ``max_size`` (RFC 1870) or a line over ``max_line`` bytes refuses the message too.
"""

from __future__ import annotations

from enum import Enum


class DataProblem(Enum):
    """Why a message is refused; the value is the ``DataAborted.reason`` text."""

    TOO_BIG = "message exceeds the size limit"
    BARE_CR = "bare CR in message data"
    LINE_TOO_LONG = "message line too long"


class DotDecoder:
    """Incremental DATA decoder; feed raw bytes, get content, watch ``done``/``problem``."""

    def __init__(self, *, max_size: int, max_line: int) -> None:
        self.max_size = max_size
        self.max_line = max_line
        self.size = 0  # wire bytes of the message so far (terminator excluded)
        self.problem: DataProblem | None = None
        self.done = False
        self.leftover = b""  # bytes after the terminator (pipelined commands)
        self._pending = b""  # undecided bytes carried to the next feed (at most 2)
        self._line_start = True
        self._after_crlf = True  # the line start was reached through CRLF (or is the first)
        self._line_len = 0

    def feed(self, data: bytes) -> bytes:
        """Decode more input; return content (b"" once the message is refused)."""
        if self.done:
            raise ValueError("feed() after the end of the message")
        self.size += len(data)
        buf = self._pending + data
        self._pending = b""
        out: list[bytes] = []
        pos, end = self._bulk(buf, out), len(buf)
        while pos < end:
            if self._line_start and buf[pos] == 0x2E:  # "." at a line start
                head = buf[pos : pos + 3]
                if head == b".\r\n" and self._after_crlf:
                    self.done = True  # RFC 5321 §4.1.1.4: CRLF.CRLF, and nothing else
                    self.leftover = buf[pos + 3 :]
                    self.size -= len(self.leftover) + 3
                    break
                if head in (b".", b".\r"):
                    self._pending = head  # cannot tell "." line, stuffed dot or end yet
                    break
                if head[1:2] != b"\n" and head != b".\r\n":
                    pos += 1  # RFC 5321 §4.5.2: drop the stuffed dot
            self._line_start = False
            newline = buf.find(b"\n", pos)
            if newline < 0:
                stop = end - 1 if buf.endswith(b"\r") else end  # CR may pair with a later LF
                self._pending = buf[stop:]
                self._content(buf[pos:stop], b"", out)
                break
            crlf = newline > pos and buf[newline - 1] == 0x0D
            self._content(buf[pos : newline - 1 if crlf else newline], b"\n", out)
            self._line_start, self._after_crlf, self._line_len = True, crlf, 0
            pos = newline + 1
        if not self.done and self.size > self.max_size:
            self._refuse(DataProblem.TOO_BIG)
        return b"" if self.problem is not None else b"".join(out)

    def _bulk(self, buf: bytes, out: list[bytes]) -> int:
        """Take the leading run of whole lines that need no per-line care; return its length.

        Most of a message is plain lines: no dot at a line start, no bare CR, short lines.
        They are decoded with one replace() instead of line by line; anything else (and the
        terminator) is left to the line loop, which gives the same result more slowly.
        """
        if not self._line_start or self.problem is not None or buf[:1] == b".":
            return 0
        dot_line = buf.find(b"\n.")
        stop = dot_line + 1 if dot_line >= 0 else buf.rfind(b"\n") + 1
        if stop <= 0:
            return 0
        region = buf[:stop]
        if region.count(b"\r") != region.count(b"\r\n"):
            return 0  # a bare CR: the line loop refuses the message
        if len(region) > self.max_line and max(map(len, region.split(b"\n"))) > self.max_line:
            return 0
        out.append(region.replace(b"\r\n", b"\n"))
        self._after_crlf = region.endswith(b"\r\n")
        self._line_len = 0
        return stop

    def _content(self, segment: bytes, line_end: bytes, out: list[bytes]) -> None:
        if self.problem is not None:
            return  # refused: only the terminator still matters
        if b"\r" in segment:
            self._refuse(DataProblem.BARE_CR)
            return
        self._line_len += len(segment)
        if self._line_len > self.max_line:
            self._refuse(DataProblem.LINE_TOO_LONG)
            return
        out.append(segment + line_end)

    def _refuse(self, problem: DataProblem) -> None:
        if self.problem is None:
            self.problem = problem
