import base64
import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinymail.proto.imap.parse import Atom, PList, Str, Token
from tinymail.proto.imap.search import (
    Body,
    Candidate,
    SearchSyntaxError,
    body_matches,
    cannot_match,
    matches,
    parse_search,
    resolve_numbers,
)

PLAIN = (
    b"From: =?iso-8859-1?q?J=F6rg?= <j@x.test>\nTo: b@y.test\nSubject: Quarterly report\n"
    b"Date: Tue, 1 Feb 1994 10:00:00 +0100\n\nThe numbers are in.\n"
)
B64 = (
    b"Subject: coded\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n"
    b"Content-Transfer-Encoding: base64\n\n" + base64.b64encode("Grüße aus Köln".encode()) + b"\n"
)


def cand(raw: bytes, seq: int = 1, uid: int = 10, flags: frozenset[str] = frozenset(),
         recent: bool = False, date: float = 760000000.0) -> Candidate:  # fmt: skip
    header = raw[: raw.index(b"\n\n") + 2]
    return Candidate(
        seq=seq, uid=uid, largest_seq=3, largest_uid=30, recent=recent,
        flags=lambda: flags, size=lambda: len(raw), internal_date=lambda: date,
        read_header=lambda: header, read_message=lambda: raw,
    )  # fmt: skip


def atoms(text: str) -> tuple[Token, ...]:
    return tuple(Atom(w) for w in text.split())


def check(text: str | tuple[Token, ...], c: Candidate) -> bool:
    key, _ = parse_search(atoms(text) if isinstance(text, str) else text)
    return matches(key, c)


def test_flags_and_logic() -> None:
    c = cand(PLAIN, flags=frozenset({"\\Seen", "$Work"}), recent=True)
    assert check("SEEN", c) and not check("UNSEEN", c)
    assert check("KEYWORD $work", c) and check("UNKEYWORD $Other", c)
    assert check("OR DELETED FLAGGED", c) is False
    assert check("NOT OR DELETED FLAGGED", c)
    assert check("RECENT", c) and not check("NEW", c) and not check("OLD", c)
    assert check((PList((Atom("SEEN"), Atom("ANSWERED"))),), c) is False


def test_headers_are_decoded_and_case_insensitive() -> None:
    c = cand(PLAIN)
    assert check((Atom("FROM"), Str("JÖRG".encode())), c)
    assert check((Atom("SUBJECT"), Str(b"QUARTERLY")), c)
    assert check((Atom("HEADER"), Str(b"to"), Str(b"")), c)  # present field, empty string
    assert not check((Atom("HEADER"), Str(b"cc"), Str(b"")), c)
    assert check((Atom("TEXT"), Str(b"numbers")), c) and check((Atom("TEXT"), Str(b"b@y")), c)
    assert not check((Atom("BODY"), Str(b"quarterly")), c)


def test_body_transfer_encoding_and_charset() -> None:
    c = cand(B64)
    assert check((Atom("CHARSET"), Atom("UTF-8"), Atom("BODY"), Str("KÖLN".encode())), c)
    with pytest.raises(LookupError):
        parse_search((Atom("CHARSET"), Atom("KOI8-R"), Atom("ALL")))


def test_dates_sizes_numbers() -> None:
    c = cand(PLAIN, date=datetime.datetime(2024, 5, 6, 23, 0, tzinfo=datetime.UTC).timestamp())
    assert (
        check("ON 6-May-2024", c) and check("SINCE 6-May-2024", c) and check("BEFORE 7-May-2024", c)
    )
    assert check("SENTON 1-Feb-1994", c) and check("SENTBEFORE 2-Feb-1994", c)
    assert not check("SENTSINCE 2-Feb-1994", c)
    assert check(f"LARGER {len(PLAIN) - 1} SMALLER {len(PLAIN) + 1}", c)
    assert check("1", c) and check("UID 5:10", c) and not check("UID 11:*", c)


@pytest.mark.parametrize(
    "bad",
    ["", "FROM", "BEFORE 31-Feb-2020", "LARGER x", "BOGUS", "UID a:b", "NOT " * 200 + "ALL"],
)
def test_syntax_errors(bad: str) -> None:
    with pytest.raises(SearchSyntaxError):
        parse_search(atoms(bad))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 40), st.integers(1, 40)), min_size=1, max_size=6),
    st.booleans(),
    st.lists(st.integers(1, 40), min_size=1, max_size=12, unique=True),
)
def test_resolved_numbers_match_direct_evaluation(
    ranges: list[tuple[int, int]], by_uid: bool, uid_list: list[int]
) -> None:
    uids = sorted(uid_list)
    text = ",".join(f"{a}:{b}" for a, b in ranges)
    args = (Atom("UID"), Atom(text)) if by_uid else (Atom(text),)
    key, _ = parse_search(args)
    resolved = resolve_numbers(key, uids)
    for i, uid in enumerate(uids):
        c = Candidate(
            seq=i + 1, uid=uid, largest_seq=len(uids), largest_uid=uids[-1], recent=False,
            flags=frozenset, size=lambda: 0, internal_date=lambda: 0.0,
            read_header=lambda: b"", read_message=lambda: b"",
        )  # fmt: skip
        assert matches(key, c) == matches(resolved, c)


# -- the BODY/TEXT pre-filter may only skip messages the full path would not match --------

_NEEDLE = "some needle"
_PIECES = st.sampled_from(
    [
        b"some needle", b"SOME NEEDLE", b"some", b" needle", b"\n needle", b"some=\n", b"=20",
        b"ne=65dle", b"=?utf-8?q?some_needle?=", b"=?utf-8?b?c29tZSBuZWVkbGU=?=",
        b"=?iso-8859-1?q?some?= =?iso-8859-1?q?_needle?=", "\u212a".encode(), b"\xdf",
        "\u017f".encode(), b"\r", b"\r\n", b"x", b" ", b"\n", b"=", b"?=", b"=?",
        b"+AHM-ome needle", b"c29tZSBuZWVkbGU=", b"--b1\n", b"--b1--\n", b"\n\n",
    ]
)  # fmt: skip
_HEADERS = st.sampled_from(
    [
        b"Subject: ", b"From: ", b"X-Note: ",
        b"Content-Type: text/plain; charset=utf-8\n",
        b"Content-Type: text/plain; charset=iso-8859-1\n",
        b"Content-Type: text/plain; charset=utf-7\n",
        b"Content-Type: text/plain; charset=us-ascii\n",
        b"Content-Type: text/plain; charset*=utf-7''x\n",
        b"Content-Transfer-Encoding: quoted-printable\n",
        b"Content-Transfer-Encoding: base64\n",
        b"Content-Type: multipart/mixed; boundary=b1\n",
        b"Content-Transfer-Encoding: quoted-\r-printable\n",
    ]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    head=st.lists(st.tuples(_HEADERS, st.lists(_PIECES, max_size=3)), max_size=5),
    body=st.lists(st.one_of(_PIECES, _HEADERS), max_size=12),
    with_header=st.booleans(),
)
def test_prefilter_never_skips_a_match(
    head: list[tuple[bytes, list[bytes]]], body: list[bytes], with_header: bool
) -> None:
    raw = b"".join(h + b"".join(v) + b"\n" for h, v in head) + b"\n" + b"".join(body)
    if b"\n\n" not in raw:
        raw += b"\n\n"
    key = Body(_NEEDLE, with_header)
    if cannot_match(_NEEDLE, raw, with_header):
        assert not body_matches(key, cand(raw))


def test_prefilter_skips_plain_messages_and_keeps_matches() -> None:
    assert cannot_match("elephant", PLAIN, True) and cannot_match("elephant", PLAIN, False)
    assert not cannot_match("quarterly", PLAIN, True)  # present: the full path decides
    worded = b"Subject: =?utf-8?q?hidden_word?=\n\nx\n"  # only in an RFC 2047 word
    assert not cannot_match("hidden word", worded, True)
    assert cannot_match("hidden word", worded, False)
    assert not cannot_match("grüße", B64, False) and not cannot_match("x", B64, False)
    folded = b"Subject: some\n needle\n\nbody\n"
    assert not cannot_match(_NEEDLE, folded, True)
    assert check((Atom("TEXT"), Str(b"some needle")), cand(folded))
    qp = b"Content-Transfer-Encoding: quoted-printable\n\nsome =\nneedle\n"
    assert not cannot_match(_NEEDLE, qp, False)
    assert check((Atom("BODY"), Str(b"some needle")), cand(qp))
