"""Property tests: arbitrary input never raises, and every answer is well-formed POP3."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tinymail.proto import pop3
from tinymail.proto.pop3 import content

from .helpers import FakeMaildrop, connection

SETTINGS = settings(max_examples=200, deadline=None)

# Stored messages: LF text with dots, CRs and 8-bit bytes where a hostile sender puts them.
message_bytes = st.lists(
    st.sampled_from([b"a", b".", b"\n", b"\r", b"\r\n", b"From x", b"\xff", b"\x00", b" "]),
    max_size=40,
).map(b"".join)

verbs = st.sampled_from(
    ["USER", "PASS", "AUTH", "CAPA", "STAT", "LIST", "UIDL", "RETR", "TOP", "DELE", "RSET",
     "NOOP", "QUIT", "XYZ", "user", "retr", ""]
)  # fmt: skip
args = st.lists(
    st.sampled_from(["1", "2", "3", "0", "-1", "99999999999", "x", "bob@example.test", "secret",
                     "PLAIN", "AGJvYkBleGFtcGxlLnRlc3QAc2VjcmV0", "*", ""]),
    max_size=3,
)  # fmt: skip
command_lines = st.lists(
    st.one_of(
        st.tuples(verbs, args).map(lambda va: " ".join([va[0], *va[1]]).encode()),
        st.binary(max_size=30).map(lambda b: b.replace(b"\r\n", b"")),
    ),
    max_size=25,
)
MULTILINE_VERBS = {"CAPA", "RETR", "TOP"}


def split_chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def drive(
    conn: pop3.ServerConnection, drop: FakeMaildrop, chunks: list[bytes]
) -> tuple[bytes, int]:
    """Feed chunk by chunk, answering decisions; return the output and how many chunks fed."""
    out = bytearray(conn.greeting())
    fed = 0
    for chunk in [*chunks, b""]:
        conn.receive_data(chunk)
        fed += 1
        for _ in range(1000):
            event = conn.next_event()
            out += conn.data_to_send()
            if event is pop3.NEED_DATA or event is pop3.CLOSED:
                break
            drop.answer(conn, event)
        else:
            raise AssertionError("core did not settle")
        if event is pop3.CLOSED:
            break
    return bytes(out), fed


def multiline_expected(line: bytes) -> bool:
    verb, _, arg = line.decode("utf-8", "replace").partition(" ")
    verb = verb.upper()
    return verb in MULTILINE_VERBS or (verb in ("LIST", "UIDL", "AUTH") and not arg)


@SETTINGS
@given(command_lines, st.lists(st.integers(0, 10_000), max_size=6), message_bytes, message_bytes)
def test_dialogue_answers_are_well_formed(
    lines: list[bytes], cuts: list[int], msg1: bytes, msg2: bytes
) -> None:
    conn = connection()
    drop = FakeMaildrop(messages={1: msg1, 9: msg2})
    data = b"".join(line + b"\r\n" for line in lines)
    out, _ = drive(conn, drop, split_chunks(data, cuts))
    # Walk the output: greeting, then one answer per command line until the session ends.
    pos = out.index(b"\r\n") + 2
    assert out.startswith(b"+OK ")
    for line in lines:
        if pos == len(out):
            break  # the session ended (QUIT, too many errors) before this line
        end = out.index(b"\r\n", pos)
        status = out[pos:end]
        pos = end + 2
        if status == b"+ ":
            continue  # AUTH PLAIN continuation ("+" SP, RFC 5034 4): next is the SASL response
        assert status == b"+OK" or status.startswith((b"+OK ", b"-ERR ")), status
        if status.startswith(b"+OK") and multiline_expected(line):
            body_end = out.index(b"\r\n.\r\n", pos - 2)
            body = out[pos : body_end + 2]
            # Byte-stuffing: no body line is a lone "." (it would end the answer early).
            assert b"\r\n.\r\n" not in b"\r\n" + body
            pos = body_end + 5
    assert pos == len(out), out[pos:]


@SETTINGS
@given(st.binary(max_size=600), st.lists(st.integers(0, 10_000), max_size=8))
def test_arbitrary_bytes_never_raise(data: bytes, cuts: list[int]) -> None:
    conn = connection(tls_available=True)
    out, _ = drive(conn, FakeMaildrop(messages={1: b"x\n"}), split_chunks(data, cuts))
    assert out.endswith(b"\r\n")
    for line in out.split(b"\r\n")[:-1]:
        assert line.startswith((b"+OK", b"-ERR ", b"+ ")) or line in (b".", b"PLAIN", b"")


@SETTINGS
@given(message_bytes)
def test_retr_round_trip(stored: bytes) -> None:
    """Un-stuffing the RETR body gives the stored message with CRLF line ends, byte-exact."""
    encoded = content.encode(stored)
    wire = b"".join(encoded.chunks)
    assert wire.endswith(b".\r\n")
    lines = wire[:-3].split(b"\r\n")
    assert lines[-1] == b""
    unstuffed = b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines[:-1])
    expected = content.to_crlf(stored)
    assert encoded.octets == len(expected)
    if expected and not expected.endswith(b"\r\n"):
        expected += b"\r\n"
    assert (unstuffed + b"\r\n" if lines[:-1] else b"") == expected
    assert content.to_crlf(stored).replace(b"\r\n", b"\n") == stored.replace(b"\r\n", b"\n")


@SETTINGS
@given(message_bytes, st.integers(0, 50))
def test_top_encoding_is_the_stuffed_prefix(stored: bytes, n: int) -> None:
    encoded = content.encode(stored, n)
    head = content.top(content.to_crlf(stored), n)
    assert encoded.top_lines == n and encoded.octets == len(head)
    assert encoded.chunks[0] == content.stuff(head)


@SETTINGS
@given(message_bytes, st.integers(0, 50))
def test_top_is_a_prefix_with_whole_lines(stored: bytes, n: int) -> None:
    wire = content.to_crlf(stored)
    head = content.top(wire, n)
    assert wire.startswith(head)
    if b"\r\n\r\n" in wire and head != wire:
        body = head[head.index(b"\r\n\r\n") + 4 :]
        assert body.count(b"\r\n") == n and (not body or body.endswith(b"\r\n"))
