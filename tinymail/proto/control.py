"""The local control protocol between `sendmail` and `tinymail serve` (data_dir/run/control.sock).

Rules / theory:
- One request per connection, LF-terminated ASCII lines; the daemon answers with one line:
  `OK [text]` or `ERR <sysexits status> <text>`, then closes.
- Requests:
    NUDGE <qid>            a message was just queued: deliver it now
    FLUSH [<qid>]          retry the whole queue (or one message) now (`sendmail -q`)
    DELETE <qid>           remove a message without a DSN (`tinymail queue delete`)
    HOLD <qid>             keep a message out of delivery until RELEASE
    RELEASE <qid>          put a held message back on its retry schedule
    SUBMIT                 the caller cannot write the queue: the daemon queues for it
    RCPT <address>         (repeated, at least once)
    DATA <size>            followed by exactly <size> octets of message (LF line ends)
- DELETE/HOLD/RELEASE name one message each; the reply is `ERR 67` for a queue ID that is not
  queued. Who may send them is the daemon's decision (SO_PEERCRED), not the protocol's.
- SUBMIT carries no sender: the daemon derives it from the peer's uid (SO_PEERCRED), never
  from anything the caller says. Addresses are re-checked by the daemon.
- Limits (line length, recipients, size) are passed in; a violation is a `Refused` event with
  the status to report, and the parser stops. Pure: no I/O, no clock.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

# The client's half (request lines, the reply line) is in control_wire.py; still this API.
from tinymail.proto.control_wire import EX_DATAERR as EX_DATAERR
from tinymail.proto.control_wire import EX_NOPERM as EX_NOPERM
from tinymail.proto.control_wire import EX_NOUSER as EX_NOUSER
from tinymail.proto.control_wire import EX_TEMPFAIL as EX_TEMPFAIL
from tinymail.proto.control_wire import EX_USAGE as EX_USAGE
from tinymail.proto.control_wire import MAX_LINE as MAX_LINE
from tinymail.proto.control_wire import Reply as Reply
from tinymail.proto.control_wire import encode_reply as encode_reply
from tinymail.proto.control_wire import flush as flush
from tinymail.proto.control_wire import nudge as nudge
from tinymail.proto.control_wire import parse_reply as parse_reply
from tinymail.proto.control_wire import submit as submit

_QID = re.compile(r"[0-9A-Z]{1,40}")


def valid_qid(text: str) -> bool:
    """True when `text` has the shape of a queue ID (so it is safe as a spool file name)."""
    return _QID.fullmatch(text) is not None


class QueueAction(enum.Enum):
    """An administrator's change to one queued message (the request verb)."""

    DELETE = "DELETE"
    HOLD = "HOLD"
    RELEASE = "RELEASE"


@dataclass(frozen=True, slots=True)
class Nudge:
    """A message was queued; its queue ID."""

    qid: str


@dataclass(frozen=True, slots=True)
class Flush:
    """Retry now: one message, or all when qid is None."""

    qid: str | None


@dataclass(frozen=True, slots=True)
class Change:
    """Delete, hold or release one queued message."""

    action: QueueAction
    qid: str


@dataclass(frozen=True, slots=True)
class Submit:
    """A message handed over for queueing by an unprivileged caller."""

    recipients: tuple[str, ...]
    content: bytes


@dataclass(frozen=True, slots=True)
class Refused:
    """The request is malformed or over a limit; reply with `status` and `text`."""

    status: int
    text: str


@dataclass(frozen=True, slots=True)
class NeedData:
    """More bytes are needed."""


NEED_DATA = NeedData()
_ACTIONS = frozenset(a.value for a in QueueAction)
Request = Nudge | Flush | Change | Submit | Refused


class RequestParser:
    """Server side: feed bytes with `receive_data`, read the request from `next_event`."""

    def __init__(self, *, max_size: int, max_recipients: int):
        self._buf = bytearray()
        self._max_size = max_size
        self._max_recipients = max_recipients
        self._recipients: list[str] = []
        self._submitting = False
        self._data_size: int | None = None
        self._done: Request | None = None

    def receive_data(self, data: bytes) -> None:
        """Append received bytes (b"" means the peer closed its side)."""
        if not data and self._done is None:
            self._done = Refused(EX_USAGE, "connection closed before the request ended")
        self._buf += data

    def next_event(self) -> Request | NeedData:
        """The complete request, NEED_DATA, or Refused; once decided it stays decided."""
        while self._done is None:
            if self._data_size is not None:
                if len(self._buf) < self._data_size:
                    return NEED_DATA
                content = bytes(self._buf[: self._data_size])
                self._done = Submit(tuple(self._recipients), content)
                break
            nl = self._buf.find(b"\n")
            if nl < 0:
                if len(self._buf) > MAX_LINE:
                    self._done = Refused(EX_USAGE, "request line too long")
                    break
                return NEED_DATA
            line = bytes(self._buf[:nl])
            del self._buf[: nl + 1]
            self._done = self._line(line)
        return self._done

    def _line(self, raw: bytes) -> Request | None:
        if len(raw) > MAX_LINE:
            return Refused(EX_USAGE, "request line too long")
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            return Refused(EX_USAGE, "request is not UTF-8")
        verb, _, arg = line.partition(" ")
        if self._submitting:
            return self._submit_line(verb, arg)
        if verb == "NUDGE" and _QID.fullmatch(arg):
            return Nudge(arg)
        if verb == "FLUSH" and (not arg or _QID.fullmatch(arg)):
            return Flush(arg or None)
        if verb in _ACTIONS and _QID.fullmatch(arg):
            return Change(QueueAction(verb), arg)
        if verb == "SUBMIT" and not arg:
            self._submitting = True
            return None
        return Refused(EX_USAGE, f"bad request {line[:40]!r}")

    def _submit_line(self, verb: str, arg: str) -> Request | None:
        if verb == "RCPT" and arg and arg.isprintable() and " " not in arg:
            if len(self._recipients) >= self._max_recipients:
                return Refused(EX_DATAERR, "too many recipients")
            self._recipients.append(arg)
            return None
        if verb == "DATA" and arg.isdigit() and self._recipients:
            size = int(arg)
            if size > self._max_size:
                return Refused(EX_DATAERR, f"message too large (limit {self._max_size} bytes)")
            self._data_size = size
            return None
        return Refused(EX_USAGE, f"bad SUBMIT line {verb[:10]!r}")


def change(action: QueueAction, qid: str) -> bytes:
    """The DELETE, HOLD or RELEASE request for one message (qid must be `valid_qid`)."""
    if not valid_qid(qid):
        raise ValueError(f"not a queue ID: {qid!r}")
    return action.value.encode("ascii") + b" " + qid.encode("ascii") + b"\n"
