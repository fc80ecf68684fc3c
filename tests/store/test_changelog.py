"""The flag-change log: `since` answers exactly what a scan of every change would."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinymail.store import changelog
from tinymail.store.changelog import ChangeLog


@given(st.lists(st.integers(1, 30), max_size=200), st.integers(0, 220))
def test_since_is_every_later_change_in_order(uids: list[int], since: int) -> None:
    log = ChangeLog()
    seqs = [log.record(uid) for uid in uids]
    assert seqs == list(range(1, len(uids) + 1))
    expected = [(uid, seq) for uid, seq in zip(uids, seqs, strict=True) if seq > since]
    assert log.since(since) == expected
    assert log.modseq == len(uids)
    for uid in set(uids):
        assert log.last[uid] == max(s for u, s in zip(uids, seqs, strict=True) if u == uid)


def test_a_session_behind_the_floor_gets_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(changelog, "MAX_ENTRIES", 10)
    log = ChangeLog()
    for uid in range(1, 12):  # the 11th entry drops the oldest half
        log.record(uid)
    assert log.since(0) is None
    assert log.since(4) is None
    assert log.since(5) == [(uid, uid) for uid in range(6, 12)]
    assert log.since(11) == []


def test_forget_drops_last_modseqs_only() -> None:
    log = ChangeLog()
    log.record(1)
    log.record(2)
    log.forget([1, 99])
    assert log.last == {2: 2}
    assert log.since(0) == [(1, 1), (2, 2)]
    assert log.record(1) == 3  # a UID used again (an unexpunged file) starts afresh
    assert log.last == {2: 2, 1: 3}
