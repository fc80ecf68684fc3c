import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinymail.proto.imap.seqset import (
    SeqSetError,
    format_set,
    parse_seqset,
    select_indices,
    seq_out_of_range,
)


def test_parse_keeps_ranges_and_star() -> None:
    s = parse_seqset("1,3:5,7:*")
    assert s.ranges == ((1, 1), (3, 5), (7, 0))
    assert s.resolve(10) == [(1, 1), (3, 5), (7, 10)]
    assert s.resolve(5) == [(1, 1), (3, 5), (5, 7)]


@pytest.mark.parametrize("bad", ["", "0", "1:", ":1", "a", "1,,2", "4294967296", "01", "1:2:3"])
def test_parse_rejects(bad: str) -> None:
    with pytest.raises(SeqSetError):
        parse_seqset(bad)


def test_huge_range_costs_nothing() -> None:
    s = parse_seqset("1:4294967295")
    assert select_indices(s, [5, 9, 12], by_uid=True) == [0, 1, 2]
    assert seq_out_of_range(s, 3)


def test_uid_star_always_includes_last() -> None:
    # RFC 3501 6.4.8: 559:* names the last message even when 559 is above every UID
    assert select_indices(parse_seqset("559:*"), [1, 2, 3], by_uid=True) == [2]
    assert select_indices(parse_seqset("*"), [], by_uid=True) == []


def test_sequence_numbers() -> None:
    uids = [10, 20, 30, 40]
    assert select_indices(parse_seqset("2:*"), uids, by_uid=False) == [1, 2, 3]
    assert select_indices(parse_seqset("4,1,2:3,2"), uids, by_uid=False) == [0, 1, 2, 3]
    assert not seq_out_of_range(parse_seqset("1:*"), 4)
    assert seq_out_of_range(parse_seqset("5"), 4)


def test_format_set() -> None:
    assert format_set([1, 2, 3, 5, 7, 8]) == "1:3,5,7:8"
    assert format_set([]) == ""


ranges = st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60)), min_size=1, max_size=8)


@settings(max_examples=200, deadline=None)
@given(ranges, st.lists(st.integers(1, 50), unique=True, max_size=30), st.booleans())
def test_select_matches_naive(rs: list[tuple[int, int]], uid_list: list[int], by_uid: bool) -> None:
    text = ",".join(
        ("*" if a == 0 else str(a)) + ("" if a == b else ":" + ("*" if b == 0 else str(b)))
        for a, b in rs
    )
    s = parse_seqset(text)
    uids = sorted(uid_list)
    got = select_indices(s, uids, by_uid)
    if not uids:
        assert got == []
        return
    largest = uids[-1] if by_uid else len(uids)
    want = []
    for i, u in enumerate(uids):
        key = u if by_uid else i + 1
        if any(lo <= key <= hi for lo, hi in s.resolve(largest)):
            want.append(i)
    assert got == want


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 10**6), max_size=40))
def test_format_roundtrip(numbers: list[int]) -> None:
    text = format_set(numbers)
    if numbers:
        back = [n for lo, hi in parse_seqset(text).resolve(0) for n in range(lo, hi + 1)]
        assert back == numbers
