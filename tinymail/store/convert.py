"""Converting the mail of a data dir between Maildir and mbox, offline and all at once.

Rules (issue 7: a format change is refused, or converts explicitly with a command):
- Run with ``tinymail serve`` stopped. Every owner's folders are copied through the MailStore
  protocol into a staging tree ``mail.convert-FORMAT`` beside the mail dir, with flags,
  keywords, INTERNALDATE and subscriptions; the staging tree is complete once its ``.format``
  is written. Then the old mail dir is renamed to ``mail.before-FORMAT`` (kept for the admin
  to remove) and the staging tree renamed into place: the store is never half converted.
- A run interrupted before the first rename leaves the old store in use (the staging tree is
  rebuilt by the next run); between the two renames, the next run finishes the swap.
- UIDs are not carried over: every folder gets a new UIDVALIDITY, so IMAP clients resync and
  POP3 clients keeping mail on the server download it again.
- mbox From lines take the envelope sender from Return-Path (as local delivery wrote it).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from tinymail.store.format import FORMAT_FILE, FORMATS, detect_formats, recorded_format
from tinymail.store.mailbox import Mailbox, MailboxError, MailStore
from tinymail.store.maildir_folders import MaildirStore
from tinymail.store.mbox import from_line, make_record
from tinymail.store.mbox_mailbox import MboxMailbox
from tinymail.store.mbox_store import MboxStore
from tinymail.store.safeio import atomic_replace, fsync_dir

BATCH = 500  # messages per mbox rewrite
_RETURN_PATH = re.compile(rb"^Return-Path:[ \t]*<([^>\r\n]*)>", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Converted:
    """What a conversion did."""

    source: str
    target: str
    owners: int
    messages: int
    kept_at: Path | None  # the old mail dir, None when there was nothing to convert


def open_mail_store(root: Path, store_format: str) -> MailStore:
    """One owner's folders in ``store_format``."""
    return MboxStore(root) if store_format == "mbox" else MaildirStore(root)


def _copy_folder(source: Mailbox, target: Mailbox) -> int:
    uids = source.sync(claim_recent=False).uids
    if isinstance(target, MboxMailbox):
        for start in range(0, len(uids), BATCH):
            records = []
            for uid in uids[start : start + BATCH]:
                data = source.read(uid)
                sender = _RETURN_PATH.search(data[:65536])
                separator = from_line(
                    sender.group(1).decode("utf-8", "replace") if sender else "",
                    source.internal_date(uid),
                )
                records.append((make_record(data, separator), source.flags(uid) or frozenset()))
            target.append_records(records)
    else:
        for uid in uids:
            flags = source.flags(uid) or frozenset()
            target.append(source.read(uid), flags, source.internal_date(uid))
    return len(uids)


def _convert_owner(source: MailStore, target: MailStore) -> int:
    count = 0
    for info in source.folders():
        if not info.selectable:
            continue
        if info.name != "INBOX":
            try:
                target.create(info.name)
            except MailboxError as exc:
                if exc.code != "ALREADYEXISTS":  # a parent created before its own turn
                    raise
        count += _copy_folder(source.open(info.name), target.open(info.name))
    for name in source.subscriptions():
        target.set_subscribed(name, True)
    return count


def convert_store(mail_dir: Path, target: str) -> Converted:
    """Convert every mailbox under ``mail_dir`` to ``target`` ("maildir" or "mbox")."""
    if target not in FORMATS:
        raise ValueError(f"unknown store format {target!r}")
    staging = mail_dir.with_name(f"{mail_dir.name}.convert-{target}")
    if not mail_dir.exists() and recorded_format(staging) == target:
        staging.rename(mail_dir)  # a previous run stopped between its two renames
        fsync_dir(mail_dir.parent)
    found = detect_formats(mail_dir)
    source = recorded_format(mail_dir) or (found.pop() if len(found) == 1 else target)
    if source == target:
        return Converted(source, target, 0, 0, None)
    shutil.rmtree(staging, ignore_errors=True)  # an interrupted earlier attempt
    staging.mkdir(mode=0o700)
    owners = messages = 0
    for owner in sorted(p for p in mail_dir.iterdir() if p.is_dir() and p.name[0] != "."):
        old = open_mail_store(owner, source)
        new = open_mail_store(staging / owner.name, target)
        (staging / owner.name).mkdir(mode=0o700)
        messages += _convert_owner(old, new)
        owners += 1
    atomic_replace(staging / FORMAT_FILE, f"{target}\n".encode(), mode=0o644)  # complete
    kept = mail_dir.with_name(f"{mail_dir.name}.before-{target}")
    n = 1
    while kept.exists():
        n += 1
        kept = mail_dir.with_name(f"{mail_dir.name}.before-{target}.{n}")
    mail_dir.rename(kept)
    staging.rename(mail_dir)
    fsync_dir(mail_dir.parent)
    return Converted(source, target, owners, messages, kept)
