"""ENVELOPE, BODY/BODYSTRUCTURE and BODY[section] against RFC 3501 shapes and hostile input."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from tinymail.proto.imap.fetchdata import Section, bodystructure, envelope, section_bytes

CORPUS = Path(__file__).parents[2] / "mail" / "corpus"

Value = bytes | int | None | list["Value"]


def corpus(name: str) -> bytes:
    return (CORPUS / name).read_bytes().replace(b"\n", b"\r\n")


def parse(wire: bytes) -> Value:
    """Parse one IMAP parenthesized value; asserts balance and exact literal lengths."""
    stack: list[list[Value]] = [[]]
    i = 0
    while i < len(wire):
        c = wire[i : i + 1]
        if c == b"(":
            stack.append([])
            i += 1
        elif c == b")":
            assert len(stack) > 1, "unbalanced )"
            done = stack.pop()
            stack[-1].append(done)
            i += 1
        elif c == b" ":
            i += 1
        elif c == b'"':
            out, i = bytearray(), i + 1
            while wire[i : i + 1] != b'"':
                assert i < len(wire), "unterminated quoted string"
                if wire[i] == 0x5C:
                    i += 1
                assert wire[i] not in b"\r\n\x00"
                out.append(wire[i])
                i += 1
            stack[-1].append(bytes(out))
            i += 1
        elif c == b"{":
            close = wire.index(b"}\r\n", i)
            n = int(wire[i + 1 : close])
            data = wire[close + 3 : close + 3 + n]
            assert len(data) == n and b"\x00" not in data
            stack[-1].append(data)
            i = close + 3 + n
        else:
            j = i
            while j < len(wire) and wire[j : j + 1] not in b" ()":
                j += 1
            atom = wire[i:j]
            assert atom == b"NIL" or atom.isdigit(), atom
            stack[-1].append(None if atom == b"NIL" else int(atom))
            i = j
    assert len(stack) == 1 and len(stack[0]) == 1, "unbalanced ("
    return stack[0][0]


def check_envelope(env: Value) -> None:
    assert isinstance(env, list) and len(env) == 10
    for i, item in enumerate(env):
        if 2 <= i <= 7:  # address lists
            assert item is None or (isinstance(item, list) and item)
            for address in item or []:
                assert isinstance(address, list) and len(address) == 4 and address[1] is None
        else:
            assert item is None or isinstance(item, bytes)


def check_body(body: Value, extensible: bool) -> None:
    """RFC 3501 9 body grammar."""
    assert isinstance(body, list) and body
    if isinstance(body[0], list):  # body-type-mpart
        n = next(i for i, x in enumerate(body) if not isinstance(x, list))
        for child in body[:n]:
            check_body(child, extensible)
        assert isinstance(body[n], bytes)
        assert len(body) == n + (5 if extensible else 1)
        return
    kind, subtype, params, _id, _desc, encoding, size = body[:7]
    assert all(isinstance(x, bytes) for x in (kind, subtype, encoding))
    assert params is None or (isinstance(params, list) and len(params) % 2 == 0 and params)
    assert isinstance(size, int)
    rest = body[7:]
    if (kind, subtype) == (b"MESSAGE", b"RFC822"):
        check_envelope(rest[0])
        check_body(rest[1], extensible)
        assert isinstance(rest[2], int)
        rest = rest[3:]
    elif kind == b"TEXT":
        assert isinstance(rest[0], int)
        rest = rest[1:]
    assert len(rest) == (4 if extensible else 0)
    if extensible:
        dsp, lang = rest[1], rest[2]
        assert dsp is None or (isinstance(dsp, list) and len(dsp) == 2)
        assert lang is None or (isinstance(lang, list) and lang)


def test_rfc3501_example_envelope_and_body() -> None:
    raw = corpus("plain.eml")
    assert envelope(raw) == (
        b'("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" "IMAP4rev1 WG mtg summary and minutes" '
        b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
        b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
        b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
        b'((NIL NIL "imap" "cac.washington.edu")) '
        b'((NIL NIL "minutes" "CNRI.Reston.VA.US")("John Klensin" NIL "KLENSIN" "MIT.EDU")) '
        b'NIL NIL "<B27397-0100000@cac.washington.edu>")'
    )
    assert bodystructure(raw, extensible=False) == (
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 69 2)'
    )
    assert bodystructure(raw, extensible=True) == (
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 69 2 NIL NIL NIL NIL)'
    )


def test_envelope_groups_and_defaults() -> None:
    raw = b"To: undisclosed-recipients:;\r\nReply-To:\r\nFrom: a@b\r\nSubject: \r\n\r\n"
    assert envelope(raw) == (
        b'(NIL "" ((NIL NIL "a" "b")) ((NIL NIL "a" "b")) ((NIL NIL "a" "b")) '
        b'((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL)) NIL NIL NIL NIL)'
    )
    assert envelope(b"") == b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"


def test_envelope_sends_raw_8bit_and_encoded_words() -> None:
    assert b"=?UTF-8?Q?R=C3=A9sum=C3=A9?= attached" in envelope(corpus("encoded_words.eml"))
    env = envelope(corpus("eight_bit_headers.eml"))
    assert b"{20}\r\n" + "Grüße aus München".encode() in env
    check_envelope(parse(env))


def test_multipart_bodystructure() -> None:
    raw = corpus("mixed_attachments.eml")
    assert bodystructure(raw, extensible=True) == (
        b'(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 18 1 NIL NIL NIL NIL)'
        b'("APPLICATION" "PDF" ("NAME" "report.pdf") "<report@example.com>" '
        b'"Q1 \\"final\\" report" "BASE64" 116 "Q2hlY2sgSW50ZWdyaXR5IQ==" '
        b'("ATTACHMENT" ("FILENAME" "report.pdf")) NIL NIL)'
        b'("TEXT" "CSV" ("CHARSET" "us-ascii" "NAME" "data.csv") NIL NIL "7BIT" 8 2 NIL '
        b'("ATTACHMENT" ("FILENAME" "data.csv")) ("en-GB" "de") "http://example.com/data.csv") '
        b'"MIXED" ("BOUNDARY" "----=_Part_42") NIL NIL NIL)'
    )
    assert bodystructure(raw, extensible=False) == (
        b'(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 18 1)'
        b'("APPLICATION" "PDF" ("NAME" "report.pdf") "<report@example.com>" '
        b'"Q1 \\"final\\" report" "BASE64" 116)'
        b'("TEXT" "CSV" ("CHARSET" "us-ascii" "NAME" "data.csv") NIL NIL "7BIT" 8 2) "MIXED")'
    )


def test_message_rfc822_bodystructure() -> None:
    raw = corpus("nested_rfc822.eml")
    body = parse(bodystructure(raw, extensible=True))
    check_body(body, True)
    assert isinstance(body, list)
    msg = body[1]
    assert isinstance(msg, list) and msg[:2] == [b"MESSAGE", b"RFC822"]
    env, inner, lines = msg[7], msg[8], msg[9]
    assert isinstance(env, list) and env[1] == b"contract draft"
    assert isinstance(inner, list) and inner[2] == b"ALTERNATIVE"
    assert lines == 17
    assert msg[6] == len(section_bytes(raw, Section((2,))))  # size = BODY[2] octets


def test_empty_multipart_gets_an_empty_text_part() -> None:
    raw = b"Content-Type: multipart/mixed; boundary=zz\r\n\r\nno delimiters at all\r\n"
    assert bodystructure(raw, extensible=False) == (
        b'(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 0 0) "MIXED")'
    )


def test_sections_nested() -> None:
    raw = corpus("nested_rfc822.eml")
    assert section_bytes(raw, Section((1,))) == b"See below."
    assert section_bytes(raw, Section((2, 1))) == b"Draft v2."
    assert section_bytes(raw, Section((2, 2))) == b"<p>Draft v2.</p>"
    assert section_bytes(raw, Section((2,), "MIME")) == (
        b"Content-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n"
    )
    assert section_bytes(raw, Section((2,), "HEADER")).startswith(b"From: Grace")
    assert section_bytes(raw, Section((2,), "HEADER")).endswith(b"boundary=inner\r\n\r\n")
    assert section_bytes(raw, Section((2,), "TEXT")).startswith(b"--inner\r\n")
    assert section_bytes(raw, Section((2,), "HEADER.FIELDS", ("subject", "TO"))) == (
        b"To: Erin <erin@example.org>\r\nSubject: contract draft\r\n\r\n"
    )
    assert section_bytes(raw, Section((2, 1), "MIME")) == b"Content-Type: text/plain\r\n\r\n"
    for missing in ((3,), (0,), (1, 1), (2, 3), (2, 1, 1)):
        assert section_bytes(raw, Section(missing)) == b""
    assert section_bytes(raw, Section((1,), "HEADER")) == b""  # not a message/rfc822 part
    assert section_bytes(raw, Section((), "MIME")) == b""


def test_sections_top_level() -> None:
    raw = corpus("plain.eml")
    header_end = raw.index(b"\r\n\r\n") + 4
    assert section_bytes(raw, Section()) == raw
    assert section_bytes(raw, Section((), "HEADER")) == raw[:header_end]
    assert section_bytes(raw, Section((), "TEXT")) == raw[header_end:]
    assert section_bytes(raw, Section((1,))) == raw[header_end:]  # non-multipart: part 1 = body
    assert section_bytes(raw, Section((2,))) == b""
    assert section_bytes(raw, Section((), "HEADER.FIELDS.NOT", ("cc", "mime-version", "date"))) == (
        b"From: Terry Gray <gray@cac.washington.edu>\r\n"
        b"Subject: IMAP4rev1 WG mtg summary and minutes\r\n"
        b"To: imap@cac.washington.edu\r\n"
        b"Message-Id: <B27397-0100000@cac.washington.edu>\r\n"
        b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\r\n"
    )
    assert section_bytes(raw, Section((), "HEADER.FIELDS", ("x-none",))) == b"\r\n"


def test_bare_lf_input_is_served_as_crlf() -> None:
    raw = b"Subject: x\n\nab\ncd\n"
    assert section_bytes(raw, Section((), "TEXT")) == b"ab\r\ncd\r\n"
    assert section_bytes(raw, Section((), "HEADER.FIELDS", ("subject",))) == b"Subject: x\r\n\r\n"
    assert bodystructure(raw, extensible=False).endswith(b'"7BIT" 8 2)')


def test_corpus_output_is_well_formed() -> None:
    for path in sorted(CORPUS.glob("*.eml")):
        raw = path.read_bytes().replace(b"\n", b"\r\n")
        check_envelope(parse(envelope(raw)))
        for extensible in (True, False):
            check_body(parse(bodystructure(raw, extensible=extensible)), extensible)


def test_sections_match_cpython_email_on_the_corpus() -> None:
    for name in ("alternative.eml", "mixed_attachments.eml", "related_inline.eml"):
        raw = corpus(name)
        msg = email.message_from_bytes(raw, policy=email.policy.compat32)
        for i, sub in enumerate(msg.get_payload(), 1):
            if sub.get_content_maintype() == "multipart":
                for j, leaf in enumerate(sub.get_payload(), 1):
                    assert section_bytes(raw, Section((i, j))) == leaf.get_payload().encode()
            else:
                assert section_bytes(raw, Section((i,))) == sub.get_payload().encode()


def test_deep_nesting_bodystructure_is_bounded() -> None:
    depth = 300
    raw = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
        for i in range(depth)
    )
    wire = bodystructure(raw, extensible=True)
    check_body(parse(wire), True)
    assert wire.count(b"(") == wire.count(b")")
    assert section_bytes(raw, Section(tuple([1] * 150))) == b""


SECTIONS = [
    Section(),
    Section((), "HEADER"),
    Section((), "TEXT"),
    Section((), "HEADER.FIELDS", ("from", "subject")),
    Section((1,)),
    Section((1,), "MIME"),
    Section((2,), "HEADER"),
    Section((1, 1)),
    Section((2, 1), "TEXT"),
]
TOKENS = st.sampled_from(
    [
        b"--a\r\n",
        b"--a--\r\n",
        b"Content-Type: multipart/mixed; boundary=a\r\n",
        b"Content-Type: message/rfc822\r\n",
        b"Content-Disposition: attachment; filename*0*=x; filename*1=y\r\n",
        b"Content-Language: ,\r\n",
        b"From: a <b@c>, G: d@e;\r\n",
        b'To: "x\\" (y\r\n',
        b"Subject: \x00\xff(\r\n",
        b"\r\n",
        b"\n",
        b" folded\r\n",
        b"text\r\n",
    ]
)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=400), st.lists(TOKENS, max_size=40).map(b"".join)))
def test_arbitrary_bytes_give_well_formed_output(raw: bytes) -> None:
    check_envelope(parse(envelope(raw)))
    for extensible in (True, False):
        check_body(parse(bodystructure(raw, extensible=extensible)), extensible)
    for section in SECTIONS:
        assert isinstance(section_bytes(raw, section), bytes)
