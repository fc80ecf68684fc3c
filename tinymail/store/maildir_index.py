"""The scan half of a Maildir folder: directory listing, Dovecot-compatible UIDs, \\Recent.

Rules:
- A sync is cheap when nothing changed: it compares the mtimes of new/ and
  cur/ and the uidlist's inode and size with the last scan. Otherwise it is
  one listdir of new/ and one of cur/ (no per-message stat).
- Unknown base names get UIDs under the uidlist dotlock, after listing the
  directories again inside the lock (research 3.4), in delivery order.
- A file that vanished from one listing is looked for in a second one before
  it counts as expunged: readdir may miss an entry renamed concurrently.
- \\Recent (RFC 3501 2.3.2): a message in new/ is recent for the one session
  whose sync moves it to cur/ (under the lock), so exactly one session sees it.
- Flag changes get a modseq and go to a bounded log, so each session can ask
  what changed since it last looked without keeping flags of its own.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tinymail.store import maildir_names as mn
from tinymail.store import uidlist as ul
from tinymail.store.mailbox import MailboxError

MAX_CHANGE_LOG = 50_000


@dataclass(slots=True)
class Entry:
    """What the index knows about one message."""

    name: str  # file name in its directory
    in_new: bool
    letters: str
    modseq: int
    size: int = -1
    date: float = -1.0


class MaildirIndex:
    """Scan state of one Maildir; MaildirFolder adds the message operations on top."""

    def __init__(self, path: Path, new_uidvalidity: Callable[[], int]) -> None:
        self.path = path
        self._new_uidvalidity = new_uidvalidity
        self._lock = threading.RLock()
        self._uidlist: ul.UidList | None = None
        self._msgs: dict[int, Entry] = {}
        self._uids: tuple[int, ...] = ()
        self._stamp: tuple[int, ...] = ()
        self._keywords: tuple[str, ...] = ()
        self._modseq = 0
        self._log: list[tuple[int, int]] = []
        self._log_floor = 0
        # plain strings: pathlib joins cost more than the syscalls in FETCH 1:*
        self._new_dir = os.path.join(path, "new")
        self._cur_dir = os.path.join(path, "cur")
        self._uidlist_path = os.path.join(path, ul.UIDLIST)
        self._keywords_path = os.path.join(path, mn.KEYWORDS_FILE)
        self._waiting: list[int] = []  # UIDs still in new/: not yet anyone's \Recent
        self._quiet_holds = 0  # try_hold(quiet=True) depth of the lock's holder

    # -- scanning -------------------------------------------------------------------------

    def _stat_stamp(self) -> tuple[int, ...]:
        # Runs before every command of every session: plain string paths, four stat() calls.
        try:
            new = os.stat(self._new_dir).st_mtime_ns
            cur = os.stat(self._cur_dir).st_mtime_ns
        except FileNotFoundError as exc:
            raise MailboxError("NONEXISTENT", "Mailbox does not exist") from exc
        try:
            st = os.stat(self._uidlist_path)
            ustamp = (st.st_ino, st.st_size)
        except FileNotFoundError:
            ustamp = (0, 0)
        try:
            kw = os.stat(self._keywords_path).st_mtime_ns
        except FileNotFoundError:
            kw = 0
        return (new, cur, *ustamp, kw)

    def _listing(self) -> dict[str, tuple[str, bool]]:
        found: dict[str, tuple[str, bool]] = {}
        for sub, in_new in ((self._new_dir, True), (self._cur_dir, False)):
            for entry in os.listdir(sub):
                if entry[0] != ".":
                    found[entry.partition(":")[0]] = (entry, in_new)
        return found

    def _read_uidlist(self) -> ul.UidList:
        current = ul.read(self.path / ul.UIDLIST, self._uidlist)
        if current is None:
            # The list is lost or never existed: a new UIDVALIDITY and new UIDs (RFC 3501 2.3.1.1).
            current = ul.UidList(uidvalidity=self._new_uidvalidity(), guid=ul.new_guid())
            ul.rewrite(self.path / ul.UIDLIST, current, {})
        self._uidlist = current
        return current

    def _assign_locked(self) -> dict[str, tuple[str, bool]]:
        """With the dotlock held: list again and give every unknown base name a UID."""
        current = self._read_uidlist()
        listing = self._listing()
        unknown = sorted((b for b in listing if b not in current.records), key=mn.sort_key)
        if unknown:
            records = [(current.next_uid + i, "", listing[b][0]) for i, b in enumerate(unknown)]
            ul.append(self.path / ul.UIDLIST, current, records)
        stale = len(current.records) - len(listing)
        if stale > 1000 and stale > len(listing):
            names = {b: entry for b, (entry, _) in listing.items()}
            ul.rewrite(self.path / ul.UIDLIST, current, names)  # drop expunged records
            self._pruned(set(listing))
        return listing

    def try_hold(self, quiet: bool = False) -> bool:
        """Hold the folder for the calling thread only if no other thread holds it, so the
        event loop can run a small read without ever waiting; pair with release_hold.

        With `quiet`, also only if nothing changed on disk since the last scan; while such
        a hold lasts, a sync reports the last scan (no listing, no dotlock: the next command
        rescans), so a whole small IMAP command never blocks."""
        if not self._lock.acquire(blocking=False):
            return False
        if quiet:
            try:
                unchanged = bool(self._stamp) and self._stat_stamp() == self._stamp
            except MailboxError:
                unchanged = False
            if not unchanged:
                self._lock.release()
                return False
            self._quiet_holds += 1
        return True

    def release_hold(self, quiet: bool = False) -> None:
        """End a successful try_hold (with the same `quiet`)."""
        if quiet:
            self._quiet_holds -= 1
        self._lock.release()

    def _rescan(self, force: bool = False) -> None:
        if self._quiet_holds and not force:
            return  # held by the event loop (try_hold): the next command rescans
        stamp = self._stat_stamp()
        if stamp == self._stamp and not force:
            return
        if stamp[4] != (self._stamp[4] if self._stamp else -1):
            self._keywords = mn.read_keywords(self.path)
        current = ul.read(self.path / ul.UIDLIST, self._uidlist)
        # No list yet (a first open): the listing under the lock below is the one that counts.
        listing = self._listing() if current is not None else {}
        if current is None or any(b not in current.records for b in listing):
            with ul.DotLock(self.path / ul.UIDLIST):
                listing = self._assign_locked()
                current = self._uidlist
        assert current is not None
        self._uidlist = current
        records = current.records
        if any(ul.base_name(m.name) not in listing for m in self._msgs.values()):
            listing.update(self._listing())  # a second look before calling them expunged
        self._apply(listing, records)
        self._stamp = stamp

    def _apply(
        self, listing: dict[str, tuple[str, bool]], records: dict[str, tuple[int, str]]
    ) -> None:
        msgs: dict[int, Entry] = {}
        old = self._msgs
        waiting = []
        for base, (entry, in_new) in listing.items():
            rec = records.get(base)
            if rec is None:
                continue
            uid = rec[0]
            if in_new:
                waiting.append(uid)
            prev = old.get(uid)
            if prev is not None and prev.name == entry and prev.in_new == in_new:
                msgs[uid] = prev  # unchanged: the common case on a rescan
                continue
            letters = mn.split_info(entry)[1]
            if prev is None:
                msgs[uid] = Entry(entry, in_new, letters, self._modseq)
                continue
            if prev.letters != letters:
                self._changed(uid, prev)
            prev.name, prev.in_new, prev.letters = entry, in_new, letters
            msgs[uid] = prev
        if msgs.keys() != old.keys():
            self._uids = tuple(sorted(msgs))
        self._msgs = msgs
        self._waiting = waiting

    def _changed(self, uid: int, msg: Entry) -> None:
        self._modseq += 1
        msg.modseq = self._modseq
        self._log.append((self._modseq, uid))
        if len(self._log) > MAX_CHANGE_LOG:
            drop = len(self._log) // 2
            self._log_floor = self._log[drop - 1][0]
            del self._log[:drop]

    def _after_own_change(self, before: tuple[int, ...]) -> None:
        # Our own renames and unlinks are already in memory; if nothing else had changed
        # before them, take the new directory stamps instead of rescanning 100,000 names.
        # (Same-process sessions share this object; other processes are caught by the next
        # change they make, as with Dovecot's mtime checks.)
        self._stamp = self._stat_stamp() if before == self._stamp else ()

    def _claim_recent(self) -> frozenset[int]:
        waiting, self._waiting = self._waiting, []
        if not waiting:
            return frozenset()
        claimed = set()
        before = self._stat_stamp()
        with ul.DotLock(self.path / ul.UIDLIST):
            for uid in waiting:
                msg = self._msgs.get(uid)
                if msg is None or not msg.in_new:
                    continue
                target = mn.with_letters(msg.name, msg.letters)
                try:  # plain strings: pathlib joins cost more than the renames
                    os.rename(f"{self._new_dir}/{msg.name}", f"{self._cur_dir}/{target}")
                except FileNotFoundError:
                    continue  # another process moved it first: it is that session's \\Recent
                msg.name, msg.in_new = target, False
                claimed.add(uid)
        self._after_own_change(before)
        return frozenset(claimed)

    def _pruned(self, live: set[str]) -> None:
        """Hook: the uidlist was rewritten to hold only `live` base names."""
