"""A user's Maildir++ folder tree as a MailStore.

Rules (research/imap-anchors.md 3.2, reliability-security.md I7/I8):
- INBOX is the Maildir root; folder `a.b` is the sibling directory `.a.b`
  (the IMAP hierarchy separator is `.`), its name stored in modified UTF-7 as
  Dovecot does, with an empty `maildirfolder` file inside.
- Names are validated before they touch the file system: no empty
  components (so no leading, trailing or doubled `.`), no `/`, `\\`, leading
  `~`, control characters or wildcards; the result always stays inside the
  user's Maildir.
- Subscriptions go to `subscriptions` in Dovecot's version 2 format
  (`V\\t2\\n\\n`, one name per line, hierarchy levels separated by tabs).
- UIDVALIDITY comes from `dovecot-uidvalidity` (hex, the last value handed
  out): each new uidlist gets max(last + 1, now), so a deleted and re-created
  folder never reuses one.
- Folder objects are shared per process (one per path) so that every session
  sees the others' changes immediately.
"""

from __future__ import annotations

import collections
import os
import shutil
import threading
import time
import weakref
from pathlib import Path

from tinymail.proto.imap import utf7
from tinymail.store import uidlist as ul
from tinymail.store.mailbox import SEPARATOR, FolderInfo, MailboxError
from tinymail.store.maildir import ensure_maildir
from tinymail.store.maildir_folder import MaildirFolder
from tinymail.store.safeio import atomic_replace
from tinymail.store.subscriptions import read_subscriptions, set_subscribed, subscribe

SPECIAL_USE = {
    "Drafts": "\\Drafts",
    "Sent": "\\Sent",
    "Trash": "\\Trash",
    "Junk": "\\Junk",
    "Archive": "\\Archive",
}
SUBSCRIPTIONS = "subscriptions"
UIDVALIDITY_FILE = "dovecot-uidvalidity"
MAX_NAME_BYTES = 200  # Dovecot MAILBOX_MAX_HIERARCHY_NAME_LENGTH; keeps paths well under NAME_MAX
MAX_LEVELS = 20
_FORBIDDEN = set('/\\*%"') | {chr(c) for c in range(0x20)} | {"\x7f"}

_registry: weakref.WeakValueDictionary[Path, MaildirFolder] = weakref.WeakValueDictionary()
_registry_lock = threading.Lock()
# Recently used folders stay warm after their last session ends (a client reconnecting, a
# second SELECT): a rescan of 100,000 names is what this saves.
_recent: collections.OrderedDict[Path, MaildirFolder] = collections.OrderedDict()
KEEP_WARM = 16


def normalize_name(name: str) -> str:
    """The canonical form of a folder name (INBOX in any case becomes INBOX), or MailboxError."""
    parts = name.split(SEPARATOR)
    if parts[0].upper() == "INBOX":
        parts[0] = "INBOX"
    if any(not p for p in parts):
        raise MailboxError("CANNOT", "Invalid mailbox name: empty hierarchy level")
    if len(parts) > MAX_LEVELS:
        raise MailboxError("CANNOT", "Invalid mailbox name: too many levels")
    if parts[0].startswith("~") or any(ch in _FORBIDDEN for ch in name):
        raise MailboxError("CANNOT", "Invalid mailbox name: forbidden character")
    if len(utf7.encode(name).encode()) > MAX_NAME_BYTES:
        raise MailboxError("CANNOT", "Invalid mailbox name: too long")
    return SEPARATOR.join(parts)


def _forget(paths: list[Path]) -> None:
    with _registry_lock:
        for path in paths:
            _registry.pop(path, None)
            _recent.pop(path, None)


class MaildirStore:
    """The folders under one Maildir root."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _dir(self, name: str) -> Path:
        if name == "INBOX":
            return self.root
        return self.root / ("." + utf7.encode(name))

    def _new_uidvalidity(self) -> int:
        path = self.root / UIDVALIDITY_FILE
        with ul.DotLock(path):
            try:
                last = int(path.read_text().strip() or "0", 16)
            except (FileNotFoundError, ValueError):
                last = 0
            value = max(last + 1, int(time.time())) & 0xFFFFFFFF or 1
            atomic_replace(path, f"{value:08x}\n".encode())
            return value

    def ensure_defaults(self) -> None:
        """INBOX plus Drafts, Sent, Trash, Junk, Archive, subscribed (first login)."""
        ensure_maildir(self.root)
        existing = {f.name for f in self.folders()}
        defaults = ["INBOX", *SPECIAL_USE]
        for name in defaults:
            if name not in existing:
                try:
                    self.create(name)
                except MailboxError as exc:
                    if exc.code != "ALREADYEXISTS":  # a concurrent first login made it
                        raise
        if not set(defaults) <= set(self.subscriptions()):
            subscribe(self.root / SUBSCRIPTIONS, defaults)  # one durable write, not one each

    def folders(self) -> list[FolderInfo]:
        """INBOX and every folder directory, plus missing parents as non-selectable."""
        names = []
        for entry in os.listdir(self.root):
            if not entry.startswith(".") or entry.startswith("..") or len(entry) < 2:
                continue
            try:
                name = normalize_name(utf7.decode(entry[1:]))
            except (utf7.Utf7Error, MailboxError):
                continue  # not a folder name we could have made; leave it alone
            if (self.root / entry / "cur").is_dir():
                names.append(name)
        present = set(names)
        implied = (
            {
                SEPARATOR.join(n.split(SEPARATOR)[:i])
                for n in names
                for i in range(1, n.count(SEPARATOR) + 1)
            }
            - present
            - {"INBOX"}
        )
        out = [FolderInfo("INBOX", True, None)]
        for name in sorted(present | implied):
            out.append(FolderInfo(name, name in present, SPECIAL_USE.get(name)))
        return out

    def open(self, name: str) -> MaildirFolder:
        """The shared folder object for `name`."""
        name = normalize_name(name)
        path = self._dir(name)
        if name == "INBOX":
            ensure_maildir(path)
        elif not (path / "cur").is_dir():
            raise MailboxError("NONEXISTENT", "Mailbox does not exist")
        with _registry_lock:
            folder = _registry.get(path)
            if folder is None:
                folder = MaildirFolder(path, name, self._new_uidvalidity)
                _registry[path] = folder
            _recent[path] = folder
            _recent.move_to_end(path)
            while len(_recent) > KEEP_WARM:
                _recent.popitem(last=False)
            return folder

    def create(self, name: str) -> None:
        """Create a folder (RFC 3501 6.3.3: a trailing separator only names the hierarchy)."""
        name = normalize_name(name[:-1] if name.endswith(SEPARATOR) else name)
        path = self._dir(name)
        if name == "INBOX" or (path / "cur").is_dir():
            raise MailboxError("ALREADYEXISTS", "Mailbox already exists")
        # RFC 3501 6.3.3: create the superior names too, so none is left \\Noselect
        parts = name.split(SEPARATOR)
        for depth in range(1, len(parts) + 1):
            folder = self._dir(SEPARATOR.join(parts[:depth]))
            if folder != self.root and not (folder / "cur").is_dir():
                ensure_maildir(folder)
                (folder / "maildirfolder").touch()

    def delete(self, name: str) -> None:
        """Remove the folder's directory; its children stay (RFC 3501 6.3.4)."""
        name = normalize_name(name)
        if name == "INBOX":
            raise MailboxError("CANNOT", "INBOX cannot be deleted")
        path = self._dir(name)
        if not (path / "cur").is_dir():
            raise MailboxError("NONEXISTENT", "Mailbox does not exist")
        # Rename first so that a half-finished removal never looks like a folder.
        trash = self.root / f"..deleted.{os.getpid()}.{time.monotonic_ns()}"
        os.rename(path, trash)
        _forget([path])
        shutil.rmtree(trash, ignore_errors=True)

    def rename(self, old: str, new: str) -> None:
        """Rename a folder and its children; INBOX moves its messages (RFC 3501 6.3.5)."""
        old, new = normalize_name(old), normalize_name(new)
        target = self._dir(new)
        if new == "INBOX" or target.exists():
            raise MailboxError("ALREADYEXISTS", "Target mailbox already exists")
        if new.startswith(old + SEPARATOR):
            raise MailboxError("CANNOT", "Cannot rename a mailbox into itself")
        if old == "INBOX":
            self.create(new)
            for sub in ("new", "cur"):
                for entry in os.listdir(self.root / sub):
                    os.rename(self.root / sub / entry, target / sub / entry)
            return
        source = self._dir(old)
        if not (source / "cur").is_dir():
            raise MailboxError("NONEXISTENT", "Mailbox does not exist")
        prefix = "." + utf7.encode(old) + SEPARATOR
        children = [e for e in os.listdir(self.root) if e.startswith(prefix)]
        os.rename(source, target)
        for child in children:
            os.rename(
                self.root / child, self.root / ("." + utf7.encode(new) + child[len(prefix) - 1 :])
            )
        _forget([source, *(self.root / child for child in children)])

    def subscriptions(self) -> list[str]:
        """Subscribed names from the Dovecot subscriptions file (version 1 or 2)."""
        return read_subscriptions(self.root / SUBSCRIPTIONS)

    def set_subscribed(self, name: str, subscribed: bool) -> None:
        """Add or remove `name` in the subscriptions file (write new, rename, under a lock)."""
        set_subscribed(self.root / SUBSCRIPTIONS, normalize_name(name), subscribed)
