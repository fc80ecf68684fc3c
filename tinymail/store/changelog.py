"""The flag-change log of one mailbox, shared by the Maildir and mbox stores.

Rules:
- Every flag change gets the next modseq; each session remembers the modseq
  it last reported and asks what changed since, without keeping flags of its own.
- The log is bounded: a session that fell behind its floor gets None and
  compares every message's flags instead.
- Entries are in modseq order, so a lookup bisects: every command of every
  session asks, and one STORE of thousands of messages leaves that many entries.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable

MAX_ENTRIES = 50_000


class ChangeLog:
    """(modseq, uid) per flag change, plus each UID's last modseq. Not locked itself: the
    owning mailbox calls it under its own lock."""

    def __init__(self) -> None:
        self.modseq = 0
        self.last: dict[int, int] = {}  # uid -> modseq of its last change
        self._entries: list[tuple[int, int]] = []
        self._floor = 0

    def record(self, uid: int) -> int:
        """Log a change of `uid`'s flags; its new modseq."""
        self.modseq += 1
        self.last[uid] = self.modseq
        self._entries.append((self.modseq, uid))
        if len(self._entries) > MAX_ENTRIES:
            drop = len(self._entries) // 2
            self._floor = self._entries[drop - 1][0]
            del self._entries[:drop]
        return self.modseq

    def since(self, modseq: int) -> list[tuple[int, int]] | None:
        """(uid, modseq) of the changes after `modseq`, oldest first; None when the log no
        longer reaches back that far."""
        if modseq < self._floor:
            return None
        start = bisect_right(self._entries, (modseq, float("inf")))
        return [(uid, seq) for seq, uid in self._entries[start:]]

    def forget(self, uids: Iterable[int]) -> None:
        """Drop the last modseqs of messages that are gone (their entries age out)."""
        for uid in uids:
            self.last.pop(uid, None)
