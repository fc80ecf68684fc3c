"""POP3's view of a user's INBOX, over a Maildir or an mbox file, plus the POP3 session lock.

Rules:
- The listing is taken once per session (RFC 1939 §5: numbers are fixed for the session);
  mail delivered during the session appears in the next one.
- UIDs and UIDVALIDITY are the IMAP ones (dovecot-uidlist for Maildir, X-UID/X-IMAPbase for
  mbox), so the UIDL values agree with IMAP and with Dovecot's default pop3_uidl_format.
- Sizes are with CRLF line ends, as POP3 sends them (RFC 1939 §5); Maildir names carry them
  (``,W=``) or the folder counts them once (and caches them on disk); the mbox listing computes
  them in its single parse.
- A Maildir message never changes under its UID (research 3.3): the shared folder object
  remembers each size (MaildirFolder.sizes, one hold of its lock for the whole listing), so the
  next session's listing is a directory check plus dictionary lookups.
- RETR marks the message \\Seen, as Dovecot does by default (pop3_no_flag_updates = no); the
  \\Seen flags and the deletions of a session are applied together at QUIT (``update``): one
  rewrite of an mbox, not two.
- An mbox session serves RETR from the bytes its listing parsed (read under the lock, never
  changed afterwards): no lock and no stat per RETR, and a message another session expunged
  meanwhile can still be retrieved (as RFC 2180 4.1.1 allows IMAP).
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
from tinymail.store.mbox import INBOX, Entry, folder_path, message_bytes
from tinymail.store.mbox_folder import Meta, Snapshot, open_folder

SEEN = frozenset({"\\Seen"})


class FolderBusy(Exception):
    """``read_now`` would have to wait for another thread: read in a worker instead."""


@dataclass(frozen=True, slots=True)
class DropListing:
    """The messages of the INBOX, oldest first: parallel lists of UIDs and CRLF sizes."""

    uidvalidity: int
    uids: list[int]
    sizes: list[int]  # octets with CRLF line ends


class Maildrop(Protocol):
    """What a POP3 session needs from the store (all calls may block: run them in a thread)."""

    def listing(self) -> DropListing:
        """The messages now in the INBOX, oldest first."""
        ...

    def read(self, uid: int) -> bytes | None:
        """The stored message (LF line ends); None when another session removed it."""
        ...

    def read_now(self, uid: int) -> bytes | None:
        """``read`` for the event loop: never waits for another thread (FolderBusy)."""
        ...

    def update(self, seen: Sequence[int], deleted: Sequence[int]) -> None:
        """QUIT (the UPDATE state): set \\Seen on the messages retrieved in the session and
        remove the deleted ones for good."""
        ...


class MaildirDrop:
    """The INBOX of a Maildir, through the shared IMAP folder object (same UIDs)."""

    def __init__(self, root: Path) -> None:
        self._folder: MaildirFolder = MaildirStore(root).open(INBOX)

    def listing(self) -> DropListing:
        """See ``Maildrop.listing``."""
        view = self._folder.sync(claim_recent=False)
        sizes = self._folder.sizes(view.uids)
        uids = [uid for uid in view.uids if uid in sizes]  # not expunged meanwhile
        return DropListing(view.uidvalidity, uids, [sizes[uid] for uid in uids])

    def read(self, uid: int) -> bytes | None:
        """See ``Maildrop.read``."""
        try:
            return self._folder.read(uid)
        except MailboxError:
            return None

    def read_now(self, uid: int) -> bytes | None:
        """See ``Maildrop.read_now``: the shared folder may be busy in an IMAP worker."""
        if not self._folder.try_hold():
            raise FolderBusy
        try:
            return self.read(uid)
        finally:
            self._folder.release_hold()

    def update(self, seen: Sequence[int], deleted: Sequence[int]) -> None:
        """See ``Maildrop.update``."""
        if seen:
            self._folder.store_flags(list(seen), SEEN, FlagMode.ADD)
        if deleted:
            self._folder.expunge(deleted)


class MboxDrop:
    """The INBOX mbox file (data_dir/mail/OWNER/INBOX)."""

    def __init__(self, path: Path) -> None:
        self._folder = open_folder(path)
        self._snap: Snapshot | None = None

    def listing(self) -> DropListing:
        """See ``Maildrop.listing``."""
        snap = self._snap = self._folder.load()
        entries = snap.by_uid
        return DropListing(snap.uidvalidity, list(entries), [e.size for e in entries.values()])

    def read(self, uid: int) -> bytes | None:
        """See ``Maildrop.read``: from the listing's snapshot."""
        snap = self._snap
        entry = None if snap is None else snap.by_uid.get(uid)
        if snap is None or entry is None:
            return None
        return message_bytes(snap.data, entry)

    def read_now(self, uid: int) -> bytes | None:
        """See ``Maildrop.read_now``: the snapshot needs no lock."""
        return self.read(uid)

    def update(self, seen: Sequence[int], deleted: Sequence[int]) -> None:
        """See ``Maildrop.update``: one rewrite of the file, none when nothing changes."""
        seen_set, deleted_set = set(seen), set(deleted)

        def change(uid: int, entry: Entry) -> Meta:
            if uid in deleted_set:
                return None
            flags = entry.flags | SEEN if uid in seen_set else entry.flags
            return uid, flags, entry.recent

        self._folder.edit(change)


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
