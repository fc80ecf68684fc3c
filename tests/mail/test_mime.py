"""MIME structure: corpus shapes, hostile inputs, and a cross-check against CPython's email."""

from __future__ import annotations

import email
import email.policy
import time
from collections.abc import Iterator
from email.message import Message
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from tinymail.mail.mime import Part, parse_structure

CORPUS = Path(__file__).parent / "corpus"


def corpus(name: str) -> bytes:
    """A corpus message in CRLF form (files are kept with LF, as a Maildir holds them)."""
    return (CORPUS / name).read_bytes().replace(b"\n", b"\r\n")


def walk(part: Part, path: tuple[int, ...] = ()) -> Iterator[tuple[tuple[int, ...], Part]]:
    yield path, part
    for i, child in enumerate(part.children, 1):
        yield from walk(child, (*path, i))


def shape(part: Part) -> object:
    kind = f"{part.content_type}/{part.content_subtype}"
    return (kind, [shape(c) for c in part.children]) if part.children else kind


def check_offsets(raw: bytes, root: Part) -> None:
    """Every part lies inside its parent's body, children in order, nothing past the end."""
    stack = [root]
    while stack:
        p = stack.pop()
        assert 0 <= p.header_start <= p.header_end <= p.body_start <= p.body_end <= len(raw)
        if p.is_message:
            assert len(p.children) == 1
        prev = p.body_start
        for c in p.children:
            assert prev <= c.header_start and c.body_end <= p.body_end
            prev = c.body_end
        stack.extend(p.children)


def test_plain() -> None:
    raw = corpus("plain.eml")
    root = parse_structure(raw)
    assert (root.content_type, root.content_subtype) == ("text", "plain")
    assert root.params == (("charset", "US-ASCII"),)
    assert raw[root.body_start : root.body_end].startswith(b"Hello Joe")
    assert root.lines == 2 and root.size == root.body_end - root.body_start


def test_corpus_shapes() -> None:
    assert shape(parse_structure(corpus("alternative.eml"))) == (
        "multipart/alternative",
        ["text/plain", "text/html"],
    )
    assert shape(parse_structure(corpus("mixed_attachments.eml"))) == (
        "multipart/mixed",
        ["text/plain", "application/pdf", "text/csv"],
    )
    assert shape(parse_structure(corpus("nested_rfc822.eml"))) == (
        "multipart/mixed",
        [
            "text/plain",
            ("message/rfc822", [("multipart/alternative", ["text/plain", "text/html"])]),
        ],
    )
    assert shape(parse_structure(corpus("related_inline.eml"))) == (
        "multipart/related",
        [("multipart/alternative", ["text/plain", "text/html"]), "image/png"],
    )
    # RFC 2046 5.1.5: parts of a digest default to message/rfc822
    assert shape(parse_structure(corpus("digest.eml"))) == (
        "multipart/digest",
        [("message/rfc822", ["text/plain"]), ("message/rfc822", ["text/plain"])],
    )


def test_attachment_fields() -> None:
    root = parse_structure(corpus("mixed_attachments.eml"))
    pdf, csv = root.children[1], root.children[2]
    assert pdf.encoding == "base64" and pdf.content_id == b"<report@example.com>"
    assert pdf.description == b'Q1 "final" report' and pdf.md5 == b"Q2hlY2sgSW50ZWdyaXR5IQ=="
    assert pdf.disposition == "attachment"
    assert pdf.disposition_params == (("filename", "report.pdf"),)
    assert csv.language == ("en-GB", "de") and csv.location == b"http://example.com/data.csv"
    assert csv.lines == 2  # "a,b" CRLF "1,2": the CRLF before the delimiter is not body


def test_rfc2231_and_encoded_word_params() -> None:
    root = parse_structure(corpus("rfc2231.eml"))
    assert root.children[1].params == (("name", "very long file name.txt"),)
    assert root.children[1].disposition_params == (("filename*", "UTF-8''R%C3%A9sum%C3%A9.txt"),)
    assert root.children[2].params == (("name*", "iso-8859-1'en'%E9t%E9.bin"),)
    ew = parse_structure(corpus("encoded_words.eml")).children[1]
    assert ew.params == (("name", "=?UTF-8?Q?R=C3=A9sum=C3=A9.pdf?="),)


def test_missing_boundary_parameter_is_a_text_leaf() -> None:
    root = parse_structure(corpus("missing_boundary.eml"))
    assert shape(root) == "text/plain" and root.children == ()


def test_missing_close_delimiter() -> None:
    raw = corpus("no_final_boundary.eml")
    root = parse_structure(raw)
    assert shape(root) == ("multipart/mixed", ["text/plain", "text/plain"])
    last = root.children[1]
    assert raw[last.body_start : last.body_end].startswith(b"second,")
    assert last.body_end == len(raw)


def test_eight_bit_and_nul() -> None:
    root = parse_structure(corpus("eight_bit_headers.eml"))
    assert dict(root.params)["name"].encode("utf-8", "surrogateescape") == "naïve.txt".encode()
    raw = corpus("nul_bytes.eml")
    root = parse_structure(raw)
    assert b"\x00" in raw[root.body_start : root.body_end]


def test_degenerate_messages() -> None:
    for raw in (b"", b"\r\n", b"\n\n", b"x", b"--", b"Subject: x", b"Subject: x\r\n"):
        root = parse_structure(raw)
        check_offsets(raw, root)
        assert shape(root) == "text/plain"
    root = parse_structure(b"Subject: only a header\r\n")
    assert root.header_end == root.body_start == root.body_end == 24
    # a line that is not a header field starts the body (as CPython's feedparser does)
    raw = b"Subject: x\r\nthis is body text\r\n"
    root = parse_structure(raw)
    assert raw[root.body_start :] == b"this is body text\r\n"


def test_bare_lf_sizes_count_crlf() -> None:
    raw = b"Subject: x\n\nab\ncd\n"
    root = parse_structure(raw)
    assert (root.size, root.lines) == (8, 2)


def nested(depth: int) -> bytes:
    head = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
        for i in range(depth)
    )
    tail = b"".join(b"\r\n--b%d--\r\n" % i for i in reversed(range(depth)))
    return b"Subject: deep\r\n" + head + b"Content-Type: text/plain\r\n\r\nleaf" + tail


def test_depth_is_capped_at_100() -> None:
    raw = nested(300)
    root = parse_structure(raw)
    check_offsets(raw, root)
    depth, part = 0, root
    while part.children:
        (part,) = part.children
        depth += 1
    assert depth == 100
    assert (part.content_type, part.content_subtype) == ("text", "plain")
    assert parse_structure(raw, max_depth=5).children[0].children[0].children != ()


def test_deep_nesting_is_fast() -> None:
    raw = nested(10_000)
    start = time.perf_counter()
    parse_structure(raw)
    parse_structure(raw, max_depth=10_000, max_parts=20_000)
    assert time.perf_counter() - start < 3.0


def test_part_count_is_capped() -> None:
    raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + b"--b\r\n\r\nx\r\n" * 50_000
    root = parse_structure(raw, max_parts=1000)
    assert len(list(walk(root))) == 1000


def test_huge_header_line_is_linear() -> None:
    raw = b"X-Big: " + b"a" * 1_000_000 + b"\r\nContent-Type: text/html\r\n\r\nbody\r\n"
    start = time.perf_counter()
    root = parse_structure(raw)
    assert time.perf_counter() - start < 1.0
    assert root.content_subtype == "html"
    raw = b"Content-Type: multipart/mixed; boundary=" + b"q" * 1_000_000 + b"\r\n\r\n--q\r\n"
    assert shape(parse_structure(raw)) == "multipart/mixed"  # boundary never matches: no parts


def test_many_dash_lines_are_linear() -> None:
    body = b"--not-the-boundary\r\n" * 100_000
    raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n" + body + b"--b--\r\n"
    start = time.perf_counter()
    root = parse_structure(raw)
    assert time.perf_counter() - start < 2.0
    assert len(root.children) == 1


MIME_TOKENS = st.sampled_from(
    [
        b"--a\r\n",
        b"--a--\r\n",
        b"--b\n",
        b"--b-- \r\n",
        b"Content-Type: multipart/mixed; boundary=a\r\n",
        b"Content-Type: multipart/digest; boundary=b\n",
        b"Content-Type: message/rfc822\r\n",
        b"Content-Type: text/plain; name*0*=x; name*1=y\r\n",
        b"\r\n",
        b"\n",
        b"X: y\r\n",
        b" folded\r\n",
        b"text\r\n",
        b"\x00\xff\r",
        b'"(;=',
    ]
)
MIMEISH = st.lists(MIME_TOKENS, max_size=40).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=500), MIMEISH))
def test_arbitrary_bytes_give_a_consistent_structure(raw: bytes) -> None:
    check_offsets(raw, parse_structure(raw))
    check_offsets(raw, parse_structure(raw, max_depth=2, max_parts=3))


# -- cross-check with CPython's email on safe, well-formed messages -------------------

LINE = st.text(alphabet="abcxyz 0123456789.,", max_size=20)
LEAF = st.tuples(st.just("leaf"), st.sampled_from(["plain", "html"]), st.lists(LINE, max_size=4))
TREE = st.recursive(
    LEAF,
    lambda inner: st.one_of(
        st.tuples(
            st.just("multi"),
            st.sampled_from(["mixed", "alternative"]),
            st.lists(inner, min_size=1, max_size=3),
        ),
        st.tuples(st.just("msg"), st.just("rfc822"), st.lists(inner, min_size=1, max_size=1)),
    ),
    max_leaves=8,
)


def render(node: tuple[str, str, list], counter: list[int]) -> bytes:  # type: ignore[type-arg]
    """An entity (header block + body) for a generated tree node."""
    kind, subtype, content = node
    if kind == "leaf":
        return b"Content-Type: text/%s\r\n\r\n%s" % (
            subtype.encode(),
            "\r\n".join(content).encode(),
        )
    if kind == "msg":
        inner = b"Subject: inner\r\n" + render(content[0], counter)
        return b"Content-Type: message/rfc822\r\n\r\n" + inner
    counter[0] += 1
    b = b"bd%dq" % counter[0]
    parts = b"".join(b"--" + b + b"\r\n" + render(c, counter) + b"\r\n" for c in content)
    return (
        b'Content-Type: multipart/%s; boundary="%s"\r\n\r\npreamble\r\n%s--%s--\r\nepilogue\r\n'
        % (subtype.encode(), b, parts, b)
    )


def email_leaves(msg: Message, path: tuple[int, ...]) -> Iterator[tuple[tuple[int, ...], str]]:
    """(IMAP part number, payload) of each leaf, numbered by RFC 3501 6.4.5."""
    if msg.get_content_maintype() == "multipart":
        for i, sub in enumerate(msg.get_payload(), 1):
            yield from email_part_leaves(sub, (*path, i))
    else:
        yield from email_part_leaves(msg, (*path, 1))


def email_part_leaves(
    part: Message, path: tuple[int, ...]
) -> Iterator[tuple[tuple[int, ...], str]]:
    if part.get_content_maintype() == "multipart":
        for i, sub in enumerate(part.get_payload(), 1):
            yield from email_part_leaves(sub, (*path, i))
    elif part.get_content_type() == "message/rfc822":
        payloads = part.get_payload()
        assert isinstance(payloads, list) and len(payloads) == 1
        inner = payloads[0]
        assert isinstance(inner, Message)
        yield from email_leaves(inner, path)
    else:
        payload = part.get_payload()
        assert isinstance(payload, str)
        yield path, payload


def my_leaves(root: Part) -> Iterator[tuple[tuple[int, ...], Part]]:
    def message(m: Part, path: tuple[int, ...]) -> Iterator[tuple[tuple[int, ...], Part]]:
        if m.is_multipart:
            for i, c in enumerate(m.children, 1):
                yield from part(c, (*path, i))
        else:
            yield from part(m, (*path, 1))

    def part(p: Part, path: tuple[int, ...]) -> Iterator[tuple[tuple[int, ...], Part]]:
        if p.is_multipart:
            for i, c in enumerate(p.children, 1):
                yield from part(c, (*path, i))
        elif p.is_message:
            yield from message(p.children[0], path)
        else:
            yield path, p

    return message(root, ())


@settings(max_examples=200, deadline=None)
@given(TREE)
def test_leaves_match_cpython_email(tree: tuple[str, str, list]) -> None:  # type: ignore[type-arg]
    raw = b"Subject: generated\r\nMIME-Version: 1.0\r\n" + render(tree, [0])
    theirs = list(email_leaves(email.message_from_bytes(raw, policy=email.policy.compat32), ()))
    mine = list(my_leaves(parse_structure(raw)))
    assert [p for p, _ in mine] == [p for p, _ in theirs]
    for (_, part), (_, payload) in zip(mine, theirs, strict=True):
        assert raw[part.body_start : part.body_end] == payload.encode()


def test_part_cut_right_after_its_delimiter_stays_inside_its_parent() -> None:
    # Found by hypothesis: the inner multipart's only part starts where the outer delimiter does.
    raw = (
        b"Content-Type: multipart/m;boundary=a\n--a\nContent-Type: multipart/d;boundary=b\n--b\n--a"
    )
    root = parse_structure(raw)
    inner = root.children[0]
    [empty] = inner.children
    assert inner.body_start <= empty.header_start <= empty.body_end <= inner.body_end
    assert root.body_start <= inner.header_start <= inner.body_end <= root.body_end
