"""Events the SMTP server core emits to its adapter.

Rules:
- *Decisions* (``MailFrom``, ``RcptTo``, ``DataStart``, ``DataEnd``, ``AuthCredentials``) wait
  for exactly one ``ServerConnection.send(reply)``; nothing else is parsed until it comes, which
  keeps pipelined replies in order (RFC 2920 §3.1).
- ``DataChunk``, ``DataAborted`` and ``StartTLS`` are notices: act on them, never answer them.
- Event names are nouns; every event is a frozen slotted dataclass.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Final

from tinymail.proto.sasl import Credentials


@dataclass(frozen=True, slots=True)
class MailFrom:
    """MAIL FROM, syntax and limits already checked. ``address`` "" is the null sender."""

    address: str
    size: int | None = None
    body: str | None = None  # "7BIT" or "8BITMIME" (RFC 6152)
    smtputf8: bool = False  # RFC 6531


@dataclass(frozen=True, slots=True)
class RcptTo:
    """RCPT TO: one recipient, as the client wrote it (source route removed)."""

    address: str


@dataclass(frozen=True, slots=True)
class DataStart:
    """DATA with a sender and at least one accepted recipient; answer 354 or a refusal."""

    sender: str
    recipients: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DataChunk:
    """Message content: dot-unstuffed, LF line ends. Not a decision."""

    data: bytes


@dataclass(frozen=True, slots=True)
class DataEnd:
    """The message ended correctly; commit it and answer 250 (or 4xx/5xx)."""


@dataclass(frozen=True, slots=True)
class DataAborted:
    """The message will be refused: discard everything written for it. Not a decision."""

    reason: str


@dataclass(frozen=True, slots=True)
class StartTLS:
    """220 was queued: flush ``data_to_send()``, do the handshake, call ``tls_started()``."""


# The SASL core's result is the SMTP event as it is: a frozen slotted dataclass
# ``AuthCredentials(authzid, authcid, password, mechanism)``, password hidden from repr.
AuthCredentials = Credentials

Decision = MailFrom | RcptTo | DataStart | DataEnd | AuthCredentials
Event = (
    MailFrom | RcptTo | DataStart | DataChunk | DataEnd | DataAborted | StartTLS | AuthCredentials
)


class Sentinel(Enum):
    """What ``next_event`` returns when there is no event."""

    NEED_DATA = "NEED_DATA"  # feed more bytes with receive_data()
    CLOSED = "CLOSED"  # the session is over: flush data_to_send() and close


NEED_DATA: Final = Sentinel.NEED_DATA
CLOSED: Final = Sentinel.CLOSED
