"""IMAP command framing (RFC 3501 sections 2.2, 4.3; RFC 7888).

Rules:
- A command is a line, and every line that ends in a literal announcement
  `{n}` / `{n+}` is followed by n raw bytes and then more of the command.
- Limits are checked on the announcement, before one byte of the literal is
  buffered (research I1/I2): a synchronizing literal over the limit is refused
  (the client waits for "+", so it never sends the data and the connection
  goes on); a non-synchronizing one is already on its way, so it is fatal.
- The reader only frames; parse.py turns a frame into a Command.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field


class NeedData(enum.Enum):
    """The reader needs more bytes."""

    NEED_DATA = enum.auto()


NEED_DATA = NeedData.NEED_DATA


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits; the core tightens them before authentication."""

    line: int = 65536  # one line between literals (Dovecot imap_max_line_length)
    literal: int = 65536  # a literal in any command but APPEND
    command: int = 262144  # a whole non-APPEND command with its literals
    append: int = 64 * 1024 * 1024  # the message literal of APPEND (APPENDLIMIT)


@dataclass(frozen=True, slots=True)
class Frame:
    """A complete command: line pieces with the literal that followed each one but the last."""

    lines: tuple[bytes, ...]
    literals: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class RawLine:
    """A line read in raw mode (SASL response, IDLE's DONE), without CRLF."""

    line: bytes


@dataclass(frozen=True, slots=True)
class ContinuationNeeded:
    """A synchronizing literal was announced and fits: the server must send "+"."""

    size: int


@dataclass(frozen=True, slots=True)
class Refused:
    """The command cannot be accepted; `fatal` means the connection must close (RFC 7888 4)."""

    tag: str
    reason: str
    fatal: bool
    toobig: bool


ReaderEvent = Frame | RawLine | ContinuationNeeded | Refused | NeedData

_LITERAL_RE = re.compile(rb"\{(\d{1,20})(\+?)\}\Z")


@dataclass(slots=True)
class CommandReader:
    """Buffers bytes and yields framed commands; sans-I/O."""

    limits: Limits = field(default_factory=Limits)
    _buf: bytearray = field(default_factory=bytearray)
    _lines: list[bytes] = field(default_factory=list)
    _literals: list[bytes] = field(default_factory=list)
    _literal_left: int = -1
    _total: int = 0
    _discarding: bool = False

    def receive(self, data: bytes) -> None:
        """Add bytes from the peer."""
        self._buf += data

    def buffered(self) -> int:
        """Bytes received but not yet consumed (used to drop pipelined plaintext at STARTTLS)."""
        return len(self._buf)

    def peek_line(self) -> bytes | None:
        """The next complete line when no command is half read, without consuming it."""
        if self._lines or self._literal_left >= 0 or self._discarding:
            return None
        end = self._buf.find(b"\n")
        return None if end < 0 else bytes(self._buf[:end]).rstrip(b"\r")

    def clear(self) -> None:
        """Forget everything buffered (STARTTLS: RFC 3501 6.2.1, CVE-2011-0411)."""
        self._buf.clear()
        self._reset()

    def _reset(self) -> None:
        self._lines = []
        self._literals = []
        self._literal_left = -1
        self._total = 0

    def _take_line(self) -> bytes | None:
        end = self._buf.find(b"\n")
        if end < 0:
            return None
        line = bytes(self._buf[:end])
        del self._buf[: end + 1]
        return line[:-1] if line.endswith(b"\r") else line

    def next_event(self, raw: bool = False) -> ReaderEvent:
        """The next event; `raw` reads one plain line (between commands only)."""
        if self._literal_left >= 0:
            return self._continue_literal()
        if self._discarding:
            # A line over the limit is skipped to its end, then refused once.
            if self._take_line() is None:
                self._buf.clear()
                return NEED_DATA
            self._discarding = False
            return Refused("*", "Command line too long", fatal=False, toobig=True)
        line = self._take_line()
        if line is None:
            if len(self._buf) > self.limits.line:
                self._buf.clear()
                self._discarding = True
                self._reset()
            return NEED_DATA
        if len(line) > self.limits.line:
            tag = _tag_of(self._lines[0] if self._lines else line)
            self._reset()
            return Refused(tag, "Command line too long", fatal=False, toobig=True)
        if raw and not self._lines:
            return RawLine(line)
        return self._after_line(line)

    def _after_line(self, line: bytes) -> ReaderEvent:
        self._lines.append(line)
        self._total += len(line)
        match = _LITERAL_RE.search(line)
        if match is None:
            frame = Frame(tuple(self._lines), tuple(self._literals))
            self._reset()
            return frame
        size = int(match.group(1))
        sync = not match.group(2)
        first = self._lines[0]
        is_append = _command_name(first) == b"APPEND"
        limit = self.limits.append if is_append else self.limits.literal
        total_limit = self.limits.append + self.limits.command if is_append else self.limits.command
        if size > limit or self._total + size > total_limit:
            tag = _tag_of(first)
            self._reset()
            # RFC 7888 4: a non-synchronizing literal cannot be refused without closing.
            return Refused(tag, "Literal too big", fatal=not sync, toobig=True)
        self._literal_left = size
        self._literals.append(b"")
        self._total += size
        if sync:
            return ContinuationNeeded(size)
        return self._continue_literal()

    def _continue_literal(self) -> ReaderEvent:
        if len(self._buf) < self._literal_left:
            return NEED_DATA
        self._literals[-1] = bytes(self._buf[: self._literal_left])
        del self._buf[: self._literal_left]
        self._literal_left = -1
        # The rest of the command follows as a line; if it has not arrived, next_event
        # reads it later as a continuation because _lines is not empty.
        return self.next_event()


def _tag_of(line: bytes) -> str:
    tag = line.split(b" ", 1)[0]
    if tag and all(0x21 <= b <= 0x7E and b not in b'(){%*"\\+' for b in tag):
        return tag.decode("ascii")
    return "*"


def _command_name(line: bytes) -> bytes:
    words = line.split(b" ", 3)
    if len(words) < 2:
        return b""
    name = words[1].upper()
    if name == b"UID" and len(words) > 2:
        return words[2].upper()
    return name
