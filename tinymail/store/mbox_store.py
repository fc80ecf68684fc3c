"""A user's mbox folders as a MailStore: one mbox file per folder in data_dir/mail/OWNER.

Rules (research/imap-anchors.md 4; the file format is in ``mbox``):
- INBOX is the file ``INBOX``; folder ``a.b`` is the sibling file ``a.b`` (the IMAP hierarchy
  separator is ``.``, names kept in modified UTF-7 as Dovecot does). A name with a ``lock``
  level is refused and never listed: ``X.lock`` and ``X.lock.HOST.PID.TID`` are X's dotlock
  files. Names are validated like Maildir ones (``maildir_folders.normalize_name``).
- Files starting with ``.`` are ours, never folders: ``.subscriptions`` (Dovecot's version 2
  format, as Dovecot keeps it for mbox), ``.uidvalidity`` and ``.NAME.uidstate``
  (``mbox_folder``), and the temporary files of rewrites.
- Folder objects are shared per process (one per file), so every session sees the others'
  changes; recently used ones stay warm after their last session ends.
- Deleting a folder removes its file and UID state, so a re-created one gets a new
  UIDVALIDITY. Renaming INBOX moves its messages into the new folder (RFC 3501 6.3.5): a copy,
  then an expunge, so mail delivered meanwhile stays in INBOX.
"""

from __future__ import annotations

import collections
import os
import threading
import weakref
from pathlib import Path

from tinymail.proto.imap import utf7
from tinymail.store.mailbox import SEPARATOR, FolderInfo, MailboxError
from tinymail.store.maildir_folders import SPECIAL_USE, normalize_name
from tinymail.store.mbox import INBOX
from tinymail.store.mbox_folder import state_path
from tinymail.store.mbox_mailbox import MboxMailbox
from tinymail.store.safeio import fsync_dir, unlink_quietly
from tinymail.store.subscriptions import read_subscriptions, set_subscribed, subscribe

SUBSCRIPTIONS = ".subscriptions"
KEEP_WARM = 16

_registry: weakref.WeakValueDictionary[Path, MboxMailbox] = weakref.WeakValueDictionary()
_recent: collections.OrderedDict[Path, MboxMailbox] = collections.OrderedDict()
_registry_lock = threading.Lock()


def _forget(paths: list[Path]) -> None:
    with _registry_lock:
        for path in paths:
            _registry.pop(path, None)
            _recent.pop(path, None)


def _checked(name: str) -> str:
    name = normalize_name(name)
    if "lock" in name.split(SEPARATOR)[1:]:
        raise MailboxError("CANNOT", "Invalid mailbox name: a level may not be called lock")
    return name


class MboxStore:
    """The mbox folders under one owner directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, name: str) -> Path:
        return self.root / (INBOX if name == INBOX else utf7.encode(name))

    def _touch(self, path: Path) -> bool:
        """Create an empty mbox; False when it already exists."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            return False
        os.close(fd)
        return True

    def ensure_defaults(self) -> None:
        """INBOX plus Drafts, Sent, Trash, Junk, Archive, subscribed (first login)."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        defaults = [INBOX, *SPECIAL_USE]
        created = False
        for name in defaults:
            created |= self._touch(self._path(name))
        if created:
            fsync_dir(self.root)
        if not set(defaults) <= set(self.subscriptions()):
            subscribe(self.root / SUBSCRIPTIONS, defaults)  # one durable write, not one each

    def folders(self) -> list[FolderInfo]:
        """INBOX and every folder file, plus missing parents as non-selectable."""
        names = []
        with os.scandir(self.root) as entries:
            for entry in entries:
                if entry.name.startswith(".") or entry.name == INBOX or not entry.is_file():
                    continue
                try:
                    names.append(_checked(utf7.decode(entry.name)))
                except (utf7.Utf7Error, MailboxError):
                    continue  # a dotlock, or not a name we could have made: leave it alone
        present = set(names)
        implied = {
            SEPARATOR.join(n.split(SEPARATOR)[:i])
            for n in names
            for i in range(1, n.count(SEPARATOR) + 1)
        } - present
        out = [FolderInfo(INBOX, True, None)]
        for name in sorted((present | implied) - {INBOX}):
            out.append(FolderInfo(name, name in present, SPECIAL_USE.get(name)))
        return out

    def open(self, name: str) -> MboxMailbox:
        """The shared folder object for ``name``."""
        name = _checked(name)
        path = self._path(name)
        if name == INBOX:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        elif not path.is_file():
            raise MailboxError("NONEXISTENT", "Mailbox does not exist")
        with _registry_lock:
            box = _registry.get(path)
            if box is None:
                box = _registry[path] = MboxMailbox(path, name)
            _recent[path] = box
            _recent.move_to_end(path)
            while len(_recent) > KEEP_WARM:
                _recent.popitem(last=False)
            return box

    def create(self, name: str) -> None:
        """Create the folder and its missing parents (RFC 3501 6.3.3)."""
        name = _checked(name[:-1] if name.endswith(SEPARATOR) else name)
        if name == INBOX or self._path(name).is_file():
            raise MailboxError("ALREADYEXISTS", "Mailbox already exists")
        parts = name.split(SEPARATOR)
        for depth in range(1, len(parts)):
            self._touch(self._path(SEPARATOR.join(parts[:depth])))
        if not self._touch(self._path(name)):
            raise MailboxError("ALREADYEXISTS", "Mailbox already exists")
        fsync_dir(self.root)

    def delete(self, name: str) -> None:
        """Remove the folder's file and UID state; its children stay (RFC 3501 6.3.4)."""
        name = _checked(name)
        if name == INBOX:
            raise MailboxError("CANNOT", "INBOX cannot be deleted")
        path = self._path(name)
        try:
            os.unlink(path)
        except FileNotFoundError as exc:
            raise MailboxError("NONEXISTENT", "Mailbox does not exist") from exc
        unlink_quietly(state_path(path))
        _forget([path])
        fsync_dir(self.root)

    def rename(self, old: str, new: str) -> None:
        """Rename a folder and its children; INBOX moves its messages (RFC 3501 6.3.5)."""
        old, new = _checked(old), _checked(new)
        target = self._path(new)
        if new == INBOX or target.exists():
            raise MailboxError("ALREADYEXISTS", "Target mailbox already exists")
        if new.startswith(old + SEPARATOR):
            raise MailboxError("CANNOT", "Cannot rename a mailbox into itself")
        if old == INBOX:
            self.create(new)
            inbox = self.open(INBOX)
            uids = inbox.sync(claim_recent=False).uids
            inbox.expunge([src for src, _ in inbox.copy_to(uids, self.open(new))])
            return
        source = self._path(old)
        if not source.is_file():
            raise MailboxError("NONEXISTENT", "Mailbox does not exist")
        prefix = utf7.encode(old) + SEPARATOR
        moves = [(source, target)] + [
            (self.root / e, self.root / (utf7.encode(new) + e[len(prefix) - 1 :]))
            for e in os.listdir(self.root)
            if e.startswith(prefix) and "lock" not in e.split(SEPARATOR)  # dotlocks stay
        ]
        for src, dst in moves:
            os.rename(src, dst)
            if state_path(src).exists():
                os.rename(state_path(src), state_path(dst))
        fsync_dir(self.root)
        _forget([src for src, _ in moves])

    def subscriptions(self) -> list[str]:
        """Subscribed names from the Dovecot subscriptions file (version 1 or 2)."""
        return read_subscriptions(self.root / SUBSCRIPTIONS)

    def set_subscribed(self, name: str, subscribed: bool) -> None:
        """Add or remove `name` in the subscriptions file (write new, rename, under a lock)."""
        set_subscribed(self.root / SUBSCRIPTIONS, normalize_name(name), subscribed)
