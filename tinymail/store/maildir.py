"""Maildir delivery (qmail/djb Maildir, with Dovecot's size fields in the name).

Rules:
- Write tmp/NAME, fsync, close; link it into new/NAME of every recipient
  mailbox (one fsynced copy serves many recipients, as Dovecot's LMTP does);
  unlink tmp/NAME. A delivery counts only after new/ is fsynced, which the
  caller does (possibly once for several deliveries: group commit).
- NAME = `<secs>.M<usecs>P<pid>Q<n>.<host>,S=<size>,W=<vsize>`: unique per
  host, process and counter; S= is the file size and W= the size with CRLF
  line ends (what IMAP reports), so readers need not open the file.
- Stored content uses LF line ends; `Return-Path:` is prepended at delivery.
- `deliver_many` does that for several messages at once, each step for all of
  them before the next: all files written, then fsynced (on ext4 the first
  fsync commits the journal for every file written so far, so the others cost
  little), then linked. Each message succeeds or fails on its own.
"""

from __future__ import annotations

import itertools
import os
import socket
import time
from collections.abc import Sequence
from pathlib import Path

from tinymail.store.safeio import create_written, sync_and_close, unlink_quietly

_counter = itertools.count(1)
_host = socket.gethostname().replace("/", "\\057").replace(":", "\\072") or "localhost"

MAILDIR_SUBDIRS = ("cur", "new", "tmp")


def ensure_maildir(path: Path) -> None:
    """Create a Maildir (tmp, new, cur; mode 0700) if it does not exist."""
    for sub in MAILDIR_SUBDIRS:
        (path / sub).mkdir(mode=0o700, parents=True, exist_ok=True)


# Delivery targets seen complete in this process, so delivery does not stat three
# directories per message. Only delivery trusts it, and forgets an entry on any error.
_known_maildirs: set[Path] = set()


def unique_name(size: int, vsize: int) -> str:
    """A Maildir base name carrying the physical and virtual (CRLF) sizes."""
    now = time.time()
    secs = int(now)
    usecs = int((now - secs) * 1_000_000)
    return f"{secs}.M{usecs}P{_pid}Q{next(_counter)}.{_host},S={size},W={vsize}"


def _forget_pid() -> None:
    global _pid
    _pid = os.getpid()


_pid = os.getpid()  # not a system call per message; a forked child learns its own
os.register_at_fork(after_in_child=_forget_pid)


def return_path_header(sender: str) -> bytes:
    """The `Return-Path:` line for an envelope sender ("" gives `<>`)."""
    return b"Return-Path: <" + sender.encode("utf-8", "surrogateescape") + b">\n"


def deliver(maildirs: Sequence[Path], content: bytes) -> list[Path]:
    """Deliver `content` (LF line ends, headers included) to every Maildir in `maildirs`.

    Returns the new/ files written. Directories are created as needed. The
    caller must fsync each returned file's directory before counting the
    delivery. On error nothing of this call stays in tmp/; links already made
    in other new/ dirs are removed too, so a retry cannot duplicate.
    """
    [result] = deliver_many([(maildirs, content)])
    if isinstance(result, OSError):
        raise result
    return result


def deliver_many(messages: Sequence[tuple[Sequence[Path], bytes]]) -> list[list[Path] | OSError]:
    """`deliver` for several messages, each step for all of them at once (see the rules).

    One result per message, in order: its new/ files, or the OSError that stopped it, in
    which case nothing of that message is left in any tmp/ or new/.
    """
    results: list[list[Path] | OSError] = []
    written: list[tuple[int, int, str, str]] = []  # (index, fd, tmp path, name)
    for index, (maildirs, content) in enumerate(messages):
        results.append([])
        if not maildirs:
            continue
        try:
            for md in maildirs:
                if md not in _known_maildirs:
                    ensure_maildir(md)
                    _known_maildirs.add(md)
            name = unique_name(len(content), len(content) + content.count(b"\n"))
            tmp = f"{maildirs[0]}/tmp/{name}"
            written.append((index, create_written(tmp, content), tmp, name))
        except OSError as exc:
            if isinstance(exc, FileNotFoundError):  # removed behind our back: recreate next time
                _known_maildirs.difference_update(maildirs)
            results[index] = exc
    synced: list[tuple[int, str, str]] = []
    for index, fd, tmp, name in written:
        try:
            sync_and_close(fd, tmp)
        except OSError as exc:
            results[index] = exc
        else:
            synced.append((index, tmp, name))
    for index, tmp, name in synced:
        maildirs = messages[index][0]
        made: list[str] = []
        try:
            for md in maildirs:
                target = f"{md}/new/{name}"
                os.link(tmp, target)
                made.append(target)
        except OSError as exc:
            for path in made:
                unlink_quietly(path)
            _known_maildirs.difference_update(maildirs)
            results[index] = exc
        else:
            results[index] = [Path(p) for p in made]
        finally:
            unlink_quietly(tmp)
    return results
