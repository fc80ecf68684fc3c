"""The trigger FIFO's format: queue IDs out of arbitrary chunks, garbage dropped, bounded."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tinymail.proto.trigger import MAX_LINE, TriggerParser

qids = st.text(alphabet="0123456789ABCDEFGHJKLMNPQRSTVWXYZ", min_size=1, max_size=40)
garbage = st.one_of(
    st.binary(max_size=MAX_LINE * 3).filter(lambda b: b"\n" not in b),
    st.just(b""),
    st.just(b"../../etc/passwd"),
    st.just(b"A" * 41),
)


def feed(parser: TriggerParser, data: bytes, cuts: list[int]) -> list[str]:
    out: list[str] = []
    start = 0
    for cut in sorted(c % (len(data) + 1) for c in cuts):
        out += parser.receive(data[start:cut])
        start = max(start, cut)
    return out + parser.receive(data[start:])


@given(st.lists(qids, max_size=20), st.lists(st.integers(min_value=0), max_size=10))
def test_queue_ids_survive_any_chunking(ids: list[str], cuts: list[int]) -> None:
    data = b"".join(q.encode() + b"\n" for q in ids)
    assert feed(TriggerParser(), data, cuts) == ids


@given(
    st.lists(st.one_of(qids.map(str.encode), garbage), max_size=20),
    st.lists(st.integers(min_value=0), max_size=10),
)
def test_only_whole_queue_id_lines_come_out(lines: list[bytes], cuts: list[int]) -> None:
    parser = TriggerParser()
    data = b"".join(line + b"\n" for line in lines)
    expected = [
        line.decode()
        for line in lines
        if line and len(line) <= 40 and line.isalnum() and line.upper() == line
    ]
    assert feed(parser, data, cuts) == expected
    assert len(parser._partial) <= MAX_LINE


def test_an_overlong_line_is_skipped_to_its_end() -> None:
    parser = TriggerParser()
    assert parser.receive(b"A" * (MAX_LINE + 1)) == []
    assert parser.receive(b"BBBB") == []  # still the overlong line
    assert parser.receive(b"\nC1\n") == ["C1"]


def test_an_unfinished_line_waits_for_its_end() -> None:
    parser = TriggerParser()
    assert parser.receive(b"4C2K9") == []
    assert parser.receive(b"QX\nZZ") == ["4C2K9QX"]
