import os
import threading
import time
from pathlib import Path

import pytest

from tinymail.store import uidlist as ul


def test_reads_dovecot_v3_with_extensions_and_info(tmp_path: Path) -> None:
    path = tmp_path / ul.UIDLIST
    path.write_text(
        "3 V1275660208 N25022 G3085f01b7f11094c501100008c4a11c1\n"
        "25006 :1276528487.M364837P9451.kurkku,S=1355,W=1394:2,\n"
        "25017 W2481 :1276533073.M242911P3632.kurkku:2,F\n"
        "25018 :1276533074.M1P1.kurkku\n"
    )
    got = ul.read(path)
    assert got is not None
    assert got.uidvalidity == 1275660208 and got.guid.startswith("3085")
    assert got.records["1276528487.M364837P9451.kurkku,S=1355,W=1394"] == (25006, "")
    assert got.records["1276533073.M242911P3632.kurkku"] == (25017, "W2481")
    assert got.next_uid == 25022


def test_next_uid_follows_appended_records(tmp_path: Path) -> None:
    path = tmp_path / ul.UIDLIST
    path.write_text("3 V5 N3 Gab\n1 :a\n2 :b\n7 :c\n")
    got = ul.read(path)
    assert got is not None and got.next_uid == 8


def test_reads_version1(tmp_path: Path) -> None:
    path = tmp_path / ul.UIDLIST
    path.write_text("1 77 5\n3 msgA:2,S\n4 msgB\n")
    got = ul.read(path)
    assert got is not None
    assert got.uidvalidity == 77 and got.records == {"msgA": (3, ""), "msgB": (4, "")}


def test_incremental_read_and_half_line(tmp_path: Path) -> None:
    path = tmp_path / ul.UIDLIST
    first = ul.UidList(uidvalidity=9, guid="00")
    ul.assign(path, first, ["x", "y"])
    seen = ul.read(path)
    assert seen is not None and set(seen.records) == {"x", "y"}
    with open(path, "a") as f:
        f.write("3 :z\n4 :hal")  # a writer mid-append: the half line waits
    again = ul.read(path, seen)
    assert again is seen and set(again.records) == {"x", "y", "z"}
    with open(path, "a") as f:
        f.write("f\n")
    assert set(ul.read(path, again).records) == {"x", "y", "z", "half"}  # type: ignore[union-attr]


def test_rewrite_drops_missing_and_keeps_next_uid(tmp_path: Path) -> None:
    path = tmp_path / ul.UIDLIST
    lst = ul.UidList(uidvalidity=3, guid="11")
    ul.assign(path, lst, ["a", "b", "c"])
    ul.rewrite(path, lst, {"b": "b:2,S"})
    text = path.read_text()
    assert text == "3 V3 N4 G11\n2 :b\n"
    assert not list(tmp_path.glob("*.tmp"))


def test_assign_writes_a_new_list_whole_then_appends(tmp_path: Path) -> None:
    path = tmp_path / ul.UIDLIST
    lst = ul.UidList(uidvalidity=7, guid="ab")
    ul.assign(path, lst, ["m1", "m2"])  # not on disk yet: header and records in one file
    assert path.read_text() == "3 V7 N3 Gab\n1 :m1\n2 :m2\n"
    assert not list(tmp_path.glob("*.tmp"))
    ul.assign(path, lst, ["m3"])
    assert path.read_text().endswith("2 :m2\n3 :m3\n")
    assert lst.offset == path.stat().st_size and lst.next_uid == 4
    got = ul.read(path)
    assert got is not None and got.records == lst.records and got.next_uid == 4


def test_assign_after_a_half_written_line_keeps_its_records(tmp_path: Path) -> None:
    path = tmp_path / ul.UIDLIST
    lst = ul.UidList(uidvalidity=7, guid="ab")
    ul.assign(path, lst, ["m1"])
    with open(path, "a") as f:
        f.write("2 :dead")  # a writer killed mid-append
    seen = ul.read(path)
    assert seen is not None
    ul.assign(path, seen, ["m2"])
    again = ul.read(path)
    assert again is not None and again.records["m2"] == (2, "")
    assert ul.read(path, seen) is seen  # nothing unread: the next sync does not re-read


def test_dotlock_excludes_and_breaks_stale(tmp_path: Path) -> None:
    target = tmp_path / ul.UIDLIST
    inside = 0
    peak = 0
    guard = threading.Lock()

    def worker() -> None:
        nonlocal inside, peak
        for _ in range(20):
            with ul.DotLock(target):
                with guard:
                    inside += 1
                    peak = max(peak, inside)
                time.sleep(0.0005)
                with guard:
                    inside -= 1

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert peak == 1
    lock = tmp_path / (ul.UIDLIST + ".lock")
    lock.write_text("dead")
    old = time.time() - ul.LOCK_STALE_SECONDS - 5
    os.utime(lock, (old, old))
    with ul.DotLock(target, wait=2):
        assert lock.exists()
    assert not lock.exists()
    lock.write_text("fresh")
    with pytest.raises(OSError), ul.DotLock(target, wait=0.05):
        pass


@pytest.mark.parametrize("junk", ["", "garbage\n", "3 Vx N1\n", "7 V1 N1\n"])
def test_corrupt_header_reads_as_lost(tmp_path: Path, junk: str) -> None:
    path = tmp_path / ul.UIDLIST
    path.write_text(junk)
    assert ul.read(path) is None
