"""One Maildir folder as a Mailbox: read, flags, append, copy, expunge.

Rules:
- One MaildirFolder object per folder path per process, shared by every
  session (maildir_folders.MaildirStore.open), guarded by a threading lock,
  so sessions in this process see each other's changes at once and the UID
  tuple is shared rather than copied per session. Scanning and UIDs live in
  maildir_index.MaildirIndex.
- A flag change is a rename of cur/BASE:2,OLD to cur/BASE:2,NEW; a rename
  that finds its source gone lost a race, so the folder is rescanned and the
  change recomputed (compare-and-swap), and no concurrent update is lost.
- New messages: tmp/ -> fsync -> cur/ (with their flags), then the UID is
  assigned under the dotlock; INTERNALDATE is the file's mtime.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from pathlib import Path

from tinymail.mail.mime import crlf_size
from tinymail.store import maildir_names as mn
from tinymail.store import uidlist as ul
from tinymail.store.derive_helper import SplitWork, read_open, warm_up
from tinymail.store.envcache import EnvelopeCache
from tinymail.store.mailbox import FlagMode, Mailbox, MailboxError, View
from tinymail.store.maildir import unique_name
from tinymail.store.maildir_index import Entry, MaildirIndex
from tinymail.store.safeio import fsync_dir

KEEP_LAST = 1 << 20  # bytes: larger messages are read again rather than kept around


def _crlf_size(data: bytes) -> bytes:
    """The size with CRLF line ends (stored with LF), as the decimal the cache keeps."""
    return b"%d" % crlf_size(data)


def _header_of(data: bytes) -> bytes:
    """The header block of a whole message, by the same rule as read_header."""
    ends = [i + len(sep) for sep in (b"\n\n", b"\r\n\r\n") if (i := data.find(sep)) >= 0]
    return data[: min(ends)] if ends else data


class MaildirFolder(MaildirIndex):
    """A Maildir (tmp/ new/ cur/) whose UIDs live in dovecot-uidlist."""

    def __init__(self, path: Path, name: str, new_uidvalidity: Callable[[], int]) -> None:
        super().__init__(path, new_uidvalidity)
        self.name = name
        self._envelopes = EnvelopeCache(path)
        # The last message read, so the items of one FETCH response (RFC822.SIZE, then
        # BODYSTRUCTURE, then BODY[]) share one read; only small messages are kept.
        self._last: tuple[str, bytes] = ("", b"")

    def _pruned(self, live: set[str]) -> None:
        self._envelopes.prune(live)

    # -- Mailbox protocol -------------------------------------------------------------

    def sync(self, claim_recent: bool) -> View:
        """Rescan if anything changed; claim messages in new/ as \\Recent when asked."""
        with self._lock:
            self._envelopes.flush()  # a cheap, regular moment to persist cached envelopes
            self._rescan()
            recent = self._claim_recent() if claim_recent else frozenset()
            assert self._uidlist is not None
            return View(
                uidvalidity=self._uidlist.uidvalidity,
                uidnext=self._uidlist.next_uid,
                uids=self._uids,
                modseq=self._changes.modseq,
                recent=recent,
                keywords=self._keywords,
            )

    def status_counts(self) -> tuple[int, int, int]:
        """(messages, still in new/, without \\Seen)."""
        with self._lock:
            self._rescan()
            msgs = self._msgs.values()
            recent = sum(1 for m in msgs if m[1])
            unseen = sum(1 for m in msgs if "S" not in m[2])
            return len(self._msgs), recent, unseen

    def flags(self, uid: int) -> frozenset[str] | None:
        """Current flags of a message, None if it is gone."""
        msg = self._msgs.get(uid)
        return None if msg is None else mn.letters_to_flags(msg[2], self._keywords)

    def flag_changes(self, since: int) -> list[tuple[int, int]] | None:
        """(uid, modseq) changed after `since`, or None when the log no longer reaches back."""
        with self._lock:
            return self._changes.since(since)

    def _file(self, msg: Entry) -> str:
        return f"{self._new_dir if msg[1] else self._cur_dir}/{msg[0]}"

    def _get(self, uid: int) -> Entry:
        msg = self._msgs.get(uid)
        if msg is None:
            raise MailboxError("EXPUNGEISSUED", "Message was expunged")
        return msg

    def _open(self, uid: int) -> int:
        for _ in range(3):
            with self._lock:
                path = self._file(self._get(uid))
            try:
                return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                with self._lock:
                    self._rescan(force=True)  # renamed by someone else: find its new name
        raise MailboxError("EXPUNGEISSUED", "Message was expunged")

    def read(self, uid: int) -> bytes:
        """The stored message bytes."""
        with self._lock:
            name = self._get(uid)[0]
            if self._last[0] == name:
                return self._last[1]
        fd = self._open(uid)
        try:
            data, mtime = read_open(fd)
        finally:
            os.close(fd)
        with self._lock:
            if len(data) <= KEEP_LAST:
                self._last = (name, data)
            if uid in self._msgs:
                self._dates.setdefault(uid, mtime)  # INTERNALDATE: FETCH needs no stat()
        return data

    def read_header(self, uid: int) -> bytes:
        """The header block including the blank line (or the whole message if none)."""
        with self._lock:
            name, data = self._last
            if name == self._get(uid)[0]:
                return _header_of(data)
        fd = self._open(uid)
        out = bytearray()
        try:
            while chunk := os.read(fd, 16384):
                start = max(0, len(out) - 3)
                out += chunk
                for sep in (b"\n\n", b"\r\n\r\n"):
                    end = out.find(sep, start)
                    if end >= 0:
                        return bytes(out[: end + len(sep)])
                if len(out) > 4 * 1024 * 1024:
                    break
        finally:
            os.close(fd)
        return bytes(out)

    def envelope(self, uid: int, compute: Callable[[bytes], bytes]) -> bytes:
        """`compute(header)`, cached on disk per message (messages never change)."""
        return self._cached(uid, "E", compute, self.read_header)

    def derived(self, uid: int, kind: str, compute: Callable[[bytes], bytes]) -> bytes:
        """`compute(message)` cached on disk under `kind` ("B": BODYSTRUCTURE)."""
        return self._cached(uid, kind, compute, self.read)

    def prime(
        self, uid: int, kinds: str, compute: Callable[[bytes, str], dict[str, bytes]]
    ) -> None:
        """Fill the cache for every kind in `kinds` ("E", "B", "N", "S") that it lacks, from
        one read and `compute(message, missing kinds)`. The later envelope(), derived()
        and size() calls then hit the cache: a cold FETCH of ENVELOPE, BODYSTRUCTURE and
        RFC822.SIZE reads and parses each message once, not once per item. An ENVELOPE
        alone is left to envelope(), which reads only the header."""
        with self._lock:
            missing = self._missing(uid, kinds)
        if missing in ("", "E"):
            return
        self._keep_derived(uid, compute(self.read(uid), missing), -1.0)

    def prime_all(
        self, uids: Sequence[int], kinds: str, compute: Callable[[bytes, str], dict[str, bytes]]
    ) -> Generator[None, None, None]:
        """prime() each of `uids` in order, yielding after each one, so the caller can answer
        for it at once. A long run of uncached messages is shared with the helper process
        (store/derive_helper.py): it takes chunks ahead of this thread, which answers in
        order and meanwhile computes messages past the helper's. A message gone meanwhile
        is skipped (the caller finds it gone)."""
        warm_up(len(uids))  # the helper starts while the jobs are listed
        jobs: list[tuple[str, str] | None] = []
        with self._lock:
            for uid in uids:
                msg = self._msgs.get(uid)
                missing = "" if msg is None else self._missing(uid, kinds)
                jobs.append(
                    None if msg is None or missing in ("", "E") else (self._file(msg), missing)
                )

        def local(k: int) -> None:
            # prime() asks the cache again: sessions fetching the same messages at once
            # (50 clients after new mail) compute each message once, not once each.
            with contextlib.suppress(MailboxError):  # gone: the caller finds it gone
                self.prime(uids[k], kinds, compute)

        def keep(k: int, result: tuple[dict[str, bytes], float]) -> None:
            self._keep_derived(uids[k], *result)

        split = SplitWork(jobs, compute, local, keep)
        try:
            for k in range(len(uids)):
                split.ensure(k)
                yield
        finally:
            split.close()

    def _missing(self, uid: int, kinds: str) -> str:
        """The kinds of `kinds` the cache lacks for message `uid` (under the lock)."""
        missing = self._envelopes.missing(self._get(uid)[0].partition(":")[0], kinds)
        if "S" in missing and self._size_from_name(uid) >= 0:
            missing = missing.replace("S", "")
        return missing

    def _keep_derived(self, uid: int, values: dict[str, bytes], mtime: float) -> None:
        """Cache what prime computed; `mtime` (if >= 0) is the INTERNALDATE it saw."""
        with self._lock:
            msg = self._msgs.get(uid)
            if msg is None:
                return
            self._envelopes.put_all(msg[0].partition(":")[0], values)
            if "S" in values:
                self._sizes[uid] = int(values["S"])
            if mtime >= 0:
                self._dates.setdefault(uid, mtime)

    def _size_from_name(self, uid: int) -> int:
        """The remembered size, else `,W=` of the file name (the CRLF size), else -1."""
        size = self._sizes.get(uid, -1)
        name = self._get(uid)[0] if size < 0 else ""
        if ",W=" in name:  # (without it the name has no size to parse: most files)
            size = mn.sizes(ul.base_name(name))[1]
            if size >= 0:
                self._sizes[uid] = size
        return size

    def _cached(
        self,
        uid: int,
        kind: str,
        compute: Callable[[bytes], bytes],
        source: Callable[[int], bytes],
    ) -> bytes:
        with self._lock:
            base = self._get(uid)[0].partition(":")[0]
            cached = self._envelopes.get(base, kind)
        if cached is not None:
            return cached
        value = compute(source(uid))
        with self._lock:
            self._envelopes.put(base, value, kind)
        return value

    def size(self, uid: int) -> int:
        """RFC822.SIZE: from `,W=` in the name, else from the cache, else counted once."""
        with self._lock:
            size = self._size_from_name(uid)
        if size < 0:
            size = int(self._cached(uid, "S", _crlf_size, self.read))
            with self._lock:
                if uid in self._msgs:
                    self._sizes[uid] = size
        return size

    def sizes(self, uids: Sequence[int]) -> dict[int, int]:
        """RFC822.SIZE of each of `uids` still present (POP3's listing): those known without
        a file (name, cache) under one hold of the lock, the others as size() finds them."""
        out: dict[int, int] = {}
        with self._lock:
            remembered = self._sizes
            for uid in uids:
                # a remembered size first: this loop runs for every message of a POP3 listing
                size = remembered.get(uid, -1)
                if size < 0:
                    size = self.known_size(uid)
                if size >= 0:
                    out[uid] = size
        for uid in uids:
            if uid not in out:
                with contextlib.suppress(MailboxError):  # expunged since the caller's sync
                    out[uid] = self.size(uid)
        return out

    def known_size(self, uid: int) -> int:
        """RFC822.SIZE when it is known without touching a file (name or cache), else -1."""
        with self._lock:
            msg = self._msgs.get(uid)
            if msg is None:
                return -1
            size = self._size_from_name(uid)
            if size < 0:
                cached = self._envelopes.get(msg[0].partition(":")[0], "S")
                if cached is not None:
                    size = self._sizes[uid] = int(cached)
            return size

    def internal_date(self, uid: int) -> float:
        """INTERNALDATE = the file's mtime (Dovecot), cached."""
        date = self._dates.get(uid)
        if date is None:
            try:
                date = os.stat(self._file(self._get(uid))).st_mtime
            except FileNotFoundError:
                fd = self._open(uid)  # renamed meanwhile: _open finds the new name
                try:
                    date = os.fstat(fd).st_mtime
                finally:
                    os.close(fd)
            with self._lock:
                if uid in self._msgs:
                    self._dates[uid] = date
        return date

    def _ensure_keywords(self, flags: frozenset[str]) -> None:
        wanted = [f for f in flags if not f.startswith("\\")]
        known = {k.lower() for k in self._keywords}
        if all(f.lower() in known for f in wanted):
            return
        with ul.DotLock(self.path / ul.UIDLIST):
            current = list(mn.read_keywords(self.path))
            lowered = {k.lower() for k in current}
            for f in sorted(wanted):
                if f.lower() not in lowered:
                    if len(current) >= mn.MAX_KEYWORDS:
                        raise MailboxError("LIMIT", "Too many keywords in this mailbox")
                    current.append(f)
                    lowered.add(f.lower())
            mn.write_keywords(self.path, tuple(current))
            self._keywords = tuple(current)

    def store_flags(
        self, uids: Sequence[int], flags: frozenset[str], mode: FlagMode
    ) -> dict[int, tuple[frozenset[str], int]]:
        """Rename each file to its new flag letters; a lost rename race is retried."""
        with self._lock:
            if mode is not FlagMode.REMOVE:
                self._ensure_keywords(flags)
            before = self._stat_stamp()
            out: dict[int, tuple[frozenset[str], int]] = {}
            for uid in uids:
                for _attempt in range(5):
                    msg = self._msgs.get(uid)
                    if msg is None:
                        break
                    name, _, old = msg
                    have = mn.letters_to_flags(old, self._keywords)
                    if mode is FlagMode.ADD:
                        want = have | flags
                    elif mode is FlagMode.REMOVE:
                        want = frozenset(
                            f for f in have if f.lower() not in {x.lower() for x in flags}
                        )
                    else:
                        want = flags
                    letters = mn.flags_to_letters(want, self._keywords, old)
                    if letters == old:
                        out[uid] = (have, self._changes.last.get(uid, 0))
                        break
                    target = mn.with_letters(name, letters)
                    try:
                        os.rename(self._file(msg), f"{self._cur_dir}/{target}")
                    except FileNotFoundError:
                        self._rescan(force=True)  # renamed elsewhere: compare-and-swap again
                        continue
                    self._msgs[uid] = (target, False, letters)
                    seq = self._changes.record(uid)
                    out[uid] = (mn.letters_to_flags(letters, self._keywords), seq)
                    break
            self._after_own_change(before)
            return out

    def _deliver_locked(self, tmp: Path, name: str) -> int:
        os.rename(tmp, self.path / "cur" / name)
        fsync_dir(self.path / "cur")
        self._assign_locked()
        assert self._uidlist is not None
        return self._uidlist.records[ul.base_name(name)][0]

    def append(self, data: bytes, flags: frozenset[str], internal_date: float | None) -> int:
        """Write tmp/ -> fsync -> cur/ with flags, then assign the UID under the lock."""
        body = data.replace(b"\r\n", b"\n")  # stored with LF (SPEC), served with CRLF
        vsize = len(body) + body.count(b"\n")
        with self._lock:
            self._ensure_keywords(flags)
            base = unique_name(len(body), vsize)
            name = f"{base}:2,{mn.flags_to_letters(flags, self._keywords, '')}"
            tmp = self.path / "tmp" / base
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                view = memoryview(body)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            when = time.time() if internal_date is None else internal_date
            os.utime(tmp, (when, when))  # INTERNALDATE is the mtime
            with ul.DotLock(self.path / ul.UIDLIST):
                uid = self._deliver_locked(tmp, name)
            self._rescan()
            return uid

    def copy_to(self, uids: Sequence[int], target: Mailbox) -> list[tuple[int, int]]:
        """Hard-link (or copy) each message into the target folder with a new base name."""
        if not isinstance(target, MaildirFolder):
            raise MailboxError("CANNOT", "Cannot copy between different stores")
        sources = []
        with self._lock:
            for uid in uids:
                msg = self._msgs.get(uid)
                if msg is not None:
                    sources.append((uid, Path(self._file(msg)), msg[2]))
        with target._lock:
            pairs = []
            staged = []
            for uid, src, letters in sources:
                s, w = mn.sizes(ul.base_name(src.name))
                base = unique_name(s if s >= 0 else 0, w if w >= 0 else 0)
                if s < 0:
                    base = base.split(",S=")[0]
                tmp = target.path / "tmp" / base
                try:
                    os.link(src, tmp)
                except FileNotFoundError:
                    continue
                except OSError:
                    shutil.copy2(src, tmp)
                flags = mn.letters_to_flags(letters, self._keywords)
                target._ensure_keywords(flags)
                new_letters = mn.flags_to_letters(flags, target._keywords, letters)
                staged.append((uid, tmp, f"{base}:2,{new_letters}"))
            with ul.DotLock(target.path / ul.UIDLIST):
                for _uid, tmp, name in staged:
                    os.rename(tmp, target.path / "cur" / name)
                fsync_dir(target.path / "cur")
                target._assign_locked()
                assert target._uidlist is not None
                for uid, _tmp, name in staged:
                    pairs.append((uid, target._uidlist.records[ul.base_name(name)][0]))
            target._rescan()
            return pairs

    def expunge(self, uids: Iterable[int]) -> list[int]:
        """Unlink the files; the uidlist keeps the records until a rewrite (as Dovecot)."""
        removed = []
        with self._lock:
            before = self._stat_stamp()
            for uid in uids:
                msg = self._msgs.get(uid)
                if msg is None:
                    continue
                try:
                    os.unlink(self._file(msg))
                except FileNotFoundError:
                    self._rescan(force=True)
                    msg = self._msgs.get(uid)
                    if msg is None:
                        continue
                    os.unlink(self._file(msg))
                del self._msgs[uid]
                removed.append(uid)
            if removed:
                self._uids = tuple(sorted(self._msgs))
                self._forget(removed)
            self._after_own_change(before)
            return removed
