"""The durable queue: one file per message, plus an optional state file.

Theory:
- A message file holds the content first (LF line endings, exactly as it will
  be delivered) and then a trailer: the JSON envelope and a fixed-size footer
  `\\nTMQ1 <content bytes:16> <json bytes:8>\\n`. The footer makes the file
  self-validating: a truncated or half-written file cannot parse, and the
  content can be streamed to disk before the envelope is known.
- Files are written in incoming/, fsynced, renamed into active/; the caller
  then fsyncs active/ (`sync_active`), possibly once for many messages (group
  commit). Only then is the message accepted.
- What changes later (per-recipient status, next attempt, hold) lives in
  state/QID, replaced atomically. No state file means "all pending, due now".
- A message leaves the queue by unlinking its file, then its state. A crash in
  between leaves an orphan state file, removed at the next scan.
- Files that fail validation move to corrupt/ with a log line; never deleted.
- The file format and its write steps at the level of bytes are in qfile.py, which `sendmail`
  uses on its start-up path without this module.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tinymail.queue.model import Envelope, QueueItem, QueueState
from tinymail.queue.qfile import FOOTER_LEN as FOOTER_LEN
from tinymail.queue.qfile import (
    MAGIC,
    create_incoming,
    encode_envelope,
    footer,
    make_dirs,
)
from tinymail.queue.qfile import new_qid as new_qid
from tinymail.store.safeio import atomic_replace, fsync_dir, unlink_quietly, write_all

if TYPE_CHECKING:
    import logging

FLUSH_AT = 256 * 1024
STALE_INCOMING = 36 * 3600  # Maildir's rule for tmp/ leftovers


class CorruptQueueFile(Exception):
    """A queue file failed validation."""


class IncomingMessage:
    """A message being received: content is buffered and streamed to incoming/.

    `write` only appends to memory; the owner calls `flush` (blocking) when
    `buffered` grows past FLUSH_AT, and `commit` (blocking) at the end.
    """

    def __init__(self, spool: Spool, qid: str):
        self.spool = spool
        self.qid = qid
        self.path = spool.incoming / qid
        self.size = 0
        self._buffer = bytearray()
        self._fd: int | None = None

    @property
    def buffered(self) -> int:
        """Bytes held in memory, not yet written."""
        return len(self._buffer)

    def memory_content(self) -> bytes | None:
        """The whole content when none of it was written to disk yet, else None."""
        return bytes(self._buffer) if self._fd is None else None

    def write(self, data: bytes) -> None:
        """Append content (non-blocking: memory only)."""
        self._buffer += data
        self.size += len(data)

    def flush(self) -> None:
        """Write buffered content to the incoming file (blocking)."""
        if self._fd is None:
            self._fd = create_incoming(self.path)
        write_all(self._fd, self._buffer)
        self._buffer.clear()

    def commit(self, envelope: Envelope) -> Path:
        """Write the trailer, fsync, close, rename into active/ (blocking).

        The caller must still fsync active/ (Spool.sync_active) before
        acknowledging. On error the incoming file is removed and OSError raised.
        """
        if envelope.size != self.size:
            raise ValueError("envelope size does not match the content written")
        meta = encode_envelope(envelope.to_json())
        self._buffer += b"\n" + meta + footer(self.size, len(meta))
        target = self.spool.active / self.qid
        try:
            self.flush()
            assert self._fd is not None
            os.fsync(self._fd)
            fd, self._fd = self._fd, None
            os.close(fd)
            os.rename(self.path, target)
        except BaseException:
            self.abort()
            raise
        return target

    def abort(self) -> None:
        """Forget the message: close and remove the incoming file (blocking)."""
        self._buffer = bytearray()
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.close(fd)
        unlink_quietly(self.path)


class Spool:
    """The queue directory. All methods block; async callers use trio.to_thread."""

    def __init__(self, root: Path):
        self.root = root
        self.incoming = root / "incoming"
        self.active = root / "active"
        self.state_dir = root / "state"
        self.corrupt = root / "corrupt"
        self._room_cache = (0.0, 0)  # (valid until, free bytes)

    def create(self) -> Spool:
        """Create the directories (mode 0700) if missing; return self."""
        make_dirs(str(self.root))
        return self

    def incoming_message(self) -> IncomingMessage:
        """Start receiving a new message under a fresh queue ID."""
        return IncomingMessage(self, new_qid())

    def sync_active(self) -> None:
        """fsync active/ so renamed-in messages survive a crash."""
        fsync_dir(self.active)

    def room_known(self, needed: int) -> bool | None:
        """has_room's answer from the last second's reading, or None (non-blocking)."""
        until, free = self._room_cache
        return free >= needed if until > time.monotonic() else None

    def has_room(self, needed: int) -> bool:
        """True when the queue's file system has `needed` bytes and some inodes free.

        The free space seen is reused for a second: a busy server asks once per
        message, and a write that then fails still gets its 4xx.
        """
        now = time.monotonic()
        until, free = self._room_cache
        if until <= now:
            try:
                st = os.statvfs(self.root)
            except OSError:
                return False
            inodes_ok = st.f_files == 0 or st.f_favail > 16
            free = st.f_bavail * st.f_frsize if inodes_ok else 0
            self._room_cache = (now + 1.0, free)
        return free >= needed

    def enqueue(
        self,
        sender: str,
        recipients: tuple[str, ...],
        content: bytes,
        *,
        origin: str = "",
        dsn_kind: str = "",
        incoming: IncomingMessage | None = None,
    ) -> Envelope:
        """Queue a whole message durably in one call (file and directory fsynced).

        `incoming` (from `incoming_message()`) lets a caller that must know the queue ID
        while composing the content (sendmail's Received field) commit under that ID.
        """
        msg = incoming or self.incoming_message()
        msg.write(content)
        envelope = Envelope(
            qid=msg.qid,
            sender=sender,
            recipients=recipients,
            arrival=time.time(),
            size=len(content),
            origin=origin,
            dsn_kind=dsn_kind,
        )
        msg.commit(envelope)
        try:
            self.sync_active()
        except OSError:
            unlink_quietly(self.active / msg.qid)
            raise
        return envelope

    def scan(self, *, sweep: bool = True) -> list[str]:
        """Queue IDs in active/, oldest first.

        With `sweep` (the runner's scan), also remove stale incoming files and state
        files whose message is gone; readers such as mailq pass sweep=False.
        """
        qids = sorted(e for e in _listdir(self.active) if not e.startswith("."))
        if sweep:
            self._sweep(set(qids))
        return qids

    def _sweep(self, present: set[str]) -> None:
        now = time.time()
        for entry in _listdir(self.incoming):
            path = self.incoming / entry
            try:
                if now - path.stat().st_mtime > STALE_INCOMING:
                    path.unlink()
            except OSError:
                pass
        for entry in _listdir(self.state_dir):
            # Check again: the message may have been queued after `present` was listed.
            orphan = entry not in present and not entry.startswith(".")
            if orphan and not (self.active / entry).exists():
                unlink_quietly(self.state_dir / entry)

    def load(self, qid: str) -> QueueItem:
        """Read and validate a queued message's envelope and state.

        Raises FileNotFoundError if it is gone, CorruptQueueFile if invalid.
        """
        path = self.active / qid
        envelope = read_envelope(path)
        if envelope.qid != qid:
            raise CorruptQueueFile(f"{path}: envelope names queue ID {envelope.qid}")
        state = self.load_state(qid) or QueueState.initial(envelope)
        return QueueItem(envelope, state, str(path))

    def load_state(self, qid: str) -> QueueState | None:
        """The saved state of `qid`, or None when it has none (or an unreadable one)."""
        try:
            data = json.loads((self.state_dir / qid).read_bytes())
            return QueueState.from_json(data)
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            _log().error("qid=%s bad state file ignored, retrying all recipients: %s", qid, exc)
            return None

    def save_state(self, qid: str, state: QueueState) -> None:
        """Replace the state of `qid` durably."""
        data = json.dumps(state.to_json(), separators=(",", ":")).encode()
        atomic_replace(self.state_dir / qid, data)

    def remove(self, qid: str, *, durable: bool = False) -> None:
        """Take `qid` out of the queue (message file first, then its state).

        After a delivery a lost unlink only means a duplicate, so no fsync; `durable`
        (an admin's delete) also fsyncs the directories so the message cannot come back.
        """
        unlink_quietly(self.active / qid)
        unlink_quietly(self.state_dir / qid)
        if durable:
            fsync_dir(self.active)
            fsync_dir(self.state_dir)

    def quarantine(self, qid: str, why: str) -> None:
        """Move a file that failed validation to corrupt/, loudly."""
        import shutil

        log = _log()
        log.error("qid=%s queue file is corrupt, moved to %s: %s", qid, self.corrupt, why)
        try:
            shutil.move(str(self.active / qid), str(self.corrupt / qid))
        except OSError as exc:
            log.error("qid=%s cannot move corrupt file: %s", qid, exc)


def _log() -> logging.Logger:
    import logging

    return logging.getLogger("tinymail.queue")


def read_content(item: QueueItem) -> bytes:
    """The message content of a queued item (blocking)."""
    with open(item.path, "rb") as f:
        data = f.read(item.envelope.size)
    if len(data) != item.envelope.size:
        raise CorruptQueueFile(f"{item.path}: content shorter than recorded")
    return data


def read_envelope(path: Path) -> Envelope:
    """Parse and validate the trailer of a message file."""
    with open(path, "rb") as f:
        total = os.fstat(f.fileno()).st_size
        if total < FOOTER_LEN:
            raise CorruptQueueFile(f"{path}: too short")
        f.seek(total - FOOTER_LEN)
        footer = f.read(FOOTER_LEN)
        size, meta_len = _parse_footer(footer, path)
        if size + 1 + meta_len + FOOTER_LEN != total:
            raise CorruptQueueFile(f"{path}: length does not match the footer")
        f.seek(size)
        meta = f.read(1 + meta_len)
    try:
        envelope = Envelope.from_json(json.loads(meta[1:]))
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptQueueFile(f"{path}: bad envelope: {exc}") from None
    if envelope.size != size or meta[:1] != b"\n":
        raise CorruptQueueFile(f"{path}: envelope does not match the footer")
    return envelope


def _parse_footer(footer: bytes, path: Path) -> tuple[int, int]:
    parts = footer.split(b" ")
    if len(parts) != 3 or parts[0] != b"\n" + MAGIC or not footer.endswith(b"\n"):
        raise CorruptQueueFile(f"{path}: no valid footer")
    try:
        return int(parts[1]), int(parts[2])
    except ValueError:
        raise CorruptQueueFile(f"{path}: bad footer numbers") from None


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []
