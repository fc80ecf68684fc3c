import gc
import os
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinymail.store import uidlist as ul
from tinymail.store.envcache import CACHE_FILE as EnvCacheName
from tinymail.store.mailbox import FlagMode, MailboxError
from tinymail.store.maildir import deliver
from tinymail.store.maildir_folder import MaildirFolder
from tinymail.store.maildir_folders import MaildirStore, normalize_name


def msg(n: int) -> bytes:
    return f"Subject: m{n}\nFrom: a@x\n\nbody {n}\nline\n".encode()


@pytest.fixture
def store(tmp_path: Path) -> MaildirStore:
    s = MaildirStore(tmp_path / "Maildir")
    s.ensure_defaults()
    return s


def fresh(store: MaildirStore, name: str = "INBOX") -> MaildirFolder:
    """A second, independent folder object: what another process would see."""
    path = store.root if name == "INBOX" else store.root / ("." + name)
    return MaildirFolder(path, name, store._new_uidvalidity)


def test_defaults_special_use_and_subscriptions(store: MaildirStore) -> None:
    infos = {f.name: f for f in store.folders()}
    assert set(infos) == {"INBOX", "Drafts", "Sent", "Trash", "Junk", "Archive"}
    assert infos["Sent"].special_use == "\\Sent" and infos["INBOX"].special_use is None
    assert (store.root / ".Sent" / "maildirfolder").exists()
    assert set(store.subscriptions()) == set(infos)
    assert (store.root / "subscriptions").read_text().startswith("V\t2\n\n")
    store.ensure_defaults()  # idempotent
    assert len(store.subscriptions()) == 6


def test_uids_in_delivery_order_and_stable(store: MaildirStore) -> None:
    for i in range(5):
        deliver([store.root], msg(i))
    box = store.open("INBOX")
    view = box.sync(claim_recent=False)
    assert view.uids == (1, 2, 3, 4, 5) and view.uidnext == 6
    assert [box.read(u) for u in view.uids] == [msg(i) for i in range(5)]
    # new/ -> cur/ and flag renames keep UIDs; another "process" sees the same mapping
    recent = box.sync(claim_recent=True).recent
    assert recent == {1, 2, 3, 4, 5}
    assert not os.listdir(store.root / "new")
    box.store_flags([2], frozenset({"\\Seen", "\\Flagged"}), FlagMode.ADD)
    other = fresh(store)
    v2 = other.sync(claim_recent=True)
    assert v2.uids == view.uids and v2.uidvalidity == view.uidvalidity and not v2.recent
    assert other.flags(2) == frozenset({"\\Seen", "\\Flagged"})
    assert any(n.endswith(":2,FS") for n in os.listdir(store.root / "cur"))


def test_recent_claimed_by_exactly_one(store: MaildirStore) -> None:
    for i in range(3):
        deliver([store.root], msg(i))
    a, b = fresh(store), fresh(store)
    ra = a.sync(claim_recent=True).recent
    rb = b.sync(claim_recent=True).recent
    assert ra == {1, 2, 3} and rb == frozenset()
    deliver([store.root], msg(9))
    assert b.sync(claim_recent=False).recent == frozenset()
    assert b.sync(claim_recent=True).recent == {4}
    assert a.sync(claim_recent=True).recent == frozenset()


def test_first_scan_is_not_repeated_by_the_next_sync(store: MaildirStore) -> None:
    """The first scan writes the uidlist and moves new/ to cur/; those are its own changes,
    so the next command finds nothing to rescan, while a later delivery is still seen."""
    for i in range(3):
        deliver([store.root], msg(i))
    box = fresh(store)
    assert box.sync(claim_recent=True).recent == {1, 2, 3}
    listings = []
    listing = box._listing

    def counted() -> dict[str, tuple[str, bool, str]]:
        listings.append(1)
        return listing()

    box._listing = counted  # type: ignore[method-assign]
    box.sync(claim_recent=True)
    box.sync(claim_recent=False)
    assert listings == []
    deliver([store.root], msg(3))
    assert box.sync(claim_recent=True).uids == (1, 2, 3, 4) and listings


def test_scan_keeps_nothing_for_the_collector_to_walk(store: MaildirStore) -> None:
    """Per-message state is plain tuples of atoms, which CPython stops tracking: a folder of
    100,000 messages adds nothing to the work of a full collection."""
    for i in range(3):
        deliver([store.root], msg(i))
    box = fresh(store)
    box.sync(claim_recent=True)
    box.store_flags([2], frozenset({"\\Seen"}), FlagMode.ADD)
    gc.collect()
    assert len(box._msgs) == 3 and not any(gc.is_tracked(e) for e in box._msgs.values())


def test_sizes_dates_header(store: MaildirStore) -> None:
    deliver([store.root], msg(1))
    box = store.open("INBOX")
    (uid,) = box.sync(False).uids
    assert box.size(uid) == len(msg(1).replace(b"\n", b"\r\n"))
    assert box.read_header(uid) == b"Subject: m1\nFrom: a@x\n\n"
    assert abs(box.internal_date(uid) - os.stat(next((store.root / "new").iterdir())).st_mtime) < 1


def test_append_keywords_copy_expunge(store: MaildirStore) -> None:
    inbox, trash = store.open("INBOX"), store.open("Trash")
    uid = inbox.append(b"Subject: x\r\n\r\nhi\r\n", frozenset({"\\Seen", "$Junk"}), 1_000_000.0)
    assert inbox.read(uid) == b"Subject: x\n\nhi\n"
    assert inbox.flags(uid) == frozenset({"\\Seen", "$Junk"})
    assert inbox.internal_date(uid) == 1_000_000.0
    assert (store.root / "dovecot-keywords").read_text() == "0 $Junk\n"
    assert inbox.size(uid) == len(b"Subject: x\r\n\r\nhi\r\n")
    pairs = inbox.copy_to([uid], trash)
    assert pairs == [(uid, 1)]
    assert (
        trash.flags(1) == frozenset({"\\Seen", "$Junk"}) and trash.internal_date(1) == 1_000_000.0
    )
    assert trash.sync(False).keywords == ("$Junk",)
    changed = inbox.store_flags([uid], frozenset({"$Junk"}), FlagMode.REMOVE)
    assert changed[uid][0] == frozenset({"\\Seen"})
    assert inbox.expunge([uid, 99]) == [uid]
    view = inbox.sync(False)
    assert view.uids == () and view.uidnext == uid + 1
    with pytest.raises(MailboxError):
        inbox.read(uid)


def test_flag_change_log_and_external_rename(store: MaildirStore) -> None:
    deliver([store.root], msg(1))
    box = store.open("INBOX")
    v = box.sync(True)
    other = fresh(store)
    other.sync(False)
    other.store_flags([1], frozenset({"\\Answered"}), FlagMode.ADD)
    v2 = box.sync(False)
    changes = box.flag_changes(v.modseq)
    assert changes is not None and [u for u, _ in changes] == [1]
    assert box.flags(1) == frozenset({"\\Answered"}) and v2.modseq > v.modseq
    # a stale name (renamed behind our back) is found again on read and on store
    other.store_flags([1], frozenset({"\\Seen"}), FlagMode.ADD)
    assert box.read(1) == msg(1)
    box.store_flags([1], frozenset({"\\Flagged"}), FlagMode.ADD)
    assert fresh(store).sync(False) and box.flags(1) == frozenset(
        {"\\Answered", "\\Seen", "\\Flagged"}
    )


def test_concurrent_flag_updates_never_lost(store: MaildirStore) -> None:
    deliver([store.root], msg(1))
    fresh(store).sync(True)
    folders = [fresh(store) for _ in range(4)]
    wanted = ["\\Seen", "\\Flagged", "\\Answered", "\\Draft"]

    def worker(box: MaildirFolder, flag: str) -> None:
        box.sync(False)
        box.store_flags([1], frozenset({flag}), FlagMode.ADD)

    threads = [
        threading.Thread(target=worker, args=(b, f)) for b, f in zip(folders, wanted, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    check = fresh(store)
    check.sync(False)
    assert check.flags(1) == frozenset(wanted)


def test_concurrent_assignment_never_duplicates(store: MaildirStore) -> None:
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            box = fresh(store)
            for i in range(10):
                deliver([store.root], msg(n * 100 + i))
                box.sync(claim_recent=i % 2 == 0)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    lst = ul.read(store.root / ul.UIDLIST)
    assert lst is not None
    uids = [u for u, _ in lst.records.values()]
    assert len(uids) == len(set(uids)) == 40
    assert sorted(fresh(store).sync(False).uids) == sorted(uids)


def test_lost_uidlist_gets_new_uidvalidity(store: MaildirStore) -> None:
    deliver([store.root], msg(1))
    first = fresh(store).sync(False)
    os.unlink(store.root / ul.UIDLIST)
    second = fresh(store).sync(False)
    assert second.uidvalidity > first.uidvalidity and second.uids == (1,)


def test_delete_recreate_changes_uidvalidity(store: MaildirStore) -> None:
    store.create("Work.2024")
    v1 = store.open("Work.2024").sync(False).uidvalidity
    store.delete("Work.2024")
    with pytest.raises(MailboxError):
        store.open("Work.2024")
    store.create("Work.2024")
    assert store.open("Work.2024").sync(False).uidvalidity > v1
    assert {f.name: f.selectable for f in store.folders()}["Work"] is True  # parent created
    store.delete("Work")  # children stay (RFC 3501 6.3.4); the parent is listed \\Noselect
    names = {f.name: f.selectable for f in store.folders()}
    assert names["Work"] is False and names["Work.2024"] is True


def test_rename_with_children_and_inbox(store: MaildirStore) -> None:
    store.create("a")
    store.create("a.b")
    store.rename("a", "c")
    names = {f.name for f in store.folders()}
    assert {"c", "c.b"} <= names and not {"a", "a.b"} & names
    deliver([store.root], msg(1))
    store.rename("INBOX", "Old")
    assert store.open("INBOX").sync(False).uids == ()
    assert len(store.open("Old").sync(False).uids) == 1
    with pytest.raises(MailboxError):
        store.rename("c", "c.b.d")


def test_unicode_names_on_disk_in_mutf7(store: MaildirStore) -> None:
    store.create("Entwürfe")
    assert (store.root / ".Entw&APw-rfe").is_dir()
    assert "Entwürfe" in {f.name for f in store.folders()}


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "../../etc",
        "/etc/x",
        "~root/x",
        "a//b",
        "a..b",
        ".hidden",
        "a/b",
        "x\r\ny",
        "nul\0",
        "w*",
        "w%",
        "a\\b",
    ],
)
def test_invalid_names_refused(store: MaildirStore, bad: str) -> None:
    with pytest.raises(MailboxError):
        normalize_name(bad)
    with pytest.raises(MailboxError):
        store.create(bad)
    assert sorted(os.listdir(store.root.parent)) == ["Maildir"]


def test_create_with_trailing_separator(store: MaildirStore) -> None:
    # RFC 3501 6.3.3: "a." creates "a"
    with pytest.raises(MailboxError):
        normalize_name("a.")
    store.create("a.")
    assert (store.root / ".a" / "cur").is_dir()


def test_inbox_case_and_subscriptions(store: MaildirStore) -> None:
    assert normalize_name("inbox.Sub") == "INBOX.Sub"
    store.set_subscribed("Sent", False)
    store.set_subscribed("Not.There", True)
    subs = store.subscriptions()
    assert "Sent" not in subs and "Not.There" in subs
    assert "Not\tThere\n" in (store.root / "subscriptions").read_text()


_ops = st.lists(
    st.tuples(st.sampled_from(["deliver", "sync_a", "sync_b", "flag", "expunge", "reopen"]),
              st.integers(0, 50)),
    max_size=25,
)  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(_ops)
def test_uids_never_change_or_repeat(ops: list[tuple[str, int]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = MaildirStore(Path(tmp) / "Maildir")
        store.ensure_defaults()
        a, b = fresh(store), fresh(store)
        known: dict[bytes, int] = {}  # message body -> the UID it got first
        gone: set[int] = set()
        highest = 0
        for n, (op, arg) in enumerate(ops):
            if op == "deliver":
                deliver([store.root], b"Subject: x\n\n%d\n" % n)
            elif op in ("sync_a", "sync_b"):
                (a if op == "sync_a" else b).sync(claim_recent=arg % 2 == 0)
            elif op == "flag":
                uids = a.sync(False).uids
                if uids:
                    a.store_flags([uids[arg % len(uids)]], frozenset({"\\Seen"}), FlagMode.ADD)
            elif op == "expunge":
                uids = b.sync(False).uids
                if uids:
                    gone.update(b.expunge([uids[arg % len(uids)]]))
            else:
                a = fresh(store)  # a restart: everything comes from the files again
            view = a.sync(False)
            assert list(view.uids) == sorted(set(view.uids)) and not gone & set(view.uids)
            assert all(u > highest for u in view.uids if u not in known.values())
            for uid in view.uids:
                body = a.read(uid)
                assert known.setdefault(body, uid) == uid  # the same message keeps its UID
            highest = max([highest, *view.uids])
            assert b.sync(False).uids == view.uids


def test_envelope_cache_persists_and_survives_damage(store: MaildirStore) -> None:
    deliver([store.root], msg(1))
    deliver([store.root], msg(2))
    box = fresh(store)
    uids = box.sync(False).uids
    calls: list[bytes] = []

    def compute(header: bytes) -> bytes:
        calls.append(header)
        return b"ENV:" + header.split(b"\n", 1)[0]

    assert [box.envelope(u, compute) for u in uids] == [b"ENV:Subject: m1", b"ENV:Subject: m2"]
    box.sync(False)  # flushes the cache file
    again = fresh(store)  # a restart reads the file instead of the messages
    again.sync(False)
    assert again.envelope(uids[1], compute) == b"ENV:Subject: m2" and len(calls) == 2
    path = store.root / EnvCacheName
    path.write_bytes(path.read_bytes()[:-7])  # a torn last record
    third = fresh(store)
    third.sync(False)
    assert third.envelope(uids[0], compute) == b"ENV:Subject: m1" and len(calls) == 2
    assert third.envelope(uids[1], compute) == b"ENV:Subject: m2" and len(calls) == 3
    path.unlink()  # deleted: rebuilt on demand
    fourth = fresh(store)
    fourth.sync(False)
    assert fourth.envelope(uids[0], compute) == b"ENV:Subject: m1" and len(calls) == 4


def test_derived_data_and_size_are_cached_per_message(store: MaildirStore) -> None:
    deliver([store.root], msg(1))
    deliver([store.root], msg(2))
    box = fresh(store)
    uids = box.sync(False).uids
    calls: list[bytes] = []

    def compute(message: bytes) -> bytes:
        calls.append(message)
        return b"STRUCT %d" % len(message)

    expected = [b"STRUCT %d" % len(msg(n)) for n in (1, 2)]
    assert [box.derived(u, "B", compute) for u in uids] == expected
    assert [box.derived(u, "B", compute) for u in uids] == expected and len(calls) == 2
    # RFC822.SIZE counts CRLF line ends; the stored message has LF only
    sizes = [len(msg(n)) + msg(n).count(b"\n") for n in (1, 2)]
    assert [box.size(u) for u in uids] == sizes
    box.sync(False)  # flushes the cache file
    again = fresh(store)  # a restart answers from the file, not from the messages
    again.sync(False)
    saved = {p: p.read_bytes() for p in (store.root / "cur").iterdir()}
    for p in saved:  # different bytes under the same names: only the cache knows the old ones
        p.write_bytes(b"X: y\n\nchanged\n")
    assert [again.size(u) for u in uids] == sizes
    assert again.derived(uids[1], "B", compute) == expected[1] and len(calls) == 2
    for p, data in saved.items():
        p.write_bytes(data)
    (store.root / EnvCacheName).write_bytes(b"B junk\n")  # corrupt: rebuilt on demand
    third = fresh(store)
    third.sync(False)
    assert third.derived(uids[0], "B", compute) == expected[0] and len(calls) == 3
    assert [third.size(u) for u in uids] == sizes
    assert third.envelope(uids[0], lambda h: h[:10]) == msg(1)[:10]  # kinds are kept apart
    assert third.derived(uids[0], "B", compute) == expected[0]


def test_quiet_hold_refuses_a_changed_folder_and_skips_rescans(tmp_path: Path) -> None:
    """try_hold(quiet=True) holds only an unchanged, unheld folder with nothing waiting in
    new/ to be claimed; while held, sync reports the last scan (the event loop never lists
    a directory or renames a file), and the next sync catches up."""
    store = MaildirStore(tmp_path)
    deliver([tmp_path], b"Subject: 1\n\nx\n")
    folder = store.open("INBOX")
    folder.sync(claim_recent=False)
    assert not folder.try_hold(quiet=True)  # message 1 waits in new/ for a claim
    assert folder.sync(claim_recent=True).recent == {1}
    assert folder.try_hold(quiet=True)
    deliver([tmp_path], b"Subject: 2\n\nx\n")
    assert len(folder.sync(claim_recent=True).uids) == 1  # held: no rescan
    folder.release_hold(quiet=True)
    assert not folder.try_hold(quiet=True)  # new/ changed: a rescan is due
    view = folder.sync(claim_recent=True)
    assert len(view.uids) == 2 and view.recent == {2}
