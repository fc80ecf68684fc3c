"""Dovecot's `dovecot-uidlist` (version 3) and its dotlock.

Rules (research/imap-anchors.md 3.4, Dovecot maildir-uidlist.c):
- Header `3 V<uidvalidity> N<nextuid> G<guid>`, then one record per message:
  `<uid> [<key><value> ...] :<filename>`; the filename is matched on its base,
  everything before the `:` info separator, so new/ -> cur/ and flag renames
  keep the UID. Unknown keys are kept. Version 1 (`1 <uidvalidity> <next>`,
  `<uid> <filename>`) is read too.
- Readers take no lock. Writers hold `dovecot-uidlist.lock` (O_EXCL, stale
  after 120 s) across the directory scan, append new records, and rewrite
  only through `dovecot-uidlist.tmp` + rename().
- After an append the header's N is stale: the next UID is max(N, last+1).
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from tinymail.store.safeio import atomic_replace, write_all

UIDLIST = "dovecot-uidlist"
LOCK_STALE_SECONDS = 120  # MAILDIR_UIDLIST_LOCK_STALE_TIMEOUT in maildir-uidlist.h
LOCK_WAIT_SECONDS = 30.0


def base_name(filename: str) -> str:
    """The part of a Maildir file name before the `:` info separator."""
    return filename.split(":", 1)[0]


@dataclass(slots=True)
class UidList:
    """The parsed file: header values and base name -> (uid, extension fields)."""

    uidvalidity: int = 0
    next_uid: int = 1
    guid: str = ""
    records: dict[str, tuple[int, str]] = field(default_factory=dict)
    # where reading stopped, to read appended records incrementally
    inode: int = 0
    offset: int = 0

    def add(self, base: str, uid: int, ext: str = "") -> None:
        """Record a mapping and keep next_uid above it."""
        self.records[base] = (uid, ext)
        self.next_uid = max(self.next_uid, uid + 1)


def _parse_header(line: str, into: UidList) -> None:
    fields = line.split()
    if not fields:
        raise ValueError("empty uidlist header")
    if fields[0] == "1" and len(fields) >= 3:
        into.uidvalidity, into.next_uid = int(fields[1]), int(fields[2])
        return
    if fields[0] != "3":
        raise ValueError(f"unsupported uidlist version {fields[0]!r}")
    for item in fields[1:]:
        key, value = item[:1], item[1:]
        if key == "V":
            into.uidvalidity = int(value)
        elif key == "N":
            into.next_uid = int(value)
        elif key == "G":
            into.guid = value


def _parse_records(lines: list[str], version1: bool, into: UidList) -> None:
    # One tight loop: this runs for every message when a session first opens a folder.
    records = into.records
    top = into.next_uid - 1
    for line in lines:
        if version1:
            uid_text, _, name = line.partition(" ")
            ext = ""
        else:
            head, sep, name = line.partition(" :")
            if not sep:
                continue  # not a record we understand; Dovecot would rebuild, we skip it
            uid_text, _, ext = head.partition(" ")
        if uid_text.isdigit() and name:
            uid = int(uid_text)
            records[name.partition(":")[0]] = (uid, ext)
            if uid > top:
                top = uid
    into.next_uid = top + 1


def read(path: Path, previous: UidList | None = None) -> UidList | None:
    """Read the uidlist; with `previous` of the same inode only appended records are parsed."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if previous is not None and previous.inode == st.st_ino and st.st_size >= previous.offset:
            if st.st_size == previous.offset:
                return previous
            f.seek(previous.offset)
            data = f.read()
            result = previous
        else:
            data = f.read()
            result = None
    end = data.rfind(b"\n") + 1  # a half-written last line is read next time
    text = data[:end].decode("utf-8", "surrogateescape")
    lines = text.split("\n")
    if result is None:
        result = UidList(inode=st.st_ino)
        if not lines or not lines[0]:
            return None
        try:
            _parse_header(lines[0], result)
        except ValueError:
            return None  # corrupt: rebuilt with a new UIDVALIDITY, as Dovecot does
        lines = lines[1:]
        result.offset = 0
    version1 = result.guid == "" and data.startswith(b"1 ")
    _parse_records([line for line in lines if line], version1, result)
    result.offset += end
    return result


def format_records(records: list[tuple[int, str, str]]) -> bytes:
    """Record lines for (uid, extension fields, filename) in Dovecot's layout."""
    out = [
        f"{uid} {ext} :{name.partition(':')[0]}\n" if ext else f"{uid} :{name.partition(':')[0]}\n"
        for uid, ext, name in records
    ]  # the name is cut at ":" as Dovecot does
    return "".join(out).encode("utf-8", "surrogateescape")


def assign(path: Path, uidlist: UidList, bases: list[str]) -> None:
    """Give `bases` the next UIDs in their order and write them, under the lock: appended and
    fsynced, or for a list not on disk yet (inode 0) the whole file in one write-then-rename."""
    first, end = uidlist.next_uid, uidlist.next_uid + len(bases)
    uids = range(first, end)
    # map over a bound method: no Python-level step per line (a first scan writes them all)
    lines = "".join(map("{} :{}\n".format, uids, bases))
    data = lines.encode("utf-8", "surrogateescape")
    if uidlist.inode:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            if size > uidlist.offset:  # a writer died mid-line: end that line, not our first
                data = b"\n" + data
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        uidlist.offset = size + len(data)
    else:
        data = _header(uidlist, end) + data
        atomic_replace(path, data)
        uidlist.inode, uidlist.offset = os.stat(path).st_ino, len(data)
    uidlist.records.update({base: (uid, "") for uid, base in zip(uids, bases, strict=True)})
    uidlist.next_uid = end


def _header(uidlist: UidList, next_uid: int) -> bytes:
    return f"3 V{uidlist.uidvalidity} N{next_uid} G{uidlist.guid}\n".encode()


def rewrite(path: Path, uidlist: UidList, names: dict[str, str]) -> None:
    """Write the whole file anew (tmp + rename), keeping only bases present in `names`."""
    kept = sorted(
        (uid, ext, names[base]) for base, (uid, ext) in uidlist.records.items() if base in names
    )
    data = _header(uidlist, uidlist.next_uid) + format_records(kept)
    atomic_replace(path, data)
    uidlist.records = {base_name(name): (uid, ext) for uid, ext, name in kept}
    uidlist.inode = os.stat(path).st_ino
    uidlist.offset = len(data)


def new_guid() -> str:
    """A random 128-bit mailbox GUID in hex, like Dovecot's G field."""
    return os.urandom(16).hex()


class DotLock:
    """`<path>.lock` created with O_EXCL; a lock older than 120 s is taken over."""

    def __init__(self, path: Path, wait: float = LOCK_WAIT_SECONDS) -> None:
        self.lock_path = path.with_name(path.name + ".lock")
        self.wait = wait

    def __enter__(self) -> DotLock:
        deadline = time.monotonic() + self.wait
        delay = 0.005
        while not self._try_create():
            self._break_if_stale()
            if time.monotonic() > deadline:
                raise OSError(errno.EAGAIN, "timeout waiting for lock", str(self.lock_path))
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
        return self

    def _try_create(self) -> bool:
        try:
            fd = os.open(self.lock_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return False
        os.write(fd, f"{os.getpid()}:{os.uname().nodename}\n".encode())
        os.close(fd)
        return True

    def _break_if_stale(self) -> None:
        try:
            age = time.time() - os.stat(self.lock_path).st_mtime
        except FileNotFoundError:
            return
        if age > LOCK_STALE_SECONDS:
            # Dovecot's stale timeout: the holder died; a racing breaker just loses the unlink.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.lock_path)

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.lock_path)
