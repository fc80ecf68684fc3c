"""One mbox folder as IMAP and POP3 use it: UIDs assigned and persisted, flags, expunge.

Rules (the file format is in ``mbox``):
- Every change (new UIDs, flags, \\Recent claims, expunge, APPEND) writes a new file, fsyncs
  it, renames it over the old one and fsyncs the directory, all under the mbox lock: never
  truncate in place, so a crash leaves either the old or the new file.
- UIDs live in the file (X-IMAPbase on the first message, X-UID on each, as UW-IMAP and Dovecot
  keep them). Messages delivered since the last rewrite get the next UIDs in file order.
- A file without X-IMAPbase (new, or emptied by an expunge) takes its UID state from the side
  file ``.NAME.uidstate`` ("uidvalidity last_uid"), written before a rewrite empties the file
  and removed once X-IMAPbase holds the state again: UIDs are never reused under one
  UIDVALIDITY (RFC 3501 2.3.1.1) without Dovecot's pseudo-message, which mutt would show.
- A new UID space takes its UIDVALIDITY from the owner's ``.uidvalidity`` counter (the last
  value handed out; the next is max(last + 1, now)), so a re-created folder never repeats one.
- \\Recent (RFC 3501 2.3.2) is ``Status`` without ``O``: the one sync that claims the message
  writes the ``O``, under the lock, so exactly one session (of any process) sees it recent.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tinymail.store.lock import MboxLock
from tinymail.store.mbox import (
    X_STATUS_LETTERS,
    Entry,
    Parsed,
    message_bytes,
    parse,
    split_header,
    strip_metadata,
    torn_from_prefix,
)
from tinymail.store.safeio import atomic_replace, unlink_quietly
from tinymail.store.uidlist import DotLock

UIDVALIDITY_FILE = ".uidvalidity"

# What a rewrite keeps of one message: (uid, flags, still \Recent), or None to drop it.
Meta = tuple[int, frozenset[str], bool] | None


def state_path(path: Path) -> Path:
    """The side file holding the UID state of an mbox that has no X-IMAPbase."""
    return path.with_name(f".{path.name}.uidstate")


def next_uidvalidity(root: Path) -> int:
    """A UIDVALIDITY never handed out before in ``root`` (the owner's directory)."""
    path = root / UIDVALIDITY_FILE
    with DotLock(path):
        try:
            last = int(path.read_text().strip() or "0")
        except (FileNotFoundError, ValueError):
            last = 0
        value = max(last + 1, int(time.time())) & 0xFFFFFFFF or 1
        atomic_replace(path, b"%d\n" % value)
        return value


def _read_state(path: Path) -> tuple[int, int] | None:
    try:
        words = state_path(path).read_bytes().split()
    except FileNotFoundError:
        return None
    if len(words) != 2 or not all(w.isdigit() for w in words) or not int(words[0]):
        return None
    return int(words[0]), int(words[1])


def _metadata_lines(uid: int, flags: frozenset[str], recent: bool) -> bytes:
    keywords = sorted(f for f in flags if not f.startswith("\\"))
    xstatus = "".join(c for c, flag in X_STATUS_LETTERS.items() if flag in flags)
    status = ("R" if "\\Seen" in flags else "") + ("" if recent else "O")
    lines = [f"X-UID: {uid}"]
    if status:
        lines.append(f"Status: {status}")
    if xstatus:
        lines.append(f"X-Status: {xstatus}")
    if keywords:
        lines.append("X-Keywords: " + " ".join(keywords))
    return "".join(f"{line}\n" for line in lines).encode("utf-8", "surrogateescape")


def render(
    data: bytes,
    parsed: Parsed,
    metas: Sequence[Meta],
    uidvalidity: int,
    last_uid: int,
    keywords: Sequence[str] = (),
) -> bytes:
    """The file rewritten with the given UIDs, flags and kept messages (bodies stay quoted)."""
    out: list[bytes] = []
    first = True
    for entry, meta in zip(parsed.entries, metas, strict=True):
        if meta is None:
            continue
        header, body = split_header(data[entry.header_start : entry.end])
        out.append(data[entry.start : entry.header_start])
        out.append(strip_metadata(header))
        if first:  # UW-IMAP/Dovecot: the folder's UID state and keywords ride on the first one
            declared = "".join(f" {k}" for k in keywords).encode("utf-8", "surrogateescape")
            out.append(b"X-IMAPbase: %d %010d%s\n" % (uidvalidity, last_uid, declared))
            first = False
        out.append(_metadata_lines(*meta))
        out.append(body if body.endswith(b"\n") or not body else body + b"\n")
        out.append(b"\n")
    return b"".join(out)


def join_records(data: bytes, records: Sequence[bytes]) -> bytes:
    """``records`` (``mbox.make_record``) after the file's messages, with the separator
    restored after a torn last message as delivery does."""
    data = data[: len(data) - torn_from_prefix(data)]
    if data and not data.endswith(b"\n\n"):
        data += b"\n" if data.endswith(b"\n") else b"\n\n"
    return data + b"".join(records)


def _read_all(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    chunks: list[bytes] = []
    offset = 0
    while offset < size:
        chunk = os.pread(fd, size - offset, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _assign_uids(parsed: Parsed, last: int) -> tuple[list[int], int]:
    """UIDs for every entry (new ones after ``last``) and the new last UID."""
    uids: list[int] = []
    for entry in parsed.entries:
        if entry.uid is None:
            last += 1
            uids.append(last)
        else:
            uids.append(entry.uid)
    return uids, last


def _declared(parsed: Parsed, metas: Sequence[Meta]) -> list[str]:
    """Keywords for X-IMAPbase: those declared before (never dropped, so the IMAP FLAGS list
    stays stable), then new ones in order of appearance."""
    out = list(parsed.keywords)
    known = set(out)
    for meta in metas:
        for flag in sorted(meta[1]) if meta else ():
            if not flag.startswith("\\") and flag not in known:
                known.add(flag)
                out.append(flag)
    return out


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The folder as one locked read saw it, every message with a UID."""

    data: bytes
    parsed: Parsed
    by_uid: dict[int, Entry]
    uidvalidity: int
    next_uid: int
    claimed: tuple[int, ...]  # UIDs this read claimed as \\Recent
    stamp: tuple[int, int, int]  # (inode, size, mtime) of the file that was read


class MboxFolder:
    """One folder's mbox file: listing with persistent UIDs, reading, flags and expunge.

    Every call takes the lock for its duration only, so deliveries and other sessions (and
    mutt) interleave between calls; UIDs identify messages across those interleavings. The
    last parse is kept while the file's inode, size and mtime stay the same, so RETR after
    RETR does not re-read the file.
    """

    def __init__(self, path: Path, new_uidvalidity: Callable[[], int] | None = None) -> None:
        self.path = path
        self._new_uidvalidity = new_uidvalidity or (lambda: next_uidvalidity(path.parent))
        self._cache: tuple[tuple[int, int, int], bytes, Parsed, dict[int, Entry]] | None = None

    def _snapshot(self, fd: int) -> tuple[bytes, Parsed, dict[int, Entry]]:
        return self._stamped(fd)[1:]

    def _stamped(self, fd: int) -> tuple[tuple[int, int, int], bytes, Parsed, dict[int, Entry]]:
        st = os.fstat(fd)
        signature = (st.st_ino, st.st_size, st.st_mtime_ns)
        if self._cache is None or self._cache[0] != signature:
            data = _read_all(fd)
            parsed = parse(data)
            by_uid = {e.uid: e for e in parsed.entries if e.uid is not None}
            self._cache = (signature, data, parsed, by_uid)
        return self._cache

    def _uid_state(self, parsed: Parsed) -> tuple[int, int]:
        """(UIDVALIDITY, last UID): from X-IMAPbase, else the side file, else a new space."""
        if parsed.uidvalidity:
            return parsed.uidvalidity, parsed.last_uid
        state = _read_state(self.path)
        if state is None:
            state = (self._new_uidvalidity(), 0)
            atomic_replace(state_path(self.path), b"%d %d\n" % state)
        return state

    def load(self, claim_recent: bool = False) -> Snapshot:
        """Parse under the lock, giving new messages UIDs and, when asked, claiming the
        \\Recent ones; either is persisted by one rewrite."""
        with MboxLock(self.path) as lock:
            stamp, data, parsed, by_uid = self._stamped(lock.fd)
            uidvalidity, last = self._uid_state(parsed)
            claim = claim_recent and any(e.recent for e in parsed.entries)
            if len(by_uid) == len(parsed.entries) and not claim:
                return Snapshot(data, parsed, by_uid, uidvalidity, last + 1, (), stamp)
            uids, last = _assign_uids(parsed, last)
            entries = parsed.entries
            claimed = tuple(u for u, e in zip(uids, entries, strict=True) if claim and e.recent)
            metas = [
                (u, e.flags, e.recent and not claim) for u, e in zip(uids, entries, strict=True)
            ]
            self._rewrite(data, parsed, metas, uidvalidity, last)
        # Read the new file outside the lock: it is immutable once renamed into place.
        fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            stamp, data, parsed, by_uid = self._stamped(fd)
        finally:
            os.close(fd)
        return Snapshot(data, parsed, by_uid, uidvalidity, last + 1, claimed, stamp)

    def sync(self) -> Parsed:
        """Parse the file, giving new messages UIDs (persisted by a rewrite when needed)."""
        return self.load().parsed

    def listing(self) -> tuple[int, list[tuple[int, int]]]:
        """UIDVALIDITY and (uid, size with CRLF line ends) per message, in file order."""
        snap = self.load()
        return snap.uidvalidity, [(uid, entry.size) for uid, entry in snap.by_uid.items()]

    def flags(self, uid: int) -> frozenset[str] | None:
        """Current flags and keywords of a message; None when it is gone."""
        with MboxLock(self.path) as lock:
            _, _, by_uid = self._snapshot(lock.fd)
        entry = by_uid.get(uid)
        return None if entry is None else entry.flags

    def read(self, uid: int) -> bytes | None:
        """The message with ``uid`` as clients see it; None when it is gone."""
        with MboxLock(self.path) as lock:
            data, _, by_uid = self._snapshot(lock.fd)
        entry = by_uid.get(uid)
        return None if entry is None else message_bytes(data, entry)

    def store_flags(self, changes: dict[int, frozenset[str]]) -> None:
        """Replace the flags of the messages in ``changes`` (uid -> flags), in one rewrite."""
        self.edit_flags(lambda uid, flags: changes.get(uid, flags))

    def edit_flags(self, new_flags: Callable[[int, frozenset[str]], frozenset[str]]) -> None:
        """Rewrite every message's flags as ``new_flags(uid, current flags)``; the current
        flags are read under the lock, so a concurrent change is never lost."""
        self._edit(lambda uid, e: (uid, new_flags(uid, e.flags), e.recent))

    def expunge(self, uids: set[int]) -> list[int]:
        """Remove the messages with these UIDs; return the UIDs actually removed."""
        removed: list[int] = []

        def keep(uid: int, entry: Entry) -> Meta:
            if uid in uids:
                removed.append(uid)
                return None
            return uid, entry.flags, entry.recent

        self._edit(keep)
        return removed

    def append(self, records: Sequence[tuple[bytes, frozenset[str]]]) -> list[int]:
        """Add messages (``mbox.make_record`` output, flags) in one rewrite; their new UIDs.

        Appended messages are not \\Recent, as with Maildir APPEND into cur/.
        """
        with MboxLock(self.path) as lock:
            old = _read_all(lock.fd)
            data = join_records(old, [record for record, _ in records])
            parsed = parse(data)
            uidvalidity, last = self._uid_state(parsed)
            uids, last = _assign_uids(parsed, last)
            first_new = len(parsed.entries) - len(records)
            metas: list[Meta] = [
                (u, e.flags, e.recent)
                for u, e in zip(uids, parsed.entries[:first_new], strict=False)
            ]
            metas += [(u, f, False) for u, (_, f) in zip(uids[first_new:], records, strict=True)]
            self._rewrite(data, parsed, metas, uidvalidity, last)
            return uids[first_new:]

    def _edit(self, change: Callable[[int, Entry], Meta]) -> None:
        with MboxLock(self.path) as lock:
            data = _read_all(lock.fd)
            parsed = parse(data)
            uidvalidity, last = self._uid_state(parsed)
            # Mail delivered since the caller's sync gets its UIDs in the same rewrite; those
            # UIDs are new, so the caller's UID set cannot name them.
            uids, last = _assign_uids(parsed, last)
            metas = [change(uid, e) for uid, e in zip(uids, parsed.entries, strict=True)]
            self._rewrite(data, parsed, metas, uidvalidity, last)

    def _rewrite(
        self, data: bytes, parsed: Parsed, metas: Sequence[Meta], uidvalidity: int, last: int
    ) -> None:
        new = render(data, parsed, metas, uidvalidity, last, _declared(parsed, metas))
        if not new:  # no X-IMAPbase left to hold the UID state: the side file keeps it first
            atomic_replace(state_path(self.path), b"%d %d\n" % (uidvalidity, last))
        atomic_replace(self.path, new)  # write new, fsync, rename over, fsync dir
        if new:
            unlink_quietly(state_path(self.path))  # X-IMAPbase is authoritative again


_registry_guard = threading.Lock()
_registry: dict[Path, MboxFolder] = {}


def open_folder(path: Path) -> MboxFolder:
    """The process-wide folder object for ``path``: sessions share its parse cache (its state
    is only touched under the mbox lock, so sharing between threads is safe)."""
    with _registry_guard:
        folder = _registry.get(path)
        if folder is None:
            folder = _registry[path] = MboxFolder(path)
        return folder
