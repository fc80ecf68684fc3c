"""The sans-I/O SMTP client core: reply parsing, command pairing, STARTTLS, data encoding."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinymail.proto.smtp.client import (
    NEED_DATA,
    ClientConnection,
    ClientUsageError,
    Command,
    CommandReply,
    DataEncoder,
    EhloReply,
    Greeting,
    ReplyParser,
    ServerProtocolError,
    ServerReply,
    State,
)

EHLO_FULL = (
    b"250-mx.example.test hello\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n"
    b"250-SMTPUTF8\r\n250-STARTTLS\r\n250 AUTH PLAIN LOGIN\r\n"
)


def events(conn: ClientConnection) -> list[object]:
    """Drain every complete event."""
    out: list[object] = []
    for _ in range(1000):
        event = conn.next_event()
        if event is NEED_DATA:
            return out
        out.append(event)
    raise AssertionError("event loop did not terminate")


def state_of(conn: ClientConnection) -> State:
    """The state, read through a call so mypy does not keep an earlier narrowing."""
    return conn.state


def greeted(ehlo: bytes = EHLO_FULL) -> ClientConnection:
    conn = ClientConnection()
    conn.receive_data(b"220 mx.example.test ESMTP\r\n")
    assert events(conn) == [Greeting(ServerReply(220, ("mx.example.test ESMTP",)))]
    assert conn.ehlo("client.test") == b"EHLO client.test\r\n"
    conn.receive_data(ehlo)
    [event] = events(conn)
    assert isinstance(event, EhloReply)
    return conn


# -- reply parsing ---------------------------------------------------------------------------

reply_text = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF, exclude_characters="\x7f"),
    max_size=40,
)
reply_codes = st.integers(min_value=200, max_value=599)


def render(code: int, lines: list[str]) -> bytes:
    out = b""
    for i, line in enumerate(lines):
        sep = " " if i == len(lines) - 1 else "-"
        out += f"{code}{sep}{line}\r\n".encode()
    return out


@settings(max_examples=200, deadline=None)
@given(
    replies=st.lists(
        st.tuples(reply_codes, st.lists(reply_text, min_size=1, max_size=5)), min_size=1, max_size=5
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8),
)
def test_replies_survive_any_split(replies: list[tuple[int, list[str]]], cuts: list[int]) -> None:
    wire = b"".join(render(code, lines) for code, lines in replies)
    parser = ReplyParser()
    got: list[ServerReply] = []
    start = 0
    for cut in [*sorted(c % (len(wire) + 1) for c in cuts), len(wire)]:
        parser.feed(wire[start:cut])
        start = max(start, cut)
        while (reply := parser.next_reply()) is not None:
            got.append(reply)
    assert got == [ServerReply(code, tuple(lines)) for code, lines in replies]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_raise_protocol_error(data: bytes) -> None:
    parser = ReplyParser()
    parser.feed(data)
    try:
        for _ in range(400):
            if parser.next_reply() is None:
                break
    except ServerProtocolError:
        pass


@pytest.mark.parametrize(
    "wire",
    [b"25 short\r\n", b"abc text\r\n", b"250-a\r\n251 b\r\n", b"250xtext\r\n", b"650 no\r\n"],
)
def test_malformed_replies_are_errors(wire: bytes) -> None:
    parser = ReplyParser()
    parser.feed(wire)
    with pytest.raises(ServerProtocolError):
        parser.next_reply()


def test_overlong_line_without_newline_is_an_error() -> None:
    parser = ReplyParser()
    parser.feed(b"250 " + b"x" * 5000)
    with pytest.raises(ServerProtocolError):
        parser.next_reply()


def test_bare_code_and_bare_lf_are_tolerated() -> None:
    parser = ReplyParser()
    parser.feed(b"250\n354 go on\n")
    assert parser.next_reply() == ServerReply(250, ("",))
    assert parser.next_reply() == ServerReply(354, ("go on",))


@pytest.mark.parametrize(
    ("reply", "enhanced"),
    [
        (ServerReply(550, ("5.1.1 no such user",)), "5.1.1"),
        (ServerReply(451, ("4.7.1 greylisted",)), "4.7.1"),
        (ServerReply(550, ("4.1.1 class mismatch",)), None),
        (ServerReply(550, ("no such user",)), None),
        (ServerReply(250, ("2.0.0",)), "2.0.0"),
    ],
)
def test_enhanced_status(reply: ServerReply, enhanced: str | None) -> None:
    assert reply.enhanced == enhanced


def test_reply_text_joins_lines() -> None:
    assert ServerReply(550, ("5.7.1 first", "second")).text() == "550 5.7.1 first second"


# -- session ---------------------------------------------------------------------------------


def test_ehlo_extensions_and_capabilities() -> None:
    conn = greeted()
    assert conn.esmtp
    assert conn.pipelining
    assert conn.size_limit == 1000
    assert conn.starttls_offered
    assert conn.auth_mechanisms == {"PLAIN", "LOGIN"}
    assert conn.extensions["8BITMIME"] == ""


def test_legacy_auth_equals_line() -> None:
    conn = greeted(b"250-mx\r\n250-AUTH=LOGIN PLAIN\r\n250 SIZE 0\r\n")
    assert conn.auth_mechanisms == {"LOGIN", "PLAIN"}
    assert conn.size_limit is None


def test_helo_fallback_after_ehlo_refused() -> None:
    conn = greeted(b"502 5.5.1 command not implemented\r\n")
    assert not conn.esmtp
    assert conn.extensions == {}
    assert conn.helo("client.test") == b"HELO client.test\r\n"
    conn.receive_data(b"250 hi\r\n")
    assert events(conn) == [CommandReply(Command.HELO, ServerReply(250, ("hi",)))]
    assert not conn.pipelining
    assert conn.mail("a@x", size=10, eight_bit=True) == b"MAIL FROM:<a@x>\r\n"


def test_pipelined_mail_and_rcpts_pair_replies_in_order() -> None:
    conn = greeted()
    flight = conn.mail("a@x", size=42, eight_bit=True, utf8=True)
    flight += conn.rcpt("b@y") + conn.rcpt("c@y")
    assert flight == (
        b"MAIL FROM:<a@x> SIZE=42 BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<b@y>\r\nRCPT TO:<c@y>\r\n"
    )
    conn.receive_data(b"250 ok\r\n250 ok\r\n550-5.1.1 no\r\n550 such user\r\n")
    assert events(conn) == [
        CommandReply(Command.MAIL, ServerReply(250, ("ok",))),
        CommandReply(Command.RCPT, ServerReply(250, ("ok",)), "b@y"),
        CommandReply(Command.RCPT, ServerReply(550, ("5.1.1 no", "such user")), "c@y"),
    ]


def test_no_pipelining_refuses_a_second_command_in_flight() -> None:
    conn = greeted(b"250 mx\r\n")
    conn.mail("a@x")
    with pytest.raises(ClientUsageError):
        conn.rcpt("b@y")


def test_utf8_requires_the_extension() -> None:
    conn = greeted(b"250 mx\r\n")
    with pytest.raises(ClientUsageError):
        conn.mail("ü@x", utf8=True)


def test_starttls_discards_injected_plaintext() -> None:
    conn = greeted()
    assert conn.starttls() == b"STARTTLS\r\n"
    # research 2.2 T4: a fake MX sends the 220 and an injected reply in one segment.
    conn.receive_data(b"220 go ahead\r\n250-INJECTED\r\n250 PIPELINING\r\n")
    assert events(conn) == [CommandReply(Command.STARTTLS, ServerReply(220, ("go ahead",)))]
    assert conn.state is State.TLS_PENDING
    conn.receive_data(b"250 more injected\r\n")
    assert conn.next_event() is NEED_DATA
    conn.tls_started()
    assert conn.tls_active and conn.extensions == {} and not conn.starttls_offered
    conn.ehlo("client.test")
    conn.receive_data(b"250-mx\r\n250 AUTH PLAIN\r\n")
    [event] = events(conn)
    assert isinstance(event, EhloReply)
    assert event.extensions == {"AUTH": "PLAIN"}


def test_auth_requires_tls() -> None:
    conn = greeted()
    with pytest.raises(ClientUsageError):
        conn.auth_plain("u", "p")
    with pytest.raises(ClientUsageError):
        conn.auth_login()


def tls_session() -> ClientConnection:
    conn = greeted()
    conn.starttls()
    conn.receive_data(b"220 go\r\n")
    events(conn)
    conn.tls_started()
    conn.ehlo("c")
    conn.receive_data(EHLO_FULL)
    events(conn)
    return conn


def test_auth_plain_and_login_exchanges() -> None:
    conn = tls_session()
    line = conn.auth_plain("user", "pa ss")
    assert line == b"AUTH PLAIN " + base64.b64encode(b"\0user\0pa ss") + b"\r\n"
    conn.receive_data(b"235 2.7.0 ok\r\n")
    assert events(conn) == [CommandReply(Command.AUTH, ServerReply(235, ("2.7.0 ok",)))]

    conn = tls_session()
    assert conn.auth_login() == b"AUTH LOGIN\r\n"
    conn.receive_data(b"334 VXNlcm5hbWU6\r\n")
    assert events(conn) == [CommandReply(Command.AUTH, ServerReply(334, ("VXNlcm5hbWU6",)))]
    assert conn.auth_response("user") == base64.b64encode(b"user") + b"\r\n"
    conn.receive_data(b"334 UGFzc3dvcmQ6\r\n")
    events(conn)
    conn.auth_response("pw")
    conn.receive_data(b"235 ok\r\n")
    assert events(conn) == [CommandReply(Command.AUTH, ServerReply(235, ("ok",)))]


def test_data_transaction() -> None:
    conn = greeted()
    conn.mail("a@x")
    conn.rcpt("b@y")
    conn.receive_data(b"250 ok\r\n250 ok\r\n")
    events(conn)
    with pytest.raises(ClientUsageError):
        conn.message_data(b"early")
    conn.data()
    conn.receive_data(b"354 go\r\n")
    events(conn)
    assert conn.state is State.DATA
    wire = conn.message_data(b"Subject: x\n\n.hidden\nlast") + conn.end_data()
    assert wire == b"Subject: x\r\n\r\n..hidden\r\nlast\r\n.\r\n"
    conn.receive_data(b"250 2.0.0 queued as X\r\n")
    assert events(conn) == [
        CommandReply(Command.DATA_END, ServerReply(250, ("2.0.0 queued as X",)))
    ]
    conn.rset()
    conn.receive_data(b"250 ok\r\n")
    events(conn)
    conn.quit()
    conn.receive_data(b"221 bye\r\n")
    events(conn)
    assert state_of(conn) is State.CLOSED


def test_421_closes() -> None:
    conn = greeted()
    conn.mail("a@x")
    conn.receive_data(b"421 4.3.2 shutting down\r\n")
    [event] = events(conn)
    assert isinstance(event, CommandReply) and event.reply.code == 421
    assert conn.state is State.CLOSED
    with pytest.raises(ClientUsageError):
        conn.rset()


def test_unsolicited_reply_is_an_error() -> None:
    conn = greeted()
    conn.receive_data(b"250 surprise\r\n")
    with pytest.raises(ServerProtocolError):
        conn.next_event()


def test_command_injection_refused() -> None:
    conn = greeted()
    with pytest.raises(ClientUsageError):
        conn.rcpt("b@y>\r\nRCPT TO:<evil@z")


# -- data encoding ---------------------------------------------------------------------------


def decode_wire(wire: bytes) -> list[bytes]:
    """What a server sees: CRLF lines up to the terminating dot, dot-unstuffed."""
    lines = wire.split(b"\r\n")
    assert lines[-1] == b""
    assert lines[-2] == b"."
    body = lines[:-2]
    return [line[1:] if line.startswith(b".") else line for line in body]


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(max_size=300).map(lambda b: b.replace(b"\0", b"")),
    cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=6),
)
def test_encoding_is_chunk_independent_and_never_smuggles(data: bytes, cuts: list[int]) -> None:
    whole = DataEncoder()
    expected = whole.encode(data) + whole.finish()
    split = DataEncoder()
    got = b""
    start = 0
    for cut in [*sorted(c % (len(data) + 1) for c in cuts), len(data)]:
        got += split.encode(data[start:cut])
        start = max(start, cut)
    got += split.finish()
    assert got == expected
    # The only terminator is the final one and every CR is part of a CRLF.
    assert got.count(b"\r\n.\r\n") + (got == b".\r\n") == 1
    assert got.endswith(b".\r\n")
    assert got.count(b"\r") == got.count(b"\r\n")
    assert got.count(b"\n") == got.count(b"\r\n")
    # Content survives up to line-ending normalisation and stray-CR replacement.
    text = data.replace(b"\r\n", b"\n").replace(b"\r", b" ")
    recovered = b"\n".join(decode_wire(got))
    assert recovered == text.removesuffix(b"\n")


def test_stray_cr_becomes_space() -> None:
    enc = DataEncoder()
    assert enc.encode(b"a\r.\rb\r\nc\r") + enc.finish() == b"a . b\r\nc \r\n.\r\n"


def reference_encoding(data: bytes) -> bytes:
    """A byte-at-a-time statement of the rules, to check the fast encoder against."""
    out = bytearray()
    at_line_start = True
    i = 0
    while i < len(data):
        byte = data[i : i + 1]
        if byte == b"\r" and data[i + 1 : i + 2] == b"\n":
            i += 1
            byte = b"\n"
        elif byte == b"\r":
            byte = b" "
        if byte == b"\n":
            out += b"\r\n"
            at_line_start = True
        else:
            out += b"." + byte if byte == b"." and at_line_start else byte
            at_line_start = False
        i += 1
    if not at_line_start:
        out += b"\r\n"
    return bytes(out) + b".\r\n"


@settings(max_examples=200, deadline=None)
@given(
    data=st.lists(st.sampled_from([b"\r", b"\n", b".", b"a", b"\r\n", b"\n.", b"\xc3"])).map(
        b"".join
    ),
    cut=st.integers(min_value=0, max_value=100),
)
def test_encoder_matches_reference(data: bytes, cut: int) -> None:
    enc = DataEncoder()
    cut %= len(data) + 1
    assert enc.encode(data[:cut]) + enc.encode(data[cut:]) + enc.finish() == reference_encoding(
        data
    )
