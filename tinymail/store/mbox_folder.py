"""One mbox folder as IMAP and POP3 use it: UIDs assigned and persisted, flags, expunge.

Rules (the file format is in ``mbox``):
- Every change of the file (flags, \\Recent claims, expunge, APPEND) writes a new file, fsyncs
  it, renames it over the old one and fsyncs the directory, all under the mbox lock: never
  truncate in place, so a crash leaves either the old or the new file.
- UIDs live in the file (X-IMAPbase on the first message, X-UID on each, as UW-IMAP and Dovecot
  keep them), but a message delivered since the last rewrite has none: giving it one must not
  cost a rewrite of the whole file (O(size) per new message). Like Dovecot's index, the side
  file ``.NAME.uidstate`` holds those UIDs until the next rewrite writes them into the file
  (Dovecot's ``mbox_lazy_writes``): "uidvalidity last_uid" on its first line, then one
  "uid key" line per message of the file's tail without an X-UID, in file order. New messages
  only append lines to it. Such messages are always the tail (``mbox.parse`` renumbers every
  message after the first one without a believable X-UID), new ones get the next UIDs in file
  order, exactly the UIDs Dovecot would give them from X-IMAPbase.
- A tail message is recognised by its key, a hash of its From line and of the start of the
  message as clients see it (metadata headers excluded), so another program appending, adding
  Status headers or removing messages keeps every other message's UID; a UID is only taken from
  the side file if it still ascends, otherwise the message gets a new one (never a reused one).
- A file without X-IMAPbase (new, emptied by an expunge, or never rewritten by us) takes its
  UIDVALIDITY and last UID from the side file; the side file goes once the file alone holds the
  whole state again. UIDs are never reused under one UIDVALIDITY (RFC 3501 2.3.1.1).
- A new UID space takes its UIDVALIDITY from the owner's ``.uidvalidity`` counter (the last
  value handed out; the next is max(last + 1, now)), so a re-created folder never repeats one.
- \\Recent (RFC 3501 2.3.2) is ``Status`` without ``O``: the one sync that claims the message
  writes the ``O``, under the lock, so exactly one session (of any process) sees it recent.
- The parse of the file is kept (per folder object) with the file's (inode, size, mtime): a
  rewrite of our own builds the new parse while rendering, so it never reads its file back,
  and reads while the file is unchanged cost one stat(), no lock.
"""

from __future__ import annotations

import hashlib
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
KEY_BYTES = 2048  # of the message start that a tail message's key hashes
_KEY_HEX = 16
_STORED_SYSTEM_FLAGS = frozenset({"\\Seen", *X_STATUS_LETTERS.values()})

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


@dataclass(frozen=True, slots=True)
class UidState:
    """The side file: the UID space, and the UIDs of the file's tail that has no X-UID yet."""

    uidvalidity: int
    last_uid: int
    pending: tuple[tuple[int, str], ...] = ()  # (uid, key) in file order


def _read_state(path: Path) -> UidState | None:
    try:
        lines = state_path(path).read_bytes().split(b"\n")
    except FileNotFoundError:
        return None
    words = lines[0].split()
    if len(words) != 2 or not all(w.isdigit() for w in words) or not int(words[0]):
        return None
    last = int(words[1])
    pending = []
    for line in lines[1:]:
        uid, _, key = line.partition(b" ")
        if uid.isdigit() and len(key) == _KEY_HEX:  # a torn last line is ignored
            pending.append((int(uid), key.decode("ascii", "replace")))
            last = max(last, int(uid))
    return UidState(int(words[0]), last, tuple(pending))


def _pending_lines(pending: Sequence[tuple[int, str]]) -> bytes:
    return "".join(f"{uid} {key}\n" for uid, key in pending).encode("ascii")


def _write_state(path: Path, state: UidState, old: UidState | None) -> None:
    """Persist ``state``: append the new tail lines when the file already holds the rest."""
    done = len(old.pending) if old is not None else 0
    if (
        old is not None
        and old.uidvalidity == state.uidvalidity
        and state.pending[:done] == old.pending
        and state.last_uid == max([old.last_uid, *(uid for uid, _ in state.pending[done:])])
    ):
        fd = os.open(state_path(path), os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        try:
            data = memoryview(_pending_lines(state.pending[done:]))
            while data:
                data = data[os.write(fd, data) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        return
    head = b"%d %d\n" % (state.uidvalidity, state.last_uid)
    atomic_replace(state_path(path), head + _pending_lines(state.pending))


def message_key(data: bytes, entry: Entry) -> str:
    """What recognises a message without X-UID: a hash of its From line, its header without
    the metadata fields (so a Status header added later does not change it) and the start of
    its body as stored."""
    digest = hashlib.blake2b(data[entry.start : entry.header_start], digest_size=_KEY_HEX // 2)
    if entry.plain:
        digest.update(data[entry.header_start : min(entry.end, entry.header_start + KEY_BYTES)])
    else:
        header, body = split_header(data[entry.header_start : entry.end])
        digest.update(strip_metadata(header))
        digest.update(body[:KEY_BYTES])
    return digest.hexdigest()


def _uid(entry: Entry) -> int:
    assert entry.uid is not None  # every entry of a resolved parse has one
    return entry.uid


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
) -> tuple[bytes, Parsed]:
    """The file rewritten with the given UIDs, flags and kept messages (bodies stay quoted),
    and its parse, built on the way (equal to ``parse`` of the result)."""
    out: list[bytes] = []
    entries: list[Entry] = []
    offset = 0
    exact = True  # False once a torn message is repaired: then the result is parsed again
    for entry, meta in zip(parsed.entries, metas, strict=True):
        if meta is None:
            continue
        uid, flags, recent = meta
        header, body = split_header(data[entry.header_start : entry.end])
        separator = data[entry.start : entry.header_start]
        header = strip_metadata(header)
        # A message torn by a crash may lack its last line end; the metadata lines written
        # after it need one, so the repaired message is parsed again.
        if not separator.endswith(b"\n"):
            separator += b"\n"
            exact = False
        if header and not header.endswith(b"\n"):
            header += b"\n"
            exact = False
        if body and not body.endswith(b"\n"):
            body += b"\n"
            exact = False
        pieces = [separator, header]
        if not entries:  # UW-IMAP/Dovecot: the folder's UID state and keywords ride on the first
            declared = "".join(f" {k}" for k in keywords).encode("utf-8", "surrogateescape")
            pieces.append(b"X-IMAPbase: %d %010d%s\n" % (uidvalidity, last_uid, declared))
        pieces.append(_metadata_lines(*meta))
        pieces.append(body)
        length = sum(map(len, pieces))
        stored = frozenset(f for f in flags if f in _STORED_SYSTEM_FLAGS or not f.startswith("\\"))
        kept = tuple(sorted(f for f in flags if not f.startswith("\\")))
        entries.append(
            Entry(offset, offset + len(separator), offset + length, uid, stored, kept,
                  entry.size, recent)
        )  # fmt: skip
        out += pieces
        out.append(b"\n")
        offset += length + 1
    new = b"".join(out)
    if not exact:
        return new, parse(new)
    if not entries:
        return new, Parsed(0, 0, ())
    return new, Parsed(uidvalidity, last_uid, tuple(entries), tuple(keywords))


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


@dataclass(frozen=True, slots=True)
class _Current:
    """The file's bytes and resolved parse (every entry with its UID), with its stamp."""

    stamp: tuple[int, int, int]
    data: bytes
    parsed: Parsed
    by_uid: dict[int, Entry]


def _stamp_of(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_ino, st.st_size, st.st_mtime_ns


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
        self._cache: _Current | None = None

    def _current(self, fd: int) -> _Current:
        """The resolved parse of the locked file ``fd`` (kept while its stamp holds); UIDs new
        to it are persisted in the side file before they are handed out."""
        stamp = _stamp_of(os.fstat(fd))
        cached = self._cache
        if cached is not None and cached.stamp == stamp:
            return cached
        data = _read_all(fd)
        parsed, state, old = self._resolve(data, parse(data))
        if state is None:
            if old is not None:
                unlink_quietly(state_path(self.path))  # the file alone holds the state again
        elif state != old:
            _write_state(self.path, state, old)
        return self._keep(stamp, data, parsed)

    def _keep(self, stamp: tuple[int, int, int], data: bytes, parsed: Parsed) -> _Current:
        by_uid = {_uid(e): e for e in parsed.entries}
        self._cache = _Current(stamp, data, parsed, by_uid)
        return self._cache

    def _fresh(self) -> _Current | None:
        """The kept parse if the file is still the one it was made from (one stat, no lock:
        the bytes were read under the lock and a changed file has another stamp)."""
        cached = self._cache
        if cached is None:
            return None
        try:
            stamp = _stamp_of(os.stat(self.path))
        except FileNotFoundError:
            return None
        return cached if stamp == cached.stamp else None

    def _resolve(self, data: bytes, raw: Parsed) -> tuple[Parsed, UidState | None, UidState | None]:
        """Every entry with its UID; the side-file state needed (None: the file holds it all)
        and the one read."""
        old = _read_state(self.path)
        pending: tuple[tuple[int, str], ...] = ()
        if raw.uidvalidity:
            uidvalidity, last = raw.uidvalidity, raw.last_uid
            if old is not None and old.uidvalidity == uidvalidity:
                last, pending = max(last, old.last_uid), old.pending
        elif old is not None:
            uidvalidity, last, pending = old.uidvalidity, old.last_uid, old.pending
        else:
            uidvalidity, last = self._new_uidvalidity(), 0
        entries = list(raw.entries)
        tail = next((i for i, e in enumerate(entries) if e.uid is None), len(entries))
        previous = _uid(entries[tail - 1]) if tail else 0
        positions: dict[str, list[int]] = {}
        for index, (_, key) in enumerate(pending):
            positions.setdefault(key, []).append(index)
        cursor = 0
        tail_uids: list[tuple[int, str]] = []
        for i in range(tail, len(entries)):
            key = message_key(data, entries[i])
            uid = 0
            for index in positions.get(key, ()):
                if index >= cursor and pending[index][0] > previous:
                    uid, cursor = pending[index][0], index + 1
                    break
            if not uid:
                last += 1
                uid = last
            previous = uid
            e = entries[i]
            entries[i] = Entry(
                e.start, e.header_start, e.end, uid, e.flags, e.keywords, e.size, e.recent, e.plain
            )
            tail_uids.append((uid, key))
        parsed = Parsed(uidvalidity, last, tuple(entries), raw.keywords)
        if tail_uids or not raw.uidvalidity or last != raw.last_uid:
            return parsed, UidState(uidvalidity, last, tuple(tail_uids)), old
        return parsed, None, old

    def load(self, claim_recent: bool = False) -> Snapshot:
        """Parse under the lock, giving new messages UIDs and, when asked, claiming the
        \\Recent ones (one rewrite)."""
        with MboxLock(self.path) as lock:
            current = self._current(lock.fd)
            claimed: tuple[int, ...] = ()
            entries = current.parsed.entries
            if claim_recent and any(e.recent for e in entries):
                claimed = tuple(_uid(e) for e in entries if e.recent)
                current = self._rewrite(current, [(_uid(e), e.flags, False) for e in entries])
        parsed = current.parsed
        return Snapshot(
            current.data,
            parsed,
            current.by_uid,
            parsed.uidvalidity,
            parsed.last_uid + 1,
            claimed,
            current.stamp,
        )

    def sync(self) -> Parsed:
        """Parse the file, giving new messages UIDs (persisted in the side file)."""
        return self.load().parsed

    def listing(self) -> tuple[int, list[tuple[int, int]]]:
        """UIDVALIDITY and (uid, size with CRLF line ends) per message, in file order."""
        snap = self.load()
        return snap.uidvalidity, [(uid, entry.size) for uid, entry in snap.by_uid.items()]

    def _now(self) -> _Current:
        current = self._fresh()
        if current is None:
            with MboxLock(self.path) as lock:
                current = self._current(lock.fd)
        return current

    def flags(self, uid: int) -> frozenset[str] | None:
        """Current flags and keywords of a message; None when it is gone."""
        entry = self._now().by_uid.get(uid)
        return None if entry is None else entry.flags

    def read(self, uid: int) -> bytes | None:
        """The message with ``uid`` as clients see it; None when it is gone."""
        current = self._now()
        entry = current.by_uid.get(uid)
        return None if entry is None else message_bytes(current.data, entry)

    def store_flags(self, changes: dict[int, frozenset[str]]) -> None:
        """Replace the flags of the messages in ``changes`` (uid -> flags), in one rewrite."""
        self.edit_flags(lambda uid, flags: changes.get(uid, flags))

    def edit_flags(self, new_flags: Callable[[int, frozenset[str]], frozenset[str]]) -> None:
        """Rewrite every message's flags as ``new_flags(uid, current flags)``; the current
        flags are read under the lock, so a concurrent change is never lost."""
        self.edit(lambda uid, e: (uid, new_flags(uid, e.flags), e.recent))

    def expunge(self, uids: set[int]) -> list[int]:
        """Remove the messages with these UIDs; return the UIDs actually removed."""
        removed: list[int] = []

        def keep(uid: int, entry: Entry) -> Meta:
            if uid in uids:
                removed.append(uid)
                return None
            return uid, entry.flags, entry.recent

        self.edit(keep)
        return removed

    def append(self, records: Sequence[tuple[bytes, frozenset[str]]]) -> list[int]:
        """Add messages (``mbox.make_record`` output, flags) in one rewrite; their new UIDs.

        Appended messages are not \\Recent, as with Maildir APPEND into cur/.
        """
        with MboxLock(self.path) as lock:
            current = self._current(lock.fd)
            data = join_records(current.data, [record for record, _ in records])
            parsed, _, _ = self._resolve(data, parse(data))  # the rewrite persists the UIDs
            first_new = len(parsed.entries) - len(records)
            old, new = parsed.entries[:first_new], parsed.entries[first_new:]
            metas: list[Meta] = [(_uid(e), e.flags, e.recent) for e in old]
            metas += [(_uid(e), f, False) for e, (_, f) in zip(new, records, strict=True)]
            self._rewrite(_Current(current.stamp, data, parsed, {}), metas)
            return [_uid(e) for e in new]

    def edit(self, change: Callable[[int, Entry], Meta]) -> None:
        """Rewrite the file with ``change(uid, entry)`` of every message (None drops it),
        computed under the lock; no rewrite when nothing changes."""
        with MboxLock(self.path) as lock:
            current = self._current(lock.fd)
            # Mail delivered since the caller's sync has UIDs the caller cannot name.
            metas = [change(_uid(e), e) for e in current.parsed.entries]
            if any(
                m != (_uid(e), e.flags, e.recent)
                for m, e in zip(metas, current.parsed.entries, strict=True)
            ):
                self._rewrite(current, metas)

    def _rewrite(self, current: _Current, metas: Sequence[Meta]) -> _Current:
        parsed = current.parsed
        uidvalidity, last = parsed.uidvalidity, parsed.last_uid
        declared = _declared(parsed, metas)
        new, new_parsed = render(current.data, parsed, metas, uidvalidity, last, declared)
        if not new:  # no X-IMAPbase left to hold the UID state: the side file keeps it first
            atomic_replace(state_path(self.path), b"%d %d\n" % (uidvalidity, last))
            new_parsed = Parsed(uidvalidity, last, ())
        atomic_replace(self.path, new)  # write new, fsync, rename over, fsync dir
        if new:
            unlink_quietly(state_path(self.path))  # X-IMAPbase and X-UIDs hold it all again
        return self._keep(_stamp_of(os.stat(self.path)), new, new_parsed)


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
