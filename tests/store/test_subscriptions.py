"""The subscriptions file: one write for many names, order kept, nothing twice."""

from __future__ import annotations

from pathlib import Path

from tinymail.store.subscriptions import read_subscriptions, set_subscribed, subscribe


def test_subscribe_adds_what_is_missing_in_one_write(tmp_path: Path) -> None:
    path = tmp_path / "subscriptions"
    set_subscribed(path, "Lists.tinymail", True)
    before = path.stat().st_ino
    subscribe(path, ["INBOX", "Lists.tinymail", "Sent", "INBOX", "Entwürfe"])
    assert read_subscriptions(path) == ["Lists.tinymail", "INBOX", "Sent", "Entwürfe"]
    assert path.read_bytes() == b"V\t2\n\nLists\ttinymail\nINBOX\nSent\nEntw&APw-rfe\n"
    assert path.stat().st_ino != before  # replaced by rename (atomic), not rewritten in place
    replaced = path.stat().st_ino
    subscribe(path, ["Sent", "INBOX"])  # nothing missing: the file is left alone
    assert path.stat().st_ino == replaced


def test_unsubscribe_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "subscriptions"
    subscribe(path, ["INBOX", "Sent", "Trash"])
    set_subscribed(path, "Sent", False)
    set_subscribed(path, "Nowhere", False)
    assert read_subscriptions(path) == ["INBOX", "Trash"]
