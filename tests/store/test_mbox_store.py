"""The mbox MailStore/Mailbox: folders, UIDs, \\Recent, flags across sessions, APPEND/COPY/
EXPUNGE through safe rewrites, and the file staying a valid mbox for other readers."""

from __future__ import annotations

import mailbox
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinymail.store import mbox
from tinymail.store.mailbox import FlagMode, MailboxError
from tinymail.store.mbox_folder import state_path
from tinymail.store.mbox_mailbox import MboxMailbox, from_line_date
from tinymail.store.mbox_store import MboxStore

MSG = b"Subject: hello\nMessage-ID: <%d@x>\n\nFrom the start\n>From quoted\n"


@pytest.fixture
def store(tmp_path: Path) -> MboxStore:
    s = MboxStore(tmp_path / "bob")
    s.ensure_defaults()
    return s


def deliver(store: MboxStore, n: int) -> None:
    mbox.deliver(store.root / "INBOX", MSG % n, "alice@example.test")


def python_mbox(path: Path) -> list[bytes]:
    box = mailbox.mbox(path, create=False)
    try:
        return [box.get_bytes(key) for key in box.iterkeys()]
    finally:
        box.close()


def test_defaults_folders_and_subscriptions(store: MboxStore) -> None:
    names = [f.name for f in store.folders()]
    assert names == ["INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash"]
    assert {f.name: f.special_use for f in store.folders()}["Sent"] == "\\Sent"
    assert set(store.subscriptions()) == set(names)
    assert (store.root / ".subscriptions").read_bytes().startswith(b"V\t2\n\n")
    store.create("Projects.2024.Q1")
    (store.root / "Projects.lock").write_bytes(b"")  # a dotlock is never a folder
    (store.root / "INBOX.lock.host.1.2").write_bytes(b"")
    info = {f.name: f.selectable for f in store.folders()}
    assert info["Projects"] and info["Projects.2024"] and info["Projects.2024.Q1"]
    assert not any("lock" in name for name in info)
    store.create("Caf\u00e9")
    assert (store.root / "Caf&AOk-").is_file()  # modified UTF-7 on disk, as Dovecot
    assert "Caf\u00e9" in [f.name for f in store.folders()]


@pytest.mark.parametrize("bad", ["a..b", ".x", "a/b", "x.lock", "x.lock.y", "~x"])
def test_unsafe_names_refused(store: MboxStore, bad: str) -> None:
    with pytest.raises(MailboxError):
        store.create(bad)


def test_create_delete_rename(store: MboxStore) -> None:
    with pytest.raises(MailboxError) as exists:
        store.create("Sent")
    assert exists.value.code == "ALREADYEXISTS"
    store.create("Work")
    store.create("Work.Old")
    store.open("Work.Old").append(b"Subject: w\n\nx\n", frozenset(), None)
    store.rename("Work", "Done")
    names = {f.name for f in store.folders()}
    assert {"Done", "Done.Old"} <= names and not {"Work", "Work.Old"} & names
    assert store.open("Done.Old").sync(claim_recent=False).uids == (1,)
    with pytest.raises(MailboxError) as gone:
        store.open("Work")
    assert gone.value.code == "NONEXISTENT"
    store.delete("Done")
    assert "Done" not in {f.name for f in store.folders() if f.selectable}
    with pytest.raises(MailboxError):
        store.delete("INBOX")


def test_rename_inbox_moves_messages(store: MboxStore) -> None:
    for n in range(3):
        deliver(store, n)
    inbox = store.open("INBOX")
    inbox.store_flags([2], frozenset({"\\Flagged"}), FlagMode.ADD)
    store.rename("INBOX", "Old")
    assert inbox.sync(claim_recent=False).uids == ()
    old = store.open("Old")
    uids = old.sync(claim_recent=False).uids
    assert [old.read(u) for u in uids] == [MSG % n for n in range(3)]
    assert old.flags(uids[1]) == frozenset({"\\Flagged"})


def test_uids_stable_and_recent_claimed_once(store: MboxStore) -> None:
    for n in range(3):
        deliver(store, n)
    path = store.root / "INBOX"
    # Two objects on one file behave like two processes (no shared memory).
    one, two = MboxMailbox(path, "INBOX"), MboxMailbox(path, "INBOX")
    status = one.status_counts()
    assert status == (3, 3, 3)  # STATUS claims nothing
    first = one.sync(claim_recent=True)
    second = two.sync(claim_recent=True)
    assert first.uids == second.uids == (1, 2, 3)
    assert first.recent == {1, 2, 3} and second.recent == frozenset()
    assert first.uidvalidity == second.uidvalidity and first.uidnext == 4
    assert two.status_counts() == (3, 0, 3)
    deliver(store, 3)
    assert two.sync(claim_recent=False).uids == (1, 2, 3, 4)
    assert one.sync(claim_recent=True).recent == {4}
    again = MboxMailbox(path, "INBOX").sync(claim_recent=True)
    assert again.uids == (1, 2, 3, 4) and again.uidvalidity == first.uidvalidity


def test_flag_changes_seen_by_other_sessions(store: MboxStore) -> None:
    for n in range(2):
        deliver(store, n)
    path = store.root / "INBOX"
    shared = store.open("INBOX")
    other = MboxMailbox(path, "INBOX")  # another process
    view = shared.sync(claim_recent=True)
    other.sync(claim_recent=False)
    result = shared.store_flags([1], frozenset({"\\Seen", "$Work"}), FlagMode.ADD)
    assert result[1][0] == frozenset({"\\Seen", "$Work"})
    assert shared.flag_changes(view.modseq) == [(1, result[1][1])]
    # The other process sees it at its next sync, with a modseq of its own log.
    before = other.sync(claim_recent=False).modseq
    assert other.flags(1) == frozenset({"\\Seen", "$Work"})
    assert [uid for uid, _ in other.flag_changes(before - 1) or []] == [1]
    assert "$Work" in other.sync(claim_recent=False).keywords
    # Keywords are matched without regard to case; removal too.
    other.store_flags([2], frozenset({"$WORK"}), FlagMode.ADD)
    assert other.flags(2) == frozenset({"$Work"})
    other.store_flags([1, 2], frozenset({"$work", "\\Seen"}), FlagMode.REMOVE)
    assert other.flags(1) == other.flags(2) == frozenset()
    header = path.read_bytes().split(b"\n\n", 1)[0]
    assert b"X-IMAPbase: " in header and header.split(b"X-IMAPbase: ")[1].split(b"\n")[0].endswith(
        b" $Work"
    )  # declared for Dovecot, which honours only declared keywords


def test_append_copy_expunge_and_other_readers(store: MboxStore) -> None:
    deliver(store, 0)
    inbox = store.open("INBOX")
    when = time.mktime((2020, 2, 29, 12, 34, 56, 0, 0, -1))
    uid = inbox.append(b"Subject: app\r\n\r\nFrom x\r\n", frozenset({"\\Draft"}), when)
    assert uid == 2
    assert inbox.read(uid) == b"Subject: app\n\nFrom x\n"
    assert inbox.internal_date(uid) == when
    assert inbox.size(uid) == len(b"Subject: app\r\n\r\nFrom x\r\n")
    assert inbox.read_header(uid) == b"Subject: app\n\n"
    assert inbox.envelope(uid, lambda h: h.upper()) == b"SUBJECT: APP\n\n"
    sent = store.open("Sent")
    pairs = inbox.copy_to([1, 2, 99], sent)
    assert pairs == [(1, 1), (2, 2)]
    assert sent.read(2) == inbox.read(2) and sent.flags(2) == frozenset({"\\Draft"})
    assert sent.internal_date(2) == when  # COPY keeps the From line
    assert inbox.expunge([1, 99]) == [1]
    assert inbox.sync(claim_recent=False).uids == (2,)
    with pytest.raises(MailboxError):
        inbox.read(1)
    # Python's mailbox (mboxo) parses the rewritten files: it shows our metadata headers
    # instead of hiding them and leaves the mboxrd quoting in place, but nothing is lost.
    (only,) = python_mbox(store.root / "INBOX")
    assert only.startswith(b"Subject: app\n") and b"\nX-UID: 2\n" in only
    assert only.endswith(b"\n\n>From x\n")
    copies = python_mbox(store.root / "Sent")
    assert [m.split(b"\n", 1)[0] for m in copies] == [b"Subject: hello", b"Subject: app"]
    assert copies[0].endswith(b"\n\n>From the start\n>>From quoted\n")


def test_emptied_folder_keeps_its_uid_space(store: MboxStore) -> None:
    for n in range(3):
        deliver(store, n)
    inbox = store.open("INBOX")
    view = inbox.sync(claim_recent=True)
    assert inbox.expunge(view.uids) == [1, 2, 3]
    assert (store.root / "INBOX").read_bytes() == b""
    assert state_path(store.root / "INBOX").read_bytes() == b"%d 3\n" % view.uidvalidity
    deliver(store, 9)
    box = MboxMailbox(store.root / "INBOX", "INBOX")
    after = box.sync(claim_recent=False)
    assert after.uids == (4,) and after.uidvalidity == view.uidvalidity  # never UID 1 again
    assert state_path(store.root / "INBOX").exists()  # UID 4 waits there for a rewrite ...
    box.store_flags([4], frozenset({"\\Seen"}), FlagMode.ADD)
    assert not state_path(store.root / "INBOX").exists()  # ... X-IMAPbase holds it all again
    again = MboxMailbox(store.root / "INBOX", "INBOX").sync(claim_recent=False)
    assert (again.uids, again.uidvalidity) == ((4,), view.uidvalidity)


def test_recreated_folder_gets_new_uidvalidity(store: MboxStore) -> None:
    store.create("Tmp")
    first = store.open("Tmp").sync(claim_recent=False).uidvalidity
    store.delete("Tmp")
    store.create("Tmp")
    assert store.open("Tmp").sync(claim_recent=False).uidvalidity > first


def test_deleted_folder_is_nonexistent_for_its_sessions(store: MboxStore) -> None:
    store.create("Gone")
    box = store.open("Gone")
    box.sync(claim_recent=False)
    store.delete("Gone")
    with pytest.raises(MailboxError) as err:
        box.sync(claim_recent=False)
    assert err.value.code == "NONEXISTENT"
    assert not (store.root / "Gone").exists()  # the failed sync did not re-create it


def test_keyword_limit(store: MboxStore) -> None:
    uid = store.open("INBOX").append(b"Subject: k\n\nx\n", frozenset(), None)
    box = store.open("INBOX")
    box.store_flags([uid], frozenset(f"k{i}" for i in range(26)), FlagMode.ADD)
    with pytest.raises(MailboxError) as err:
        box.store_flags([uid], frozenset({"one-too-many"}), FlagMode.ADD)
    assert err.value.code == "LIMIT"


def test_from_line_date() -> None:
    assert from_line_date(b"From a@x Thu Jan  1 00:00:00 1970\n") == time.mktime(
        (1970, 1, 1, 0, 0, 0, 0, 0, -1)
    )
    assert from_line_date(b"From a@x Sat Feb 29 12:34:56 2020 +0100\n") > 0
    assert from_line_date(b"From a@x garbage\n") == 0.0


ops = st.lists(
    st.tuples(
        st.sampled_from(["deliver", "append", "flag", "expunge", "claim"]), st.integers(0, 5)
    ),
    max_size=14,
)


@settings(max_examples=40, deadline=None)
@given(ops)
def test_uids_never_change_or_repeat(
    tmp_path_factory: pytest.TempPathFactory, script: list[tuple[str, int]]
) -> None:
    """Against a model: every UID names one message forever, the file stays parseable."""
    root = tmp_path_factory.mktemp("prop")
    store = MboxStore(root)
    store.ensure_defaults()
    box = MboxMailbox(root / "INBOX", "INBOX")  # a fresh object per example
    model: dict[int, bytes] = {}
    used: set[int] = set()
    for counter, (op, arg) in enumerate(script):
        body = MSG % counter
        if op == "deliver":
            mbox.deliver(root / "INBOX", body, "a@x")
        elif op == "append":
            model[box.append(body, frozenset(), None)] = body
        elif op == "flag" and model:
            uid = sorted(model)[arg % len(model)]
            box.store_flags([uid], frozenset({"\\Flagged"}), FlagMode.ADD)
            assert box.flags(uid) == frozenset({"\\Flagged"})
        elif op == "expunge" and model:
            doomed = sorted(model)[: arg % (len(model) + 1)]
            assert box.expunge(doomed) == doomed
            for uid in doomed:
                del model[uid]
        view = box.sync(claim_recent=op == "claim")
        for uid in view.uids:
            if uid not in model:
                assert uid not in used  # a new UID for a new message only
                model[uid] = box.read(uid)
        assert set(view.uids) == set(model)
        assert all(box.read(uid) == model[uid] for uid in view.uids)
        used |= set(view.uids)
        assert view.uidnext > max(used, default=0)
    data = (root / "INBOX").read_bytes()
    assert len(mbox.parse(data).entries) == len(model)
