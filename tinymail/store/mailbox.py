"""The Mailbox seam between the protocol cores (IMAP, later POP3) and a store.

Rules: IMAP names are Unicode here (the wire's modified UTF-7 is decoded by the
protocol layer); the hierarchy separator is `.`. A Mailbox is one folder; a
MailStore is one user's tree of folders. Every method may block on files, so
the session adapters call them from a worker thread. Failures that the client
should see are MailboxError with an RFC 5530 response code.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

SEPARATOR = "."
SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")


class MailboxError(Exception):
    """A mailbox operation failed in a way the client is told about (tagged NO)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code  # RFC 5530 code: NONEXISTENT, ALREADYEXISTS, CANNOT, LIMIT, ...
        self.message = message


class FlagMode(enum.Enum):
    """How STORE combines flags (RFC 3501 6.4.6)."""

    REPLACE = enum.auto()
    ADD = enum.auto()
    REMOVE = enum.auto()


@dataclass(frozen=True, slots=True)
class View:
    """A folder after a sync. `uids` is shared by every session at the same state: never copy
    it per session (memory per idle session stays small with 100,000 messages)."""

    uidvalidity: int
    uidnext: int
    uids: tuple[int, ...]  # ascending
    modseq: int  # flag-change counter; pass it to flag_changes() next time
    recent: frozenset[int]  # messages this sync claimed as \\Recent for the caller
    keywords: tuple[str, ...]  # keywords defined in the folder (for FLAGS)


@dataclass(frozen=True, slots=True)
class FolderInfo:
    """One entry of a folder listing."""

    name: str
    selectable: bool
    special_use: str | None  # "\\Sent", "\\Trash", ... (RFC 6154)


class Mailbox(Protocol):
    """One folder."""

    name: str

    def sync(self, claim_recent: bool) -> View:
        """Rescan (cheaply when nothing changed), assign UIDs, optionally claim \\Recent."""
        ...

    def flags(self, uid: int) -> frozenset[str] | None:
        """Current flags and keywords of a message; None when it is gone."""
        ...

    def flag_changes(self, since: int) -> list[tuple[int, int]] | None:
        """(uid, modseq) of flag changes after modseq `since`; None: too old, assume all."""
        ...

    def status_counts(self) -> tuple[int, int, int]:
        """(messages, recent: not yet claimed by any session, unseen) for STATUS."""
        ...

    def size(self, uid: int) -> int:
        """RFC822.SIZE: the size with CRLF line endings."""
        ...

    def internal_date(self, uid: int) -> float:
        """INTERNALDATE as a POSIX timestamp."""
        ...

    def envelope(self, uid: int, compute: Callable[[bytes], bytes]) -> bytes:
        """`compute(header block)` for a message, cached by the store (messages never change)."""
        ...

    def read(self, uid: int) -> bytes:
        """The stored message (LF line endings); MailboxError NONEXISTENT if it is gone."""
        ...

    def read_header(self, uid: int) -> bytes:
        """The stored header block including the blank line, without reading the body."""
        ...

    def store_flags(
        self, uids: Sequence[int], flags: frozenset[str], mode: FlagMode
    ) -> dict[int, tuple[frozenset[str], int]]:
        """Change flags atomically per message; return new flags and modseq of those present."""
        ...

    def append(self, data: bytes, flags: frozenset[str], internal_date: float | None) -> int:
        """Store a message (CRLF or LF) and return its UID."""
        ...

    def copy_to(self, uids: Sequence[int], target: Mailbox) -> list[tuple[int, int]]:
        """Copy messages keeping flags and dates; return (source UID, new UID) pairs."""
        ...

    def expunge(self, uids: Iterable[int]) -> list[int]:
        """Remove the messages; return the UIDs actually removed."""
        ...


class MailStore(Protocol):
    """One user's folders."""

    def ensure_defaults(self) -> None:
        """Create INBOX and the SPECIAL-USE folders when they are missing (first login)."""
        ...

    def folders(self) -> list[FolderInfo]:
        """All folders, INBOX first."""
        ...

    def open(self, name: str) -> Mailbox:
        """The folder called `name`; MailboxError NONEXISTENT when there is none."""
        ...

    def create(self, name: str) -> None:
        """Create a folder (and missing parents); ALREADYEXISTS when it exists."""
        ...

    def delete(self, name: str) -> None:
        """Delete a folder and its messages (not its children)."""
        ...

    def rename(self, old: str, new: str) -> None:
        """Rename a folder with its children; INBOX moves its messages (RFC 3501 6.3.5)."""
        ...

    def subscriptions(self) -> list[str]:
        """Subscribed names, in file order."""
        ...

    def set_subscribed(self, name: str, subscribed: bool) -> None:
        """Subscribe or unsubscribe `name` (it need not exist)."""
        ...
