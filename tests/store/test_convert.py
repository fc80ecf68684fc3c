"""Offline conversion Maildir <-> mbox: messages, flags, dates, folders and subscriptions."""

from __future__ import annotations

import time
from pathlib import Path

from tinymail.store import maildir
from tinymail.store.convert import convert_store, open_mail_store
from tinymail.store.format import check_store_format, recorded_format
from tinymail.store.mailbox import FlagMode, MailStore

WHEN = time.mktime((2021, 5, 6, 7, 8, 9, 0, 0, -1))


def snapshot(store: MailStore) -> dict[str, list[tuple[bytes, frozenset[str], int]]]:
    """Every folder's messages, flags and dates (whole seconds: an mbox From line has no more)."""
    out = {}
    for info in store.folders():
        if info.selectable:
            box = store.open(info.name)
            uids = box.sync(claim_recent=False).uids
            out[info.name] = [
                (box.read(u), box.flags(u) or frozenset(), int(box.internal_date(u))) for u in uids
            ]
    return out


def test_round_trip_keeps_everything_but_uids(tmp_path: Path) -> None:
    mail = tmp_path / "mail"
    maildir.deliver(
        [mail / "bob"], b"Return-Path: <a@x>\nSubject: one\n\nFrom the start\n>From q\n"
    )
    store = open_mail_store(mail / "bob", "maildir")
    store.ensure_defaults()
    store.create("Projects.2024")
    store.set_subscribed("Projects.2024", True)
    box = store.open("Projects.2024")
    uid = box.append(b"Subject: two\n\nbody\n", frozenset({"\\Seen", "$Work"}), WHEN)
    box.store_flags([uid], frozenset({"\\Flagged"}), FlagMode.ADD)
    check_store_format(mail, "maildir")
    before = snapshot(store)
    subscriptions = set(store.subscriptions())

    done = convert_store(mail, "mbox")
    assert (done.source, done.target, done.owners, done.messages) == ("maildir", "mbox", 1, 2)
    assert done.kept_at is not None and (done.kept_at / "bob" / "cur").is_dir()
    assert recorded_format(mail) == "mbox"
    check_store_format(mail, "mbox")  # a start with the new format is accepted
    converted = open_mail_store(mail / "bob", "mbox")
    assert (mail / "bob" / "INBOX").read_bytes().startswith(b"From a@x ")
    assert snapshot(converted) == before
    assert set(converted.subscriptions()) == subscriptions

    back = convert_store(mail, "maildir")
    assert back.messages == 2 and back.kept_at != done.kept_at
    assert snapshot(open_mail_store(mail / "bob", "maildir")) == before
    assert convert_store(mail, "maildir").messages == 0  # already there: nothing to do


def test_interrupted_swap_is_finished_by_the_next_run(tmp_path: Path) -> None:
    mail = tmp_path / "mail"
    maildir.deliver([mail / "bob"], b"Subject: one\n\nx\n")
    done = convert_store(mail, "mbox")
    assert done.kept_at is not None
    mail.rename(tmp_path / "mail.convert-mbox")  # as if stopped between the two renames
    again = convert_store(mail, "mbox")
    assert again.messages == 0 and recorded_format(mail) == "mbox"
    assert (mail / "bob" / "INBOX").is_file()
