"""IMAP sequence sets kept as ranges (RFC 3501 section 9, "sequence-set").

Rules: a set is never expanded into numbers: `1:4294967295` is one range and
costs nothing (research/reliability-security.md I5). `*` is stored as 0 and
only means "the largest number in use" once a mailbox is known. Matching a set
against the sorted UIDs of a mailbox is one bisection per range, so work grows
with the number of ranges and matches, not with the width of a range.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

STAR = 0
MAX_NUMBER = 4294967295  # RFC 3501 section 9: nz-number fits in 32 bits
MAX_RANGES = 100_000


class SeqSetError(ValueError):
    """The text is not a valid sequence set."""


@dataclass(frozen=True, slots=True)
class SeqSet:
    """A sequence set as (first, last) pairs as written; 0 stands for `*`."""

    ranges: tuple[tuple[int, int], ...]

    def resolve(self, largest: int) -> list[tuple[int, int]]:
        """Ranges with `*` replaced by `largest`, each ordered low to high (RFC 3501 9)."""
        out = []
        for first, last in self.ranges:
            lo = largest if first == STAR else first
            hi = largest if last == STAR else last
            out.append((lo, hi) if lo <= hi else (hi, lo))
        return out

    def uses_star(self) -> bool:
        """True when the set mentions `*` anywhere."""
        return any(STAR in r for r in self.ranges)


def _number(text: str) -> int:
    if text == "*":
        return STAR
    if not text.isdigit() or not text.isascii() or text.startswith("0"):
        raise SeqSetError(f"invalid number {text!r} in sequence set")
    value = int(text) if len(text) <= 10 else MAX_NUMBER + 1
    if value > MAX_NUMBER:
        raise SeqSetError("number in sequence set out of range")
    return value


def parse_seqset(text: str) -> SeqSet:
    """Parse `1,3:5,7:*` into a SeqSet; raise SeqSetError when it is malformed."""
    if not text:
        raise SeqSetError("empty sequence set")
    parts = text.split(",")
    if len(parts) > MAX_RANGES:
        raise SeqSetError("too many ranges in sequence set")
    ranges = []
    for part in parts:
        first, sep, last = part.partition(":")
        lo = _number(first)
        ranges.append((lo, _number(last) if sep else lo))
    return SeqSet(tuple(ranges))


def select_indices(seqset: SeqSet, uids: Sequence[int], by_uid: bool) -> list[int]:
    """0-based positions in `uids` (sorted ascending) that the set names, ascending, unique.

    By sequence number the set names positions 1..len(uids); by UID it names UID values, and a
    UID range containing `*` always includes the last message (RFC 3501 6.4.8).
    """
    count = len(uids)
    if count == 0:
        return []
    largest = uids[-1] if by_uid else count
    spans: list[tuple[int, int]] = []
    for lo, hi in seqset.resolve(largest):
        if by_uid:
            start, stop = bisect_left(uids, lo), bisect_right(uids, hi)
        else:
            start, stop = max(lo, 1) - 1, min(hi, count)
        if start < stop:
            spans.append((start, stop))
    spans.sort()
    out: list[int] = []
    covered = 0
    for start, stop in spans:
        start = max(start, covered)
        if start < stop:
            out.extend(range(start, stop))
            covered = stop
    return out


def seq_out_of_range(seqset: SeqSet, count: int) -> bool:
    """True if a message sequence number names no message (RFC 3501 9: the server errors)."""
    return any(hi > count or lo < 1 for lo, hi in seqset.resolve(count))


def format_set(numbers: Iterable[int]) -> str:
    """Compact numbers in the given order into `a:b,c` runs (order kept for COPYUID pairs)."""
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return ",".join(f"{a}" if a == b else f"{a}:{b}" for a, b in runs)
