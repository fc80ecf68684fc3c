"""One mbox folder as an IMAP Mailbox: shared per process, flags in memory, changes diffed.

Rules (the file format is in ``mbox``, the locked rewrites in ``mbox_folder``):
- One MboxMailbox per file per process (``mbox_store.MboxStore.open``), shared by every
  session and guarded by a threading lock, as with Maildir: one session's STORE is seen by the
  others at their next command; changes by other processes (mutt, a delivery, POP3) are found
  by ``sync``.
- ``sync`` costs one stat() while the file is unchanged (IDLE polls it four times a second);
  otherwise the file is re-read under the mbox lock, new messages get UIDs, and the flags are
  diffed against the last snapshot: each change gets a modseq in a bounded log, so every
  session can ask what changed since it last looked (``flag_changes``).
- Messages are served from the last snapshot (bytes read under the lock, immutable): a message
  expunged meanwhile by another process can still be fetched, which RFC 2180 4.1.1 allows.
- INTERNALDATE is the date of the From line (delivery or APPEND time, RFC 4155 asctime in
  local time); APPEND without a date and COPY keep Dovecot's ``MAILER-DAEMON`` / original line.
- Keywords are matched case-insensitively (RFC 3501 2.3.2): a new spelling of a known keyword
  takes the known one; at most ``MAX_KEYWORDS`` per folder, like the Maildir store.
"""

from __future__ import annotations

import calendar
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from tinymail.store.changelog import ChangeLog
from tinymail.store.mailbox import FlagMode, Mailbox, MailboxError, View
from tinymail.store.maildir_names import MAX_KEYWORDS
from tinymail.store.mbox import Entry, from_line, make_record, message_bytes
from tinymail.store.mbox_folder import MboxFolder, Snapshot

# asctime() at the end of a From line; some writers add a time zone after the year.
_FROM_DATE = re.compile(rb" ([A-Z][a-z]{2}) +(\d{1,2}) (\d\d):(\d\d):(\d\d) (\d{4})")
_MONTHS = {m.encode(): i for i, m in enumerate(calendar.month_abbr) if m}


def from_line_date(line: bytes) -> float:
    """The POSIX time of a From line's asctime() date (local time); 0 when there is none."""
    match = _FROM_DATE.search(line)
    if match is None or match.group(1) not in _MONTHS:
        return 0.0
    month, day, hh, mm, ss, year = match.groups()
    fields = (int(year), _MONTHS[month], int(day), int(hh), int(mm), int(ss), 0, 0, -1)
    try:
        return time.mktime(fields)
    except (OverflowError, ValueError):
        return 0.0


def _gone() -> MailboxError:
    return MailboxError("EXPUNGEISSUED", "Message was expunged")


class MboxMailbox:
    """The Mailbox protocol over one mbox file (see the module rules)."""

    def __init__(self, path: Path, name: str) -> None:
        self.name = name
        self.path = path
        self._folder = MboxFolder(path)
        self._lock = threading.RLock()
        self._snap: Snapshot | None = None
        self._unclaimed = False  # the snapshot holds messages nobody claimed as \Recent yet
        self._uids: tuple[int, ...] = ()
        self._flags: dict[int, frozenset[str]] = {}
        self._changes = ChangeLog()
        self._keywords: tuple[str, ...] = ()
        self._envelopes: dict[int, bytes] = {}

    # -- snapshot -----------------------------------------------------------------------

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError as exc:
            if self.name != "INBOX":  # deleted; an INBOX is created by the next lock
                raise MailboxError("NONEXISTENT", "Mailbox does not exist") from exc
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns

    def _refresh(self, claim_recent: bool) -> frozenset[int]:
        """Bring the snapshot up to date (self._lock held); the UIDs claimed as \\Recent."""
        snap = self._snap
        fresh = snap is not None and self._stamp() == snap.stamp
        if fresh and not (claim_recent and self._unclaimed):
            return frozenset()
        snap = self._folder.load(claim_recent)
        flags = {uid: e.flags for uid, e in snap.by_uid.items()}
        for uid, new in flags.items():
            old = self._flags.get(uid)
            if old is not None and old != new:
                self._changes.record(uid)
        if flags.keys() != self._flags.keys():
            self._uids = tuple(sorted(flags))
            for uid in self._envelopes.keys() - flags.keys():
                del self._envelopes[uid]
            self._changes.forget(self._flags.keys() - flags.keys())
        self._flags = flags
        self._learn_keywords(snap.parsed.keywords, *flags.values())
        self._unclaimed = any(e.recent for e in snap.parsed.entries)
        self._snap = snap
        return frozenset(snap.claimed)

    def _learn_keywords(self, *groups: Iterable[str]) -> None:
        known = {k.lower() for k in self._keywords}
        new = [
            k
            for group in groups
            for k in group
            if not k.startswith("\\") and k.lower() not in known
        ]
        if new:
            self._keywords += tuple(dict.fromkeys(new))

    def _entry(self, uid: int) -> tuple[bytes, Entry]:
        snap = self._snap
        entry = None if snap is None else snap.by_uid.get(uid)
        if snap is None or entry is None:
            raise _gone()
        return snap.data, entry

    def _canonical(self, flags: frozenset[str]) -> frozenset[str]:
        """Keywords in the folder's spelling; LIMIT when there would be too many."""
        known = {k.lower(): k for k in self._keywords}
        out = frozenset(known.get(f.lower(), f) if not f.startswith("\\") else f for f in flags)
        new = {f.lower() for f in out if not f.startswith("\\")} - known.keys()
        if len(known) + len(new) > MAX_KEYWORDS:
            raise MailboxError("LIMIT", "Too many keywords in this mailbox")
        return out

    # -- Mailbox protocol ---------------------------------------------------------------

    def sync(self, claim_recent: bool) -> View:
        """Re-read if the file changed; claim unclaimed messages as \\Recent when asked."""
        with self._lock:
            recent = self._refresh(claim_recent)
            assert self._snap is not None
            return View(
                uidvalidity=self._snap.uidvalidity,
                uidnext=self._snap.next_uid,
                uids=self._uids,
                modseq=self._changes.modseq,
                recent=recent,
                keywords=self._keywords,
            )

    def flags(self, uid: int) -> frozenset[str] | None:
        """Flags as of the last sync or own change; None when the message is gone."""
        return self._flags.get(uid)

    def flag_changes(self, since: int) -> list[tuple[int, int]] | None:
        """(uid, modseq) changed after ``since``; None when the log no longer reaches back."""
        with self._lock:
            return self._changes.since(since)

    def status_counts(self) -> tuple[int, int, int]:
        """(messages, not yet claimed as \\Recent, without \\Seen)."""
        with self._lock:
            self._refresh(False)
            assert self._snap is not None
            recent = sum(1 for e in self._snap.parsed.entries if e.recent)
            unseen = sum(1 for f in self._flags.values() if "\\Seen" not in f)
            return len(self._flags), recent, unseen

    def size(self, uid: int) -> int:
        """RFC822.SIZE, computed by the parse (CRLF line ends, metadata and quoting removed)."""
        return self._entry(uid)[1].size

    def internal_date(self, uid: int) -> float:
        """The From line's date."""
        data, entry = self._entry(uid)
        return from_line_date(data[entry.start : entry.header_start])

    def envelope(self, uid: int, compute: Callable[[bytes], bytes]) -> bytes:
        """``compute(header)``, cached in memory while the message exists."""
        cached = self._envelopes.get(uid)
        if cached is None:
            cached = compute(self.read_header(uid))
            with self._lock:
                if uid in self._flags:
                    self._envelopes[uid] = cached
        return cached

    def read(self, uid: int) -> bytes:
        """The message as clients see it (LF line ends)."""
        return message_bytes(*self._entry(uid))

    def read_header(self, uid: int) -> bytes:
        """The header block including the empty line."""
        message = self.read(uid)
        end = message.find(b"\n\n")
        return message if end < 0 else message[: end + 2]

    def store_flags(
        self, uids: Sequence[int], flags: frozenset[str], mode: FlagMode
    ) -> dict[int, tuple[frozenset[str], int]]:
        """One rewrite for all the changes, computed from the flags read under the lock."""
        with self._lock:
            self._refresh(False)
            if mode is not FlagMode.REMOVE:
                flags = self._canonical(flags)
            lowered = {f.lower() for f in flags}
            wanted = set(uids)

            def change(uid: int, have: frozenset[str]) -> frozenset[str]:
                if uid not in wanted:
                    return have
                if mode is FlagMode.ADD:
                    return have | flags
                if mode is FlagMode.REMOVE:
                    return frozenset(f for f in have if f.lower() not in lowered)
                return flags

            if any(
                change(u, self._flags[u]) != self._flags[u] for u in wanted & self._flags.keys()
            ):
                self._folder.edit_flags(change)
                self._refresh(False)
            last = self._changes.last
            return {u: (self._flags[u], last.get(u, 0)) for u in uids if u in self._flags}

    def append(self, data: bytes, flags: frozenset[str], internal_date: float | None) -> int:
        """Add the message (CRLF or LF) at the end of the file; its UID."""
        when = time.time() if internal_date is None else internal_date
        with self._lock:
            record = make_record(data, from_line("MAILER-DAEMON", when))
            (uid,) = self.append_records([(record, flags)])
            return uid

    def append_records(self, records: Sequence[tuple[bytes, frozenset[str]]]) -> list[int]:
        """Add stored records (``mbox.make_record``) with their flags in one rewrite."""
        with self._lock:
            self._refresh(False)
            canonical = [(record, self._canonical(flags)) for record, flags in records]
            uids = self._folder.append(canonical)
            self._refresh(False)
            return uids

    def copy_to(self, uids: Sequence[int], target: Mailbox) -> list[tuple[int, int]]:
        """Copy messages with their From line (sender, date) and flags in one rewrite."""
        if not isinstance(target, MboxMailbox):
            raise MailboxError("CANNOT", "Cannot copy between different stores")
        sources: list[int] = []
        records: list[tuple[bytes, frozenset[str]]] = []
        with self._lock:
            snap = self._snap
            for uid in uids:
                entry = None if snap is None else snap.by_uid.get(uid)
                if snap is None or entry is None:
                    continue
                separator = snap.data[entry.start : entry.header_start]
                record = make_record(message_bytes(snap.data, entry), separator)
                records.append((record, self._flags.get(uid, entry.flags)))
                sources.append(uid)
        if not records:
            return []
        # The source lock is released first: two sessions copying both ways cannot deadlock.
        return list(zip(sources, target.append_records(records), strict=True))

    def expunge(self, uids: Iterable[int]) -> list[int]:
        """Remove the messages in one rewrite; the UIDs actually removed."""
        with self._lock:
            wanted = set(uids) & self._flags.keys()
            if not wanted:
                return []
            removed = self._folder.expunge(wanted)
            self._refresh(False)
            return removed
