"""The mbox store: one mboxrd file per folder, UW-IMAP/Dovecot metadata headers, safe writes.

Rules / theory (research/imap-anchors.md section 4; RFC 4155):
- Layout: the owner's directory data_dir/mail/OWNER holds one file per folder, ``INBOX`` and
  e.g. ``Sent`` or ``Archive.2024`` beside it, so the same directory works as a Maildir++ root
  never: a data dir is one format or the other (SPEC [store] format).
- A message is ``From <envelope sender or MAILER-DAEMON> <asctime date>`` LF, the message with
  LF line ends, then one empty line. A separator is "From " at the start of the file or right
  after an empty line: the empty line we always write makes stray body lines harmless.
- mboxrd quoting (4.1): a body or header line matching ``>*From `` gets one more ``>``; reading
  removes one, so quoting is reversible (mboxo is lossy and never written).
- Delivery owns the metadata headers: incoming Status, X-Status, X-UID, X-IMAP, X-IMAPbase,
  X-Keywords and Content-Length are removed so a sender cannot forge flags or UIDs (4.3).
- Delivery appends under the lock and fsyncs before returning; any failure truncates the file
  back to its old size (Postfix mail_copy). A crash mid-append leaves a torn last message; the
  earlier ones still parse, and the next delivery first restores the empty line before it.
- UIDs live in the file, as UW-IMAP and Dovecot keep them: ``X-IMAPbase: <uidvalidity>
  <last uid>`` on the first message and ``X-UID: <uid>`` on each. Chosen over a side file so the
  mbox stays self-contained: it can be moved, backed up or opened by Dovecot with its UIDs (and
  the POP3 UIDLs derived from them) intact. An X-UID is believed only if it is above the previous
  one and not above X-IMAPbase's last UID (Dovecot's rule), so a forged one is renumbered.
- Flags: Status ``R`` = \\Seen, ``O`` = not \\Recent; X-Status ``A F T D`` = \\Answered \\Flagged
  \\Draft \\Deleted; X-Keywords = keywords. Clients are shown the message without these headers.
- Rewrites (new UIDs, flags, expunge) are in ``mbox_folder``.
"""

from __future__ import annotations

import os
import re
import time
from bisect import bisect_left
from dataclasses import dataclass
from pathlib import Path

from tinymail.store.layout import mailbox_path
from tinymail.store.lock import MboxLock

INBOX = "INBOX"
METADATA_HEADERS = frozenset(
    {b"status", b"x-status", b"x-uid", b"x-imap", b"x-imapbase", b"x-keywords", b"content-length"}
)
# A metadata field found from the line end before it, so the scan jumps from LF to LF instead
# of trying every byte; the match is that LF, the field and its continuation lines (its own
# line end belongs to the next match or to the end of the header).
_META_AFTER_LF = re.compile(
    rb"\n(status|x-status|x-uid|x-imapbase|x-imap|x-keywords|content-length)[ \t]*:"
    rb"([^\n]*)(?:\n[ \t][^\n]*)*",
    re.IGNORECASE,
)
# A metadata field with its continuation lines (RFC 5322 2.2.3), case-insensitive.
_META_FIELD = re.compile(
    rb"^(status|x-status|x-uid|x-imapbase|x-imap|x-keywords|content-length)[ \t]*:"
    rb"([^\n]*)(?:\n[ \t][^\n]*)*(?:\n|\Z)",
    re.IGNORECASE | re.MULTILINE,
)
# Line starts are found from the LF before them (a literal the regex engine searches for fast)
# rather than with MULTILINE "^", which tries every byte; the first line is checked apart.
_QUOTED_FROM = re.compile(rb"\n(>*From )")
_UNQUOTE_FROM = re.compile(rb"\n>(>*From )")
_FROM_AT_START = re.compile(rb">*From ")
X_STATUS_LETTERS = {"A": "\\Answered", "F": "\\Flagged", "T": "\\Draft", "D": "\\Deleted"}


class MboxFormatError(ValueError):
    """The file is not an mbox we can safely rewrite (it does not start with "From ")."""


def folder_path(data_dir: Path, owner: str, folder: str = INBOX) -> Path:
    """The mbox file of ``folder``: data_dir/mail/OWNER/FOLDER (hierarchy kept as dots)."""
    if not folder or folder.startswith(".") or "/" in folder or "\0" in folder:
        raise ValueError(f"unsafe folder name {folder!r}")
    if folder.endswith(".lock"):
        raise ValueError(f"folder name {folder!r} would collide with a dotlock")
    return mailbox_path(data_dir, owner) / folder


def from_line(sender: str, when: float) -> bytes:
    """The separator line: sender (MAILER-DAEMON for ``<>``) and an asctime() date (RFC 4155)."""
    clean = "".join(c for c in sender if c.isprintable() and not c.isspace()) or "MAILER-DAEMON"
    date = time.asctime(time.localtime(when))
    return f"From {clean} {date}\n".encode("utf-8", "surrogateescape")


def split_header(message: bytes) -> tuple[bytes, bytes]:
    """Split at the empty line: (header block including its LF, rest including the empty line)."""
    if message.startswith(b"\n"):
        return b"", message
    end = message.find(b"\n\n")
    return (message, b"") if end < 0 else (message[: end + 1], message[end + 1 :])


def strip_metadata(header: bytes) -> bytes:
    """Remove the metadata fields (with their continuation lines) from a header block."""
    if not header.endswith(b"\n"):
        return _META_FIELD.sub(b"", header)  # a torn header: the slow general form
    lf_header = b"\n" + header
    if _META_AFTER_LF.search(lf_header) is None:
        return header
    return _META_AFTER_LF.sub(b"", lf_header)[1:]


def quote_from(data: bytes) -> bytes:
    """mboxrd quoting: ``>*From `` at a line start gets one more ``>``."""
    if b"From " not in data:
        return data
    quoted = _QUOTED_FROM.sub(rb"\n>\1", data)
    return b">" + quoted if _FROM_AT_START.match(quoted) else quoted


def unquote_from(data: bytes) -> bytes:
    """Undo ``quote_from``: ``>+From `` at a line start loses one ``>``."""
    if b">From " not in data:
        return data
    plain = _UNQUOTE_FROM.sub(rb"\n\1", data)
    return plain[1:] if plain.startswith(b">") and _FROM_AT_START.match(plain) else plain


def make_record(content: bytes, separator: bytes) -> bytes:
    """One message as stored: the From line, the message (metadata stripped, LF line ends,
    mboxrd-quoted, ending in LF) and the empty line after it."""
    header, body = split_header(content.replace(b"\r\n", b"\n"))
    message = quote_from(strip_metadata(header) + body)
    if not message.endswith(b"\n"):
        message += b"\n"
    return separator + message + b"\n"


def deliver(path: Path, content: bytes, sender: str, when: float | None = None) -> None:
    """Append ``content`` (LF line ends, headers included) to the mbox at ``path``, durably.

    Returns only after fsync; on any error the file is cut back to its old size and the error
    propagates (the message then counts as not delivered).
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    record = make_record(content, from_line(sender, time.time() if when is None else when))
    with MboxLock(path) as lock:
        fd = lock.fd
        size = os.fstat(fd).st_size
        torn = torn_from_prefix(os.pread(fd, 6, max(0, size - 6)))
        if torn:
            os.ftruncate(fd, size - torn)  # a crash cut the last From line: drop the stub
            size -= torn
        if size:
            tail = os.pread(fd, 2, size - 2 if size >= 2 else 0)
            # A torn earlier append: restore the empty line so our From line is a separator.
            record = (b"\n" if tail.endswith(b"\n") else b"\n\n") * (tail != b"\n\n") + record
        try:
            view = memoryview(record)
            offset = size
            while view:
                written = os.pwrite(fd, view, offset)
                view, offset = view[written:], offset + written
            os.fsync(fd)
        except BaseException:
            os.ftruncate(fd, size)  # Postfix mail_copy: never leave a partial message behind
            os.fsync(fd)
            raise


@dataclass(frozen=True, slots=True)
class Entry:
    """One message of a parsed mbox: byte offsets into the file and its metadata."""

    start: int  # offset of the From line
    header_start: int  # offset just after the From line
    end: int  # end of the message (the separating empty line excluded)
    uid: int | None  # a believable X-UID, else None (a new UID is needed)
    flags: frozenset[str]
    keywords: tuple[str, ...]
    size: int  # of the message as clients see it, with CRLF line ends (POP3 LIST, RFC822.SIZE)
    recent: bool  # no ``O`` in Status: no IMAP session has seen it yet (\\Recent)
    plain: bool = False  # no metadata field, no quoted From line: clients see the bytes as stored


@dataclass(frozen=True, slots=True)
class Parsed:
    """An mbox file parsed in one pass."""

    uidvalidity: int  # 0 when the file has no X-IMAPbase yet
    last_uid: int
    entries: tuple[Entry, ...]
    keywords: tuple[str, ...] = ()  # declared after the last UID in X-IMAPbase (Dovecot)


_NO_META: dict[bytes, bytes] = {}


def _metadata(data: bytes, lf: int, end: int) -> tuple[dict[bytes, bytes], int, int]:
    """The first value of each metadata field in the header ``data[lf + 1 : end]`` (``lf`` is
    the line end before it), and the bytes and lines the fields take up."""
    first = _META_AFTER_LF.search(data, lf, end)
    if first is None:
        return _NO_META, 0, 0  # the common case (a fresh delivery)
    found: dict[bytes, bytes] = {}
    removed = lines = 0
    for match in _META_AFTER_LF.finditer(data, first.start(), end):
        found.setdefault(match.group(1).lower(), match.group(2).strip())
        removed += len(match.group(0))
        lines += match.group(0).count(b"\n")
        if match.end() == len(data):  # a torn last line: its LF before it stays visible
            removed -= 1
            lines -= 1
    return found, removed, lines


def _scan(data: bytes) -> tuple[list[int], list[int]]:
    """One pass over the file for every "From ": the offsets of the From lines (the file start
    and each "From " after an empty line) and of the mboxrd-quoted lines (``>+From ``)."""
    starts = [0]
    quoted = []
    pos = data.find(b"From ", 1)
    while pos >= 0:
        before = data[pos - 1]
        if before == 0x0A:  # "From " at a line start: a separator only after an empty line
            if data[pos - 2] == 0x0A:
                starts.append(pos)
        elif before == 0x3E:  # ">From ": quoted if only more ">" precede it on its line
            start = pos - 1
            while start > 0 and data[start - 1] == 0x3E:
                start -= 1
            if data[start - 1] == 0x0A:
                quoted.append(start)
        pos = data.find(b"From ", pos + 5)
    return starts, quoted


_NO_FLAGS: tuple[frozenset[str], tuple[str, ...]] = (frozenset(), ())


def _flags(meta: dict[bytes, bytes]) -> tuple[frozenset[str], tuple[str, ...]]:
    if not meta:
        return _NO_FLAGS
    status = meta.get(b"status", b"").decode("ascii", "replace")
    xstatus = meta.get(b"x-status", b"").decode("ascii", "replace")
    flags = {X_STATUS_LETTERS[c] for c in xstatus if c in X_STATUS_LETTERS}
    if "R" in status:
        flags.add("\\Seen")
    keywords = tuple(meta.get(b"x-keywords", b"").decode("utf-8", "replace").split())
    return frozenset(flags) | frozenset(keywords), keywords


def torn_from_prefix(data: bytes) -> int:
    """Length of a From line cut short by a crash (``\n\nFr`` at the end), else 0."""
    for size in range(1, 5):
        if data.endswith(b"\n\n" + b"From "[:size]):
            return size
    return 0


def parse(data: bytes) -> Parsed:
    """Parse an mbox (one pass): message offsets, UIDs and flags."""
    if not data:
        return Parsed(0, 0, ())
    if not data.startswith(b"From "):
        raise MboxFormatError("mbox does not start with a From line")
    torn = torn_from_prefix(data)
    if torn:
        data = data[: len(data) - torn]
    starts, quoted_at = _scan(data)
    ends = [s - 1 for s in starts[1:]] + [len(data) - 1 if data.endswith(b"\n\n") else len(data)]
    uidvalidity = last_uid = 0
    declared: tuple[str, ...] = ()
    entries: list[Entry] = []
    previous = 0
    renumber = False  # after one unbelievable UID, every later message gets a new one
    for index, (start, end) in enumerate(zip(starts, ends, strict=True)):
        header_start = data.find(b"\n", start, end) + 1 or end
        blank = data.find(b"\n\n", header_start - 1, end)
        meta, meta_bytes, meta_lines = _metadata(
            data, header_start - 1, end if blank < 0 else blank
        )
        if index == 0:
            base = meta.get(b"x-imapbase", b"").split()
            if len(base) >= 2 and base[0].isdigit() and base[1].isdigit():
                uidvalidity, last_uid = int(base[0]), int(base[1])
                declared = tuple(k.decode("utf-8", "replace") for k in base[2:])
        raw_uid = meta.get(b"x-uid", b"")
        uid: int | None = int(raw_uid) if raw_uid.isdigit() and len(raw_uid) < 11 else None
        if renumber or uid is None or not previous < uid <= last_uid or not uidvalidity:
            uid = None  # Dovecot's rule: only increasing UIDs within X-IMAPbase are believed
            renumber = True
        else:
            previous = uid
        flags, keywords = _flags(meta)
        # The client's size without building the message: minus metadata, minus one ">" per
        # quoted From line, plus one CR per LF.
        quoted = bisect_left(quoted_at, end) - bisect_left(quoted_at, header_start)
        lf = data.count(b"\n", header_start, end) - meta_lines
        size = end - header_start - meta_bytes - quoted + lf
        recent = b"O" not in meta.get(b"status", b"")
        plain = not meta_bytes and not quoted
        entries.append(Entry(start, header_start, end, uid, flags, keywords, size, recent, plain))
    return Parsed(uidvalidity, last_uid, tuple(entries), declared)


def message_bytes(data: bytes, entry: Entry) -> bytes:
    """The message as clients see it: metadata headers removed, mboxrd quoting undone."""
    if entry.plain:
        return data[entry.header_start : entry.end]
    header, body = split_header(data[entry.header_start : entry.end])
    return unquote_from(strip_metadata(header) + body)
