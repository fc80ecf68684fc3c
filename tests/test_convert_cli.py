"""`tinymail convert-store`: switch a stopped server's mailboxes between Maildir and mbox."""

from __future__ import annotations

import mailbox
from pathlib import Path

import pytest

from tinymail.cli import main as cli_main
from tinymail.config import load_config
from tinymail.store import maildir
from tinymail.store.format import check_store_format


def test_convert_maildir_to_mbox_then_the_new_format_starts(
    make_config: object, capsys: pytest.CaptureFixture[str]
) -> None:
    path: Path = make_config()  # type: ignore[operator]
    cfg = load_config(path)
    check_store_format(cfg.mail_dir, "maildir")  # what a first start records
    box = cfg.mail_dir / "alice@example.test"
    maildir.deliver([box], b"Return-Path: <a@b>\nSubject: one\n\nbody\n")
    assert cli_main(["-c", str(path), "convert-store", "mbox"]) == 0
    out = capsys.readouterr().out
    assert "converted 1 messages of 1 owners to mbox" in out
    [msg] = list(mailbox.mbox(box / "INBOX"))
    assert msg["Subject"] == "one"
    check_store_format(cfg.mail_dir, "mbox")  # no longer refused


def test_convert_refuses_while_the_queue_is_locked(
    make_config: object, capsys: pytest.CaptureFixture[str]
) -> None:
    from tinymail.queue.runlock import RunnerLock

    path: Path = make_config()  # type: ignore[operator]
    cfg = load_config(path)
    cfg.queue_dir.mkdir(parents=True)
    lock = RunnerLock(cfg.queue_dir)
    assert lock.try_acquire()
    try:
        assert cli_main(["-c", str(path), "convert-store", "mbox"]) == 75
    finally:
        lock.close()
    assert "stop the server" in capsys.readouterr().err
