"""The cold-FETCH fast paths give exactly what the general code gives.

header_values (mime.py) against headers.first_values, _address_list against
parse_address_list, _string against quoted_or_literal, derive() against the
one-item functions, and MaildirFolder.prime against the per-item cache calls.
"""

from __future__ import annotations

import datetime
import time
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from tinymail.mail.headers import first_values, parse_address_list
from tinymail.mail.mime import _WANTED, crlf_size, header_block_end, header_values, to_crlf
from tinymail.proto.imap.fetch import format_date, parse_items
from tinymail.proto.imap.fetchdata import (
    _ENVELOPE_NAMES,
    _address_list,
    _string,
    bodystructure,
    derive,
    envelope,
)
from tinymail.proto.imap.parse import Atom, PList
from tinymail.proto.imap.quoting import quoted_or_literal
from tinymail.store.envcache import CACHE_FILE
from tinymail.store.maildir import deliver
from tinymail.store.maildir_folders import MaildirStore

CORPUS = Path(__file__).parents[2] / "mail" / "corpus"
CORPUS_MESSAGES = [p.read_bytes() for p in sorted(CORPUS.glob("*.eml"))]

HEADER_TOKENS = st.sampled_from(
    [
        b"From: a <b@c>\n",
        b"FROM:x@y\r\n",
        b"to :  Name Two <n.t@d.e>, z@w \n",
        b"Subject: s\n",
        b"subject: second\n",
        b"Content-Type: text/plain\n",
        b"CONTENT-TRANSFER-ENCODING:\tbase64\r\n",
        b"content-id: <x>\n",
        b" folded\n",
        b"\tfolded\r\n",
        b"X-Other: v\n",
        b"date: \x00\xff\n",
        b"no colon line\n",
        b"\r",
        b"\n",
        b":\n",
    ]
)
HEADERS = st.lists(HEADER_TOKENS, max_size=30).map(b"".join)


@settings(max_examples=400, deadline=None)
@given(st.one_of(HEADERS, st.binary(max_size=300)), st.integers(0, 5))
def test_header_values_equal_first_values(raw: bytes, skip: int) -> None:
    # `start` must be a line start: the message start or just after some line break
    starts = [0] + [i + 1 for i, c in enumerate(raw) if c == 10]
    start = starts[min(skip, len(starts) - 1)]
    end = start + header_block_end(raw[start:])
    for names in (_ENVELOPE_NAMES, _WANTED):
        assert header_values(raw, start, end, names) == first_values(raw, start, end, names)


ADDRESS_TOKENS = st.sampled_from(
    [
        b"Carol",
        b"Silva",
        b"=?UTF-8?B?Wm/DqSBSb3NzaQ==?=",
        b"\xc3\xa9",
        b"carol.silva",
        b"a..b",
        b".",
        b"@",
        b"example.org",
        b"<",
        b">",
        b",",
        b" ",
        b"\t",
        b"  ",
        b'"',
        b'"q, r"',
        b"(comment)",
        b":",
        b";",
        b"[1.2.3.4]",
        b"\\",
        b"\x0c",
        b"\x0b",
        b"@route:",
    ]
)


@settings(max_examples=600, deadline=None)
@given(st.lists(ADDRESS_TOKENS, max_size=16).map(b"".join))
def test_address_fast_path_equals_the_general_parser(value: bytes) -> None:
    assert _address_list(value) == parse_address_list(value)


def test_address_fast_path_common_shapes() -> None:
    for value in (
        b"Carol Silva <carol.silva@example.org>",
        b"<user01@bench.test>",
        b"a@b.c, Two  Words\t<x@y>,, z@w",
        b"=?UTF-8?B?Wm/DqSBSb3NzaQ==?= <zo.rossi@mail.example.co.uk>",
        b"",
        b"  ",
    ):
        assert _address_list(value) == parse_address_list(value)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1100) | st.text(max_size=1100).map(str.encode))
def test_string_fast_path_equals_quoted_or_literal(data: bytes) -> None:
    assert _string(data) == quoted_or_literal(data.translate(None, b"\x00\r\n"))


def _single(raw: bytes) -> dict[str, bytes]:
    return {
        "E": envelope(raw),
        "B": bodystructure(raw, extensible=True),
        "N": bodystructure(raw, extensible=False),
        "S": b"%d" % (len(raw) + raw.count(b"\n") - raw.count(b"\r\n")),
    }


MIME_TOKENS = st.sampled_from(
    [
        b"--a\r\n",
        b"--a--\n",
        b"Content-Type: multipart/mixed; boundary=a\r\n",
        b"Content-Type: message/rfc822\n",
        b"Content-Disposition: attachment; filename=x\n",
        b"From: a <b@c>, G: d@e;\r\n",
        b"To: Name <n@d>\n",
        b"Subject: \x00\xff(\r\n",
        b"\r\n",
        b"\n",
        b" folded\n",
        b"text\r\n",
        b"\r",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=400), st.lists(MIME_TOKENS, max_size=40).map(b"".join)))
def test_derive_equals_the_single_item_functions(raw: bytes) -> None:
    expected = _single(raw)
    assert derive(raw, "EBNS") == expected
    assert derive(raw, "ES") == {"E": expected["E"], "S": expected["S"]}
    assert crlf_size(raw) == int(expected["S"])


def test_derive_on_the_corpus_in_both_line_end_forms() -> None:
    for data in CORPUS_MESSAGES:
        for raw in (data, data.replace(b"\n", b"\r\n")):
            assert derive(raw, "EBNS") == _single(raw)


def _message(n: int) -> bytes:
    return (
        b"From: Sender %d <s%d@example.org>\nTo: <r@example.net>\nSubject: m%d\n"
        b"Content-Type: multipart/alternative; boundary=b\n\n--b\n"
        b"Content-Type: text/plain\n\nbody %d\n--b\nContent-Type: text/html\n\n<p>%d</p>\n--b--\n"
    ) % (n, n, n, n, n)


def test_prime_fills_the_cache_from_one_read_and_rebuilds(tmp_path: Path) -> None:
    store = MaildirStore(tmp_path / "Maildir")
    store.ensure_defaults()
    for n in (1, 2):
        deliver([store.root], _message(n))
    box = store.open("INBOX")
    uids = box.sync(False).uids
    reads: list[int] = []
    real_read = box.read

    def counting_read(uid: int) -> bytes:
        reads.append(uid)
        return real_read(uid)

    box.read = counting_read  # type: ignore[method-assign]
    for uid in uids:
        box.prime(uid, "EBNS", derive)
    assert reads == list(uids)  # one read per message for all four kinds
    for uid, n in zip(uids, (1, 2), strict=True):
        raw = _message(n)

        def unexpected(_data: bytes) -> bytes:
            raise AssertionError("should come from the cache")

        assert box.envelope(uid, unexpected) == envelope(raw)
        assert box.derived(uid, "B", unexpected) == bodystructure(raw, extensible=True)
        assert box.derived(uid, "N", unexpected) == bodystructure(raw, extensible=False)
        assert box.size(uid) == len(raw) + raw.count(b"\n")
    box.prime(uids[0], "EBNS", derive)
    assert len(reads) == 2  # all cached: no read
    box.prime(uids[0], "E", derive)
    assert len(reads) == 2
    box.sync(False)  # flushes the cache file
    (store.root / CACHE_FILE).unlink()  # deleted: a fresh folder object rebuilds it
    again = type(box)(box.path, "INBOX", store._new_uidvalidity)
    again.sync(False)
    again.prime(uids[1], "EB", derive)
    assert again.envelope(uids[1], lambda _h: b"recomputed") == envelope(_message(2))


def test_address_fast_path_is_linear_on_a_long_phrase() -> None:
    value = b"word\t" * 20_000 + b"x" * 20_000 + b" <no-close@x"
    started = time.monotonic()
    assert _address_list(value) == parse_address_list(value)
    assert time.monotonic() - started < 5  # a backtracking pattern would take ages


def test_known_size_never_reads(tmp_path: Path) -> None:
    store = MaildirStore(tmp_path / "Maildir")
    store.ensure_defaults()
    data = b"Subject: no size in the name\n\nbody\n"
    (store.root / "cur" / "1700000000.M1P1.host:2,").write_bytes(data)
    box = store.open("INBOX")
    uid = box.sync(False).uids[0]
    assert box.known_size(uid) == -1  # would need a read: the caller must not assume
    assert box.size(uid) == len(data) + data.count(b"\n")
    assert box.known_size(uid) == box.size(uid)
    assert box.known_size(uid + 1) == -1


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=-2e10, max_value=2.5e11, allow_nan=False))
def test_format_date_equals_strftime(when: float) -> None:
    d = datetime.datetime.fromtimestamp(when, datetime.UTC)
    month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"][
        d.month - 1
    ]
    expected = f'"{d.day:2d}-{month}-{d.year:04d} {d:%H:%M:%S} +0000"'.encode()
    assert format_date(when) == expected


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"a", b"\n\r"]), max_size=20).map(b"".join))
def test_to_crlf_equals_the_two_pass_rule(data: bytes) -> None:
    expected = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    assert to_crlf(data) == expected


def test_parsed_attribute_lists_are_shared_but_not_mutable() -> None:
    arg = PList((Atom("UID"), Atom("BODY.PEEK[]")))
    first = parse_items(arg)
    first.append("FLAGS")  # a caller's change must not reach the next command
    assert parse_items(arg) == ["UID", parse_items(arg)[1]] and len(parse_items(arg)) == 2
    long = PList(tuple(Atom(a) for a in ["UID", "FLAGS"] * 20))  # past the cached size
    assert parse_items(long) == ["UID", "FLAGS"] * 20
    assert parse_items(Atom("fast")) == ["FLAGS", "INTERNALDATE", "RFC822.SIZE"]


def test_sessions_priming_the_same_messages_compute_each_once(tmp_path: Path) -> None:
    """Two sessions fetch the same new messages at once (say 50 clients after new mail):
    what one of them cached meanwhile, the other does not compute again."""
    store = MaildirStore(tmp_path / "Maildir")
    store.ensure_defaults()
    for n in range(1, 6):
        deliver([store.root], _message(n))
    first, second = store.open("INBOX"), store.open("INBOX")
    uids = first.sync(False).uids
    second.sync(False)
    computed: list[bytes] = []

    def counting_derive(raw: bytes, kinds: str) -> dict[str, bytes]:
        computed.append(raw)
        return derive(raw, kinds)

    early = first.prime_all(uids, "EB", counting_derive)
    next(early)  # the first session has listed its jobs and done the first one
    for _ in second.prime_all(uids, "EB", counting_derive):
        pass
    for _ in early:
        pass
    assert len(computed) == len(uids)
