"""Events of the POP3 server core: the decisions it hands to its adapter, and what it needs.

Each decision event names the answer methods of ``ServerConnection`` that settle it:

- ``Authenticate``  -> ``auth_ok(owner)`` / ``auth_failed(temporary=...)``
- ``OpenMaildrop``  -> ``maildrop_locked()`` (then ``ListMaildrop`` follows) or
                       ``maildrop_opened(listing)`` (lock and listing at once) /
                       ``maildrop_in_use()`` / ``maildrop_failed()``
- ``ListMaildrop``  -> ``maildrop_listed(listing)`` / ``maildrop_failed()``
- ``FetchMessage``  -> ``message(data)`` / ``message_encoded(content.encode(data, top_lines))``
                       / ``message_missing()``
- ``Update``        -> ``update_done()`` / ``update_failed()``
- ``StartTLS``      -> ``tls_started()`` once the handshake is done (the ``+OK`` is already queued)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Final


@dataclass(frozen=True, slots=True)
class Listing:
    """The maildrop as the session will see it: its messages in maildrop order (§4).

    ``sizes`` are the sizes as transmitted, with CRLF line ends (RFC 1939 §5 "exact size");
    ``uids`` and ``uidvalidity`` are the mailbox's IMAP UIDs and UIDVALIDITY, from which the
    UIDL unique-ids are formed, so POP3 and IMAP agree on message identity. Two flat sequences
    rather than one object per message: a listing of 100,000 messages is built per session.
    """

    uidvalidity: int
    uids: Sequence[int]
    sizes: Sequence[int]


@dataclass(frozen=True, slots=True)
class Authenticate:
    """Check a password: USER/PASS or AUTH PLAIN (the authzid is already empty or = authcid)."""

    username: str
    password: str = field(repr=False)  # never in logs or tracebacks (research 2.5 A8)
    mechanism: str  # "USER" or "PLAIN"


@dataclass(frozen=True, slots=True)
class OpenMaildrop:
    """Take the exclusive-access lock on the maildrop of ``owner`` (RFC 1939 §4)."""

    owner: str


@dataclass(frozen=True, slots=True)
class ListMaildrop:
    """List the locked maildrop of ``owner``; asked right after the login ``+OK``, before any
    further command is read, as Dovecot does (so the ``+OK`` does not wait for the listing).
    Flush ``data_to_send()`` first."""

    owner: str


@dataclass(frozen=True, slots=True)
class FetchMessage:
    """Supply the stored bytes of message ``number`` (RETR when ``top_lines`` is None, else TOP)."""

    number: int
    uid: int
    top_lines: int | None


@dataclass(frozen=True, slots=True)
class Update:
    """QUIT in TRANSACTION: remove ``deleted`` (UIDs) for good, then release the lock (§6)."""

    owner: str
    deleted: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class StartTLS:
    """Flush ``data_to_send()``, run the TLS handshake, then call ``tls_started()``."""


Decision = Authenticate | OpenMaildrop | ListMaildrop | FetchMessage | Update | StartTLS


class Sentinel(Enum):
    """What ``next_event`` returns when there is no decision."""

    NEED_DATA = "NEED_DATA"  # flush data_to_send(), then feed more bytes with receive_data()
    CLOSED = "CLOSED"  # the session is over: flush data_to_send() and close


NEED_DATA: Final = Sentinel.NEED_DATA
CLOSED: Final = Sentinel.CLOSED
