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
from collections.abc import Callable, Collection
from pathlib import Path

from tinymail.store import maildir_names as mn
from tinymail.store import uidlist as ul
from tinymail.store.changelog import ChangeLog
from tinymail.store.mailbox import MailboxError

# What the index knows about one message's file: (name in its directory, in new/, flag
# letters). A plain tuple of strings and a bool, not an object: CPython's collector stops
# tracking such tuples, so a first scan of 10,000 messages does not set off a full
# collection of the server's heap (20-40 ms) and later ones never walk them.
Entry = tuple[str, bool, str]


class MaildirIndex:
    """Scan state of one Maildir; MaildirFolder adds the message operations on top."""

    def __init__(self, path: Path, new_uidvalidity: Callable[[], int]) -> None:
        self.path = path
        self._new_uidvalidity = new_uidvalidity
        self._lock = threading.RLock()
        self._uidlist: ul.UidList | None = None
        self._msgs: dict[int, Entry] = {}
        # per UID, filled as they become known: RFC822.SIZE, INTERNALDATE
        self._sizes: dict[int, int] = {}
        self._dates: dict[int, float] = {}
        self._uids: tuple[int, ...] = ()
        self._stamp: tuple[int, ...] = ()
        self._keywords: tuple[str, ...] = ()
        self._changes = ChangeLog()
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

    def _listing(self) -> dict[str, Entry]:
        found: dict[str, Entry] = {}
        info_letters = mn.info_letters
        for sub, in_new in ((self._new_dir, True), (self._cur_dir, False)):
            for name in os.listdir(sub):
                if name[0] != ".":
                    base, _, info = name.partition(":")
                    found[base] = (name, in_new, info_letters(info))
        return found

    def _assign_locked(self) -> dict[str, Entry]:
        """With the dotlock held: read the list, list again and give every unknown base name
        a UID. A folder without a list (lost or never made) gets a new UIDVALIDITY and new
        UIDs (RFC 3501 2.3.1.1), written with the list in one go."""
        current = ul.read(self.path / ul.UIDLIST, self._uidlist)
        if current is None:
            current = ul.UidList(uidvalidity=self._new_uidvalidity(), guid=ul.new_guid())
        listing = self._listing()
        records = current.records
        unknown = mn.sorted_bases([b for b in listing if b not in records])
        if unknown or not current.inode:
            ul.assign(self.path / ul.UIDLIST, current, unknown)
        self._uidlist = current
        stale = len(current.records) - len(listing)
        if stale > 1000 and stale > len(listing):
            names = {b: entry[0] for b, entry in listing.items()}
            ul.rewrite(self.path / ul.UIDLIST, current, names)  # drop expunged records
            self._pruned(set(listing))
        return listing

    def try_hold(self, quiet: bool = False) -> bool:
        """Hold the folder for the calling thread only if no other thread holds it, so the
        event loop can run a small read without ever waiting; pair with release_hold.

        With `quiet`, also only if nothing changed on disk since the last scan and no
        message waits in new/ to be claimed as \\Recent; while such a hold lasts, a sync
        reports the last scan (no listing, no dotlock, no rename: the next command rescans),
        so a whole small IMAP command never blocks."""
        if not self._lock.acquire(blocking=False):
            return False
        if quiet:
            try:
                unchanged = bool(self._stamp) and self._stat_stamp() == self._stamp
            except MailboxError:
                unchanged = False
            unchanged = unchanged and not self._waiting
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
                # The list as we leave it (nobody else writes it while we hold the lock): our
                # own write must not make the next command scan everything again.
                st = os.stat(self._uidlist_path)
                stamp = (stamp[0], stamp[1], st.st_ino, st.st_size, stamp[4])
        assert current is not None
        self._uidlist = current
        records = current.records
        if any(ul.base_name(m[0]) not in listing for m in self._msgs.values()):
            listing.update(self._listing())  # a second look before calling them expunged
        self._apply(listing, records)
        self._stamp = stamp

    def _apply(self, listing: dict[str, Entry], records: dict[str, tuple[int, str]]) -> None:
        msgs: dict[int, Entry] = {}
        old = self._msgs
        waiting = []
        record_of, old_of = records.get, old.get
        for base, entry in listing.items():
            rec = record_of(base)
            if rec is None:
                continue
            uid = rec[0]
            msgs[uid] = entry
            if entry[1]:
                waiting.append(uid)
            prev = old_of(uid)
            if prev is not None and prev[2] != entry[2]:
                self._changes.record(uid)
        if msgs.keys() != old.keys():
            self._uids = tuple(sorted(msgs))
            self._forget(old.keys() - msgs.keys())
        self._msgs = msgs
        self._waiting = waiting

    def _forget(self, uids: Collection[int]) -> None:
        """Drop what is remembered about messages that are gone."""
        for uid in uids:
            self._sizes.pop(uid, None)
            self._dates.pop(uid, None)
        self._changes.forget(uids)

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
                entry = self._msgs.get(uid)
                if entry is None or not entry[1]:
                    continue
                name, _, letters = entry
                target = mn.with_letters(name, letters)
                try:  # plain strings: pathlib joins cost more than the renames
                    os.rename(f"{self._new_dir}/{name}", f"{self._cur_dir}/{target}")
                except FileNotFoundError:
                    continue  # another process moved it first: it is that session's \\Recent
                self._msgs[uid] = (target, False, letters)
                claimed.add(uid)
        self._after_own_change(before)
        return frozenset(claimed)

    def _pruned(self, live: set[str]) -> None:
        """Hook: the uidlist was rewritten to hold only `live` base names."""
