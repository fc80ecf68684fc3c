"""The quick MIME scanner (mime_quick.py) gives exactly what the general parser gives.

Every test compares with mime.parse_structure (Parts are dataclasses, so == compares
every offset, field, size and line count) whenever quick_structure answers at all, and
checks that the common shapes are answered rather than sent to the general parser.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from tinymail.mail.headers import parse_content_type
from tinymail.mail.mime import _WANTED, header_values, parse_structure
from tinymail.mail.mime_quick import content_type, quick_structure
from tinymail.proto.imap.fetchdata import _ENVELOPE_NAMES, bodystructure, derive, envelope

CORPUS = Path(__file__).parent / "corpus"


def check(raw: bytes) -> bool:
    """Compare with the general parser; True if the quick path answered."""
    quick = quick_structure(raw, _ENVELOPE_NAMES)
    if quick is None:
        return False
    root, values = quick
    assert root == parse_structure(raw)
    assert values == header_values(raw, 0, root.header_end, _WANTED | _ENVELOPE_NAMES)
    return True


def test_corpus_in_both_line_end_forms() -> None:
    answered = 0
    for path in sorted(CORPUS.glob("*.eml")):
        data = path.read_bytes()
        answered += check(data)
        assert not check(data.replace(b"\n", b"\r\n"))  # CR: always the general parser
    assert answered >= 5


def test_common_shapes_take_the_quick_path() -> None:
    head = b"From: A <a@b.c>\nTo: d@e.f\nSubject: s\nDate: Mon, 1 Jan 2024 00:00:00 +0000\n"
    for raw in (
        head + b"\nbody\n",
        head + b"Content-Type: text/plain; charset=utf-8\n\nbody",
        head + b'Content-Type: multipart/alternative; boundary="=_x"\n\npre\n'
        b"--=_x\nContent-Type: text/plain\n\nplain\n--=_x\nContent-Type: text/html\n\n"
        b"<p>h</p>\n--=_x--\nepilogue\n",
        head + b"Content-Type: multipart/mixed; boundary=b\n\n--b\n\nno headers\n--b\n"
        b"Content-Type: application/pdf; name=x.pdf\nContent-Transfer-Encoding: base64\n"
        b'Content-Disposition: attachment; filename="x.pdf"\n\nAAAA\n',  # no close
        head + b"Content-Type: multipart/mixed\n\nno boundary: text\n",
    ):
        assert check(raw), raw


def test_unusual_shapes_go_to_the_general_parser() -> None:
    head = b"Subject: s\nContent-Type: multipart/mixed; boundary=b\n\n"
    for raw in (
        head + b"--b\nContent-Type: multipart/alternative; boundary=c\n\n--c\n\nx\n--c--\n--b--\n",
        head + b"--b\nContent-Type: message/rfc822\n\nSubject: inner\n\nx\n--b--\n",
        b"Content-Type: multipart/digest; boundary=b\n\n--b\n\nSubject: x\n\ny\n--b--\n",
        b"Content-Type: message/rfc822\n\nSubject: inner\n\nx\n",
        head + b"--b\nContent-Type: text/plain\n--b\n\nx\n--b--\n",  # header cut by a delimiter
        head + b"--b\nContent-Type: text/plain\nnot a header line\n\nx\n--b--\n",
        head + b"no delimiter at all\n",
        head + b"--b--\nclosed before any part\n",
        head.replace(b"\n", b"\r\n") + b"--b\r\n\r\nx\r\n--b--\r\n",
    ):
        assert not check(raw), raw


HEADER_LINES = st.sampled_from(
    [
        b"From: Carol <carol@example.org>\n",
        b"To: <user@example.net>, x@y\n",
        b"Subject: hello\n",
        b"subject: second\n",
        b"Date: Wed, 01 Jan 2025 11:13:50 +0900\n",
        b"Received: from a\n\tby b\n",
        b"Content-Transfer-Encoding: base64\n",
        b'Content-Disposition: attachment; filename="a;b.txt"\n',
        b"Content-Language: en, de\n",
        b"Content-ID: <id@x>\n",
        b" folded continuation\n",
        b"--b: a header that starts with two dashes\n",
        b"--b\n",
        b"X-Empty:\n",
        b"no colon here\n",
        b":\n",
        b"\r\n",
    ]
)
CONTENT_TYPES = st.sampled_from(
    [
        b"text/plain",
        b"text/plain; charset=utf-8",
        b'TEXT/HTML; Charset="ISO-8859-1"; format=flowed',
        b"multipart/mixed; boundary=b",
        b'multipart/alternative; boundary="b"',
        b'multipart/alternative; boundary="b "',
        b"multipart/related; boundary=b; type=text/html",
        b"multipart/mixed; boundary=b; boundary=c",
        b"multipart/mixed; boundary*0=b",
        b"multipart/mixed; boundary=",
        b"multipart/digest; boundary=b",
        b"multipart/mixed",
        b"multipart/mixed; boundary=c",
        b"message/rfc822",
        b"message/delivery-status",
        b'application/octet-stream; name="x (1).bin"',
        b"image/png;",
        b"text/plain (comment); charset=us-ascii",
        b"bad",
    ]
)
BODY_LINES = st.sampled_from(
    [
        b"--b\n",
        b"--b--\n",
        b"--b  \n",
        b"--b--\t\n",
        b"--b-- trailing\n",
        b"--bb\n",
        b"--b",
        b"--b--",
        b"--c\n",
        b"--c--\n",
        b"-" * 300 + b"\n",
        b"--b" + b" " * 300 + b"\n",
        b"text line\n",
        b"no newline at the end",
        b"\n",
        b"\r\n",
        b"--\n",
    ]
)


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    def header() -> bytes:
        lines = draw(st.lists(HEADER_LINES, max_size=6))
        if draw(st.booleans()):
            lines.insert(
                draw(st.integers(0, len(lines))), b"Content-Type: %s\n" % draw(CONTENT_TYPES)
            )
        return b"".join(lines) + draw(st.sampled_from([b"\n", b"", b"\n\n"]))

    out = [header()]
    for _ in range(draw(st.integers(0, 5))):
        out.append(b"".join(draw(st.lists(BODY_LINES, max_size=4))))
        if draw(st.booleans()):
            out.append(b"--b\n" + header())
    return b"".join(out)


BOUNDARIES = st.sampled_from(
    [b"b", b"=_bench_af1f2a80", b"a:b", b"x y", b"b ", b"b--", b"'()+_,./=?"]
)
PART_TYPES = st.sampled_from(
    [
        b"",
        b"Content-Type: text/plain; charset=us-ascii\n",
        b"Content-Type: text/html\nContent-Transfer-Encoding: quoted-printable\n",
        b"Content-Type: application/pdf; name=a.pdf\nContent-Disposition: attachment\n",
        b"Content-Type: multipart/mixed\n",
        b"Content-Type: multipart/mixed; boundary=inner\n",
        b"Content-Type: message/rfc822\n",
        b"Content-Type: message/delivery-status\n",
        b"Content-Description: d\n continued\n",
        b"X-Long: " + b"v" * 600 + b"\n",
        b"--not-a-delimiter: x\n",
        b"not a header\n",
    ]
)
DELIMITER_TAILS = st.sampled_from(
    [b"\n", b"  \n", b"\t\n", b"--\n", b"--  \n", b"x\n", b"", b"\r\n"]
)


GOOD_HEADER_LINES = st.sampled_from(
    [
        b"From: Carol <carol@example.org>\n",
        b"To: <user@example.net>\n",
        b"Subject: hello\n",
        b"Received: from a\n\tby b\n",
        b"MIME-Version: 1.0\n",
    ]
)
GOOD_PART_TYPES = st.sampled_from(
    [
        b"",
        b"Content-Type: text/plain; charset=us-ascii\n",
        b"Content-Type: text/html\nContent-Transfer-Encoding: quoted-printable\n",
        b"Content-Type: application/pdf; name=a.pdf\nContent-Disposition: attachment\n",
    ]
)


@st.composite
def multiparts(draw: st.DrawFn) -> bytes:
    """Multiparts of the common shape, most with a perturbation here or there."""

    def choose(
        good: st.SearchStrategy[bytes], odd: st.SearchStrategy[bytes]
    ) -> st.SearchStrategy[bytes]:
        return odd if draw(st.integers(0, 7)) == 0 else good

    def pick(good: st.SearchStrategy[bytes], odd: st.SearchStrategy[bytes]) -> bytes:
        return draw(choose(good, odd))

    b = draw(BOUNDARIES)
    quoted = draw(st.booleans()) or b" " in b or b":" in b
    subtype = pick(st.sampled_from([b"mixed", b"alternative", b"related"]), st.just(b"digest"))
    value = b'"%s"' % b if quoted else b
    out = [b"".join(draw(st.lists(choose(GOOD_HEADER_LINES, HEADER_LINES), max_size=3)))]
    out.append(b"Content-Type: multipart/%s; boundary=%s\n\n" % (subtype, value))
    out.append(b"".join(draw(st.lists(choose(st.just(b"preamble\n"), BODY_LINES), max_size=2))))
    for _ in range(draw(st.integers(0, 4))):
        out.append(b"--" + b + pick(st.just(b"\n"), DELIMITER_TAILS))
        out.append(b"".join(draw(st.lists(choose(GOOD_PART_TYPES, PART_TYPES), max_size=2))))
        out.append(pick(st.just(b"\n"), st.sampled_from([b"", b"\n\n"])))
        body = st.lists(choose(st.sampled_from([b"text\n", b"", b"--x\n"]), BODY_LINES), max_size=3)
        out.append(b"".join(draw(body)))
    if draw(st.booleans()):
        out.append(b"--" + b + b"--\n" + draw(st.sampled_from([b"", b"epilogue\n", b"--b\n"])))
    return b"".join(out)


@settings(max_examples=1500, deadline=None)
@given(messages() | multiparts())
@example(b"Content-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n--b--\n")
@example(b"Content-Type: multipart/mixed; boundary=b\n\n--b\n\n--b\n\n--b--")
@example(b"Content-Type: multipart/mixed; boundary=b\n\n--b\n")
@example(b"Content-Type: multipart/mixed; boundary=b\n\n--b")
@example(b"\n")
@example(b"")
def test_generated_messages_agree(raw: bytes) -> None:
    check(raw)
    # and the FETCH items derive() builds on it equal the general one-item functions
    assert derive(raw, "EBN") == {
        "E": envelope(raw),
        "B": bodystructure(raw, extensible=True),
        "N": bodystructure(raw, extensible=False),
    }


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_agree(raw: bytes) -> None:
    check(raw)


PARAM_PIECES = st.sampled_from(
    [
        b"text",
        b"/",
        b"plain",
        b"multipart",
        b"mixed",
        b";",
        b" ",
        b"\t",
        b"=",
        b'"',
        b"\\",
        b"(",
        b")",
        b"*",
        b"*0",
        b"*0*",
        b"charset",
        b"CHARSET",
        b"boundary",
        b"us-ascii",
        b"'",
        b"%",
        b"\xc3\xa9",
        b"\x0b",
        b",",
    ]
)


@settings(max_examples=1500, deadline=None)
@given(st.lists(PARAM_PIECES, max_size=24).map(b"".join))
@example(b"text/plain; charset=us-ascii; charset=utf-8")
@example(b'multipart/mixed; boundary="a;b"')
@example(b"text/plain; a=b c; d=e")
@example(b"text/plain" + b"; a=b" * 300)
def test_content_type_fast_path_equals_the_general_parser(value: bytes) -> None:
    assert content_type(value) == parse_content_type(value)
