"""tinymail.store.maildir: one fsynced copy hard-linked into every recipient's new/."""

from __future__ import annotations

import errno
import mailbox
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from tinymail.store import maildir, safeio

MESSAGE = (
    b"From: a@example.test\n"
    b"To: b@example.test\n"
    b"Subject: hi\n"
    b"\n"
    b"line one\n"
    b"\n"
    b"From the start of a line, not escaped in Maildir\n"
    b"\xc3\xa9 8-bit body\n"
)

NAME = re.compile(r"^(\d+)\.M(\d+)P(\d+)Q(\d+)\.([^,/:]+),S=(\d+),W=(\d+)$")


def test_deliver_to_one_maildir(tmp_path: Path) -> None:
    box = tmp_path / "mail" / "alice@example.test"
    [path] = maildir.deliver([box], MESSAGE)
    assert path.parent == box / "new"
    assert path.read_bytes() == MESSAGE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for sub in ("tmp", "new", "cur"):
        assert (box / sub).is_dir()
        assert stat.S_IMODE((box / sub).stat().st_mode) == 0o700
    assert list((box / "tmp").iterdir()) == []


def test_name_carries_size_and_virtual_size(tmp_path: Path) -> None:
    [path] = maildir.deliver([tmp_path / "box"], MESSAGE)
    match = NAME.match(path.name)
    assert match, path.name
    size, vsize = int(match.group(6)), int(match.group(7))
    assert size == len(MESSAGE) == path.stat().st_size
    assert vsize == len(MESSAGE) + MESSAGE.count(b"\n")
    assert vsize == len(MESSAGE.replace(b"\n", b"\r\n"))
    assert int(match.group(3)) == os.getpid()


def test_names_are_unique(tmp_path: Path) -> None:
    paths = [maildir.deliver([tmp_path / "box"], b"x\n")[0] for _ in range(50)]
    assert len({p.name for p in paths}) == 50
    assert len(list((tmp_path / "box" / "new").iterdir())) == 50


def test_deliver_to_three_maildirs_shares_one_inode(tmp_path: Path) -> None:
    boxes = [tmp_path / "mail" / name for name in ("a", "b", "c")]
    paths = maildir.deliver(boxes, MESSAGE)
    assert [p.parent for p in paths] == [b / "new" for b in boxes]
    assert len({p.name for p in paths}) == 1
    inodes = {p.stat().st_ino for p in paths}
    assert len(inodes) == 1
    assert paths[0].stat().st_nlink == 3  # tmp/ link is gone
    for box in boxes:
        assert list((box / "tmp").iterdir()) == []


def test_python_mailbox_reads_it_byte_exact(tmp_path: Path) -> None:
    box = tmp_path / "box"
    content = maildir.return_path_header("sender@example.test") + MESSAGE
    maildir.deliver([box], content)
    md = mailbox.Maildir(box, factory=None, create=False)
    keys = md.keys()
    assert len(keys) == 1
    assert md.get_bytes(keys[0]) == content
    msg = md[keys[0]]
    assert msg["Subject"] == "hi"
    assert msg["Return-Path"] == "<sender@example.test>"
    assert msg.get_subdir() == "new"


def test_return_path_header() -> None:
    assert maildir.return_path_header("") == b"Return-Path: <>\n"
    assert maildir.return_path_header("a@b") == b"Return-Path: <a@b>\n"
    assert maildir.return_path_header("\u00e9@b") == "Return-Path: <\u00e9@b>\n".encode()


def test_deliver_to_nothing() -> None:
    assert maildir.deliver([], MESSAGE) == []


def test_existing_maildir_is_reused(tmp_path: Path) -> None:
    box = tmp_path / "box"
    maildir.ensure_maildir(box)
    (box / "cur" / "old:2,S").write_bytes(b"old\n")
    maildir.deliver([box], b"new\n")
    assert (box / "cur" / "old:2,S").read_bytes() == b"old\n"
    assert len(list((box / "new").iterdir())) == 1


def test_error_while_linking_removes_every_link(tmp_path: Path) -> None:
    # The third mailbox's new/ is a symlink to a directory on another file system, so the
    # hard link into it fails with EXDEV after the links into a/ and b/ were made.
    other_fs = Path(tempfile.mkdtemp(dir="/dev/shm")) if Path("/dev/shm").is_dir() else None
    if other_fs is None or other_fs.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on a file system other than tmp_path's")
    try:
        boxes = [tmp_path / n for n in ("a", "b", "c")]
        for b in boxes:
            maildir.ensure_maildir(b)
        (boxes[2] / "new").rmdir()
        (boxes[2] / "new").symlink_to(other_fs)
        with pytest.raises(OSError) as info:
            maildir.deliver(boxes, MESSAGE)
        assert info.value.errno == errno.EXDEV
        for b in boxes:
            assert list((b / "new").iterdir()) == []
            assert list((b / "tmp").iterdir()) == []
    finally:
        shutil.rmtree(other_fs)


def test_duplicate_maildir_in_one_call_fails_cleanly(tmp_path: Path) -> None:
    box = tmp_path / "a"
    with pytest.raises(FileExistsError):
        maildir.deliver([box, box], MESSAGE)
    assert list((box / "new").iterdir()) == []
    assert list((box / "tmp").iterdir()) == []


def test_error_while_writing_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Injected EIO from fsync (a real one needs strace); see tests/store/test_safeio.py.
    def eio(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(safeio.os, "fsync", eio)
    boxes = [tmp_path / "a", tmp_path / "b"]
    with pytest.raises(OSError):
        maildir.deliver(boxes, MESSAGE)
    for b in boxes:
        assert list((b / "new").iterdir()) == []
        assert list((b / "tmp").iterdir()) == []


def test_deliver_many_delivers_each_message_on_its_own(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    [old] = maildir.deliver([b], b"old\n")  # b is now known to be complete...
    old.unlink()
    (b / "new").rmdir()  # ...but its new/ is gone: linking into it fails with ENOENT
    results = maildir.deliver_many(
        [([a], b"one\n"), ([a, b], b"two\n"), ([], b"x\n"), ([a], b"3\n")]
    )
    first, failed, empty, last = results
    assert isinstance(first, list) and [p.read_bytes() for p in first] == [b"one\n"]
    assert isinstance(failed, FileNotFoundError)
    assert empty == []
    assert isinstance(last, list) and [p.read_bytes() for p in last] == [b"3\n"]
    assert sorted(p.read_bytes() for p in (a / "new").iterdir()) == [b"3\n", b"one\n"]
    assert list((a / "tmp").iterdir()) == [] and list((b / "tmp").iterdir()) == []


def test_deliver_many_fsyncs_every_file_before_linking_any(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    order: list[str] = []
    real_fsync, real_link = safeio.os.fsync, maildir.os.link

    def fsync(fd: int) -> None:
        order.append("fsync")
        real_fsync(fd)

    def link(src: str, dst: str) -> None:
        order.append("link")
        real_link(src, dst)

    monkeypatch.setattr(safeio.os, "fsync", fsync)
    monkeypatch.setattr(maildir.os, "link", link)
    results = maildir.deliver_many([([tmp_path / "a"], b"1\n"), ([tmp_path / "b"], b"2\n")])
    assert all(isinstance(r, list) and len(r) == 1 for r in results)
    assert order == ["fsync", "fsync", "link", "link"]
