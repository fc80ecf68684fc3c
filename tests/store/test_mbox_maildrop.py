"""POP3's maildrop view over Maildir and mbox: listing, read, \\Seen, delete, session lock."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.holding import held_by_another_thread
from tinymail.store import maildir, mbox
from tinymail.store.layout import mailbox_path
from tinymail.store.maildir_folders import MaildirStore
from tinymail.store.maildrop import FolderBusy, SessionLocks, open_maildrop
from tinymail.store.mbox_folder import MboxFolder

OWNER = "bob@example.test"
MESSAGES = [b"Subject: a\n\nFrom the start\n", b"Subject: b\n\n>From quoted\nx\n"]


def deliver(data_dir: Path, store_format: str, content: bytes) -> None:
    if store_format == "mbox":
        mbox.deliver(mbox.folder_path(data_dir, OWNER), content, "a@x")
    else:
        maildir.deliver([mailbox_path(data_dir, OWNER)], content)


def flags_of(data_dir: Path, store_format: str, uid: int) -> frozenset[str] | None:
    if store_format == "mbox":
        return MboxFolder(mbox.folder_path(data_dir, OWNER)).flags(uid)
    return MaildirStore(mailbox_path(data_dir, OWNER)).open("INBOX").flags(uid)


@pytest.mark.parametrize("store_format", ["maildir", "mbox"])
def test_listing_read_seen_delete(tmp_path: Path, store_format: str) -> None:
    for content in MESSAGES:
        deliver(tmp_path, store_format, content)
    drop = open_maildrop(tmp_path, OWNER, store_format)
    listing = drop.listing()
    assert listing.sizes == [len(m) + m.count(b"\n") for m in MESSAGES]
    assert listing.uidvalidity > 0
    first, second = listing.uids
    assert first < second
    assert drop.read(second) == MESSAGES[1]  # byte-exact: mbox quoting undone
    assert flags_of(tmp_path, store_format, second) == frozenset()
    drop.update([second], [first])  # QUIT: \\Seen and the deletion together
    assert flags_of(tmp_path, store_format, second) == frozenset({"\\Seen"})
    assert flags_of(tmp_path, store_format, first) is None
    fresh = open_maildrop(tmp_path, OWNER, store_format)
    again = fresh.listing()
    assert (again.uids, again.uidvalidity) == ([second], listing.uidvalidity)
    assert fresh.read(first) is None and fresh.read(second) == MESSAGES[1]


def test_mbox_inbox_location(tmp_path: Path) -> None:
    deliver(tmp_path, "mbox", MESSAGES[0])
    assert (tmp_path / "mail" / OWNER / "INBOX").is_file()
    assert len(open_maildrop(tmp_path, OWNER, "mbox").listing().uids) == 1


def test_maildir_sizes_are_remembered_per_uidvalidity(tmp_path: Path) -> None:
    for content in MESSAGES:
        deliver(tmp_path, "maildir", content)
    first = open_maildrop(tmp_path, OWNER, "maildir").listing()
    deliver(tmp_path, "maildir", b"Subject: c\n\nthird\n")
    drop = open_maildrop(tmp_path, OWNER, "maildir")
    second = drop.listing()
    assert second.uids[:2] == first.uids and second.sizes[:2] == first.sizes
    assert second.sizes[2] == len(b"Subject: c\n\nthird\n") + 3
    drop.update([], second.uids[:1])
    third = open_maildrop(tmp_path, OWNER, "maildir").listing()
    assert (third.uids, third.sizes) == (second.uids[1:], second.sizes[1:])


def test_session_locks() -> None:
    locks = SessionLocks()
    assert locks.acquire("a") and not locks.acquire("a") and locks.acquire("b")
    locks.release("a")
    assert locks.acquire("a")


def test_maildir_read_now_never_waits_for_another_thread(tmp_path: Path) -> None:
    """The event loop's read gives up (FolderBusy) while an IMAP worker holds the folder."""
    deliver(tmp_path, "maildir", MESSAGES[0])
    drop = open_maildrop(tmp_path, OWNER, "maildir")
    (uid,) = drop.listing().uids
    assert drop.read_now(uid) == MESSAGES[0]
    folder = MaildirStore(mailbox_path(tmp_path, OWNER)).open("INBOX")
    with held_by_another_thread(folder), pytest.raises(FolderBusy):
        drop.read_now(uid)
    assert drop.read_now(uid) == MESSAGES[0]


def test_mbox_read_now_needs_no_lock(tmp_path: Path) -> None:
    deliver(tmp_path, "mbox", MESSAGES[0])
    drop = open_maildrop(tmp_path, OWNER, "mbox")
    (uid,) = drop.listing().uids
    assert drop.read_now(uid) == MESSAGES[0]
