"""POP3's view of a user's INBOX, over a Maildir or an mbox file, plus the POP3 session lock.

Rules:
- The listing is taken once per session (RFC 1939 §5: numbers are fixed for the session);
  mail delivered during the session appears in the next one.
- UIDs and UIDVALIDITY are the IMAP ones (dovecot-uidlist for Maildir, X-UID/X-IMAPbase for
  mbox), so the UIDL values agree with IMAP and with Dovecot's default pop3_uidl_format.
- Sizes are with CRLF line ends, as POP3 sends them (RFC 1939 §5); Maildir names carry them
  (``,W=``), the mbox listing computes them in the same single pass.
- RETR marks the message \\Seen, as Dovecot does by default (pop3_no_flag_updates = no).
- One POP3 session per maildrop at a time (RFC 1939 §4); the lock is per process, which is
  enough because one ``tinymail serve`` owns the data dir.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tinymail.store.layout import mailbox_path
from tinymail.store.mailbox import FlagMode, MailboxError
from tinymail.store.maildir_folder import MaildirFolder
from tinymail.store.maildir_folders import MaildirStore
from tinymail.store.mbox import INBOX, folder_path
from tinymail.store.mbox_folder import open_folder

SEEN = frozenset({"\\Seen"})


@dataclass(frozen=True, slots=True)
class DropMessage:
    """One message of the listing."""

    uid: int
    uidvalidity: int
    size: int  # octets with CRLF line ends


class Maildrop(Protocol):
    """What a POP3 session needs from the store (all calls may block: run them in a thread)."""

    def listing(self) -> list[DropMessage]:
        """The messages now in the INBOX, oldest first."""
        ...

    def read(self, uid: int) -> bytes | None:
        """The stored message (LF line ends); None when another session removed it."""
        ...

    def mark_seen(self, uids: Sequence[int]) -> None:
        """Set \\Seen on messages retrieved in the session (applied once, at QUIT)."""
        ...

    def delete(self, uids: Sequence[int]) -> None:
        """Remove these messages for good (the UPDATE state)."""
        ...


class MaildirDrop:
    """The INBOX of a Maildir, through the shared IMAP folder object (same UIDs)."""

    def __init__(self, root: Path) -> None:
        self._folder: MaildirFolder = MaildirStore(root).open(INBOX)

    def listing(self) -> list[DropMessage]:
        """See ``Maildrop.listing``."""
        view = self._folder.sync(claim_recent=False)
        out = []
        for uid in view.uids:
            try:
                out.append(DropMessage(uid, view.uidvalidity, self._folder.size(uid)))
            except MailboxError:
                continue  # expunged by IMAP between the sync and the size lookup
        return out

    def read(self, uid: int) -> bytes | None:
        """See ``Maildrop.read``."""
        try:
            return self._folder.read(uid)
        except MailboxError:
            return None

    def mark_seen(self, uids: Sequence[int]) -> None:
        """See ``Maildrop.mark_seen``."""
        self._folder.store_flags(list(uids), SEEN, FlagMode.ADD)

    def delete(self, uids: Sequence[int]) -> None:
        """See ``Maildrop.delete``."""
        self._folder.expunge(uids)


class MboxDrop:
    """The INBOX mbox file (data_dir/mail/OWNER/INBOX)."""

    def __init__(self, path: Path) -> None:
        self._folder = open_folder(path)

    def listing(self) -> list[DropMessage]:
        """See ``Maildrop.listing``."""
        uidvalidity, sizes = self._folder.listing()
        return [DropMessage(uid, uidvalidity, size) for uid, size in sizes]

    def read(self, uid: int) -> bytes | None:
        """See ``Maildrop.read``."""
        return self._folder.read(uid)

    def mark_seen(self, uids: Sequence[int]) -> None:
        """See ``Maildrop.mark_seen`` (one rewrite of the file for all of them)."""
        updates = {}
        for uid in uids:
            flags = self._folder.flags(uid)
            if flags is not None and "\\Seen" not in flags:
                updates[uid] = flags | SEEN
        if updates:
            self._folder.store_flags(updates)

    def delete(self, uids: Sequence[int]) -> None:
        """See ``Maildrop.delete``."""
        self._folder.expunge(set(uids))


def open_maildrop(data_dir: Path, owner: str, store_format: str) -> Maildrop:
    """The INBOX of ``owner`` in the configured format (``[store] format``)."""
    if store_format == "mbox":
        path = folder_path(data_dir, owner, INBOX)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        return MboxDrop(path)
    return MaildirDrop(mailbox_path(data_dir, owner))


class SessionLocks:
    """Which maildrops a POP3 session holds (RFC 1939 §4 exclusive-access lock)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._held: set[str] = set()

    def acquire(self, owner: str) -> bool:
        """Take the lock for ``owner``; False when another session has it ([IN-USE])."""
        with self._guard:
            if owner in self._held:
                return False
            self._held.add(owner)
            return True

    def release(self, owner: str) -> None:
        """Give the lock back (after UPDATE or when the session ends in any way)."""
        with self._guard:
            self._held.discard(owner)
