"""Commands, replies and session state of the SMTP server core."""

from __future__ import annotations

import pytest

from tinymail.proto import smtp
from tinymail.proto.errors import LocalProtocolError
from tinymail.proto.smtp import replies

from .helpers import codes, ready, reply_lines, session


def test_greeting() -> None:
    conn = smtp.ServerConnection("mx.example.test")
    assert conn.greeting() == b"220 mx.example.test ESMTP tinymail\r\n"


def test_ehlo_advertises_exactly_the_extensions() -> None:
    driver = session()
    assert driver.say("EHLO client.example.net") == [
        "250-mx.example.test",
        f"250-SIZE {35 * 1024 * 1024}",
        "250-PIPELINING",
        "250-8BITMIME",
        "250-ENHANCEDSTATUSCODES",
        "250 SMTPUTF8",
    ]
    assert driver.conn.helo_name == "client.example.net"
    assert driver.conn.esmtp


def test_ehlo_adds_starttls_and_auth_when_offered() -> None:
    driver = session(tls_available=True, auth_mechanisms=("PLAIN", "LOGIN"))
    lines = driver.say("ehlo client")
    assert lines[-2:] == ["250-STARTTLS", "250 AUTH PLAIN LOGIN"]


def test_auth_hidden_until_tls_when_required() -> None:
    driver = session(tls_available=True, auth_mechanisms=("PLAIN",), auth_requires_tls=True)
    assert "AUTH" not in " ".join(driver.say("EHLO client"))
    assert codes(driver.say("AUTH PLAIN")) == ["538 5.7.11"]


def test_helo_is_not_esmtp_and_refuses_parameters() -> None:
    driver = session()
    assert driver.say("HELO client") == ["250 mx.example.test"]
    assert not driver.conn.esmtp
    assert codes(driver.say("MAIL FROM:<a@example.net> SIZE=10")) == ["555 5.5.4"]
    assert codes(driver.say("MAIL FROM:<a@example.net>")) == ["250 2.1.0"]


@pytest.mark.parametrize("line", ["EHLO", "EHLO ", "HELO", "EHLO a b", "EHLO h\u00e9"])
def test_greeting_needs_one_hostname(line: str) -> None:
    assert codes(session().say(line)) == ["501 5.5.4"]


def test_full_transaction_and_session_properties() -> None:
    driver = ready()
    assert codes(driver.say("MAIL FROM:<alice@example.net> SIZE=100 BODY=8BITMIME")) == [
        "250 2.1.0"
    ]
    mail = driver.events[-1]
    assert mail == smtp.MailFrom("alice@example.net", 100, "8BITMIME", False)
    assert driver.conn.mail_from == "alice@example.net"
    assert codes(driver.say("RCPT TO:<bob@example.test>")) == ["250 2.1.5"]
    assert codes(driver.say("RCPT TO:<victim@example.net>")) == ["554 5.7.1"]
    assert driver.conn.recipients == ("bob@example.test",)
    assert driver.say("DATA") == ["354 End data with <CR><LF>.<CR><LF>"]
    assert driver.events[-1] == smtp.DataStart("alice@example.net", ("bob@example.test",))
    assert codes(driver.say("Subject: hi", "", "body", ".")) == ["250 2.0.0"]
    assert driver.messages == [b"Subject: hi\n\nbody\n"]
    assert driver.conn.mail_from is None and driver.conn.recipients == ()
    assert driver.conn.helo_name == "client.example.net"  # EHLO state survives the transaction
    assert codes(driver.say("MAIL FROM:<>")) == ["250 2.1.0"]
    assert driver.conn.mail_from == ""


def test_sequence_errors() -> None:
    driver = session()
    assert driver.say("MAIL FROM:<a@example.net>") == ["503 5.5.1 Error: send HELO/EHLO first"]
    driver.say("EHLO client")
    assert codes(driver.say("RCPT TO:<b@example.test>")) == ["503 5.5.1"]
    assert codes(driver.say("DATA")) == ["503 5.5.1"]
    driver.say("MAIL FROM:<a@example.net>")
    assert driver.say("MAIL FROM:<a@example.net>") == ["503 5.5.1 Error: nested MAIL command"]
    assert driver.say("DATA") == ["554 5.5.1 No valid recipients"]


def test_refused_sender_is_not_recorded() -> None:
    driver = ready()
    driver.decide = lambda decision: smtp.Reply(550, "5.7.1", "Sender refused")
    assert codes(driver.say("MAIL FROM:<spam@example.net>")) == ["550 5.7.1"]
    assert driver.conn.mail_from is None
    assert codes(driver.say("RCPT TO:<b@example.test>")) == ["503 5.5.1"]


def test_rset_noop_vrfy_expn_help_quit() -> None:
    driver = ready()
    driver.say("MAIL FROM:<a@example.net>", "RCPT TO:<b@example.test>")
    assert driver.say("RSET") == ["250 2.0.0 Ok"]
    assert driver.conn.mail_from is None and driver.conn.recipients == ()
    assert codes(driver.say("RSET now")) == ["501 5.5.4"]
    assert codes(driver.say("NOOP", "noop anything")) == ["250 2.0.0", "250 2.0.0"]
    assert codes(driver.say("VRFY root")) == ["252 2.5.0"]
    assert codes(driver.say("VRFY")) == ["501 5.5.4"]
    assert codes(driver.say("EXPN staff")) == ["502 5.5.1"]
    assert codes(driver.say("HELP")) == ["214 2.0.0"]
    assert codes(driver.say("QUIT now")) == ["501 5.5.4"]
    assert driver.say("QUIT") == ["221 2.0.0 Bye"]
    assert driver.conn.next_event() is smtp.CLOSED
    driver.conn.receive_data(b"NOOP\r\n")  # input after CLOSED is ignored
    assert driver.conn.next_event() is smtp.CLOSED
    assert driver.conn.data_to_send() == b""


def test_unknown_and_malformed_commands() -> None:
    driver = ready()
    assert driver.say("FOO bar") == ["500 5.5.2 Command not recognized"]
    assert codes(driver.say("")) == ["500 5.5.2"]
    assert codes(driver.say("NOOP\x00")) == ["501 5.5.2"]
    assert codes(driver.say("MAIL FROM:<a\x00@example.net>")) == ["501 5.5.2"]
    assert codes(driver.say("MAIL FROM:<a@example.net>\tSIZE=1")) == ["501 5.5.2"]
    assert codes(driver.say("\u00e9t\u00e9")) == ["500 5.5.2"]


@pytest.mark.parametrize(
    "line", ["GET / HTTP/1.1", "POST /x HTTP/1.0", "CONNECT mx:25 HTTP/1.1", "Host: mx"]
)
def test_http_looking_commands_disconnect(line: str) -> None:
    driver = session()
    assert driver.say(line, "EHLO after") == ["554 5.7.0 Error: this is an SMTP server"]
    assert driver.conn.next_event() is smtp.CLOSED


def test_commands_are_case_insensitive() -> None:
    driver = session()
    driver.say("eHlO client")
    assert codes(driver.say("mail from:<a@example.net>", "rcpt to:<b@example.test>")) == [
        "250 2.1.0",
        "250 2.1.5",
    ]


@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        ("FROM:<a@example.net> SIZE=99999999999999999999", "552 5.3.4"),
        ("FROM:<a@example.net> SIZE=" + "9" * 1500, "552 5.3.4"),
        ("FROM:<a@example.net> SIZE=-1", "501 5.5.4"),
        ("FROM:<a@example.net> SIZE=1e9", "501 5.5.4"),
        ("FROM:<a@example.net> SIZE=abc", "501 5.5.4"),
        ("FROM:<a@example.net> SIZE=", "501 5.5.4"),
        ("FROM:<a@example.net> SIZE", "501 5.5.4"),
        ("FROM:<a@example.net> SIZE=\u0661", "501 5.5.4"),
        (f"FROM:<a@example.net> SIZE={35 * 1024 * 1024}", "250 2.1.0"),
        (f"FROM:<a@example.net> SIZE={35 * 1024 * 1024 + 1}", "552 5.3.4"),
        ("FROM:<a@example.net> SIZE=1 SIZE=2", "501 5.5.4"),
        ("FROM:<a@example.net> BODY=7BIT", "250 2.1.0"),
        ("FROM:<a@example.net> body=8bitmime", "250 2.1.0"),
        ("FROM:<a@example.net> BODY=BINARYMIME", "501 5.5.4"),
        ("FROM:<a@example.net> SMTPUTF8", "250 2.1.0"),
        ("FROM:<a@example.net> SMTPUTF8=yes", "555 5.5.4"),
        ("FROM:<a@example.net> RET=HDRS", "555 5.5.4"),
        ("FROM:<a@example.net> AUTH=<>", "555 5.5.4"),
        ("FROM:<a@example.net>SIZE=1", "501 5.1.7"),
        ("FROM: <a@example.net>", "250 2.1.0"),
        ("FROM:a@example.net", "501 5.1.7"),
        ("FROM:<a@example.net", "501 5.1.7"),
        ("TO:<a@example.net>", "501 5.5.4"),
        ("FROM:<a@b@example.net>", "501 5.1.7"),
        ("FROM:<@relay.example:a@example.net>", "250 2.1.0"),
        ("FROM:<j\u00f6rg@example.net>", "553 5.6.7"),
        ("FROM:<j\u00f6rg@example.net> SMTPUTF8", "250 2.1.0"),
    ],
)
def test_mail_from_arguments(argument: str, expected: str) -> None:
    assert codes(ready().say(f"MAIL {argument}")) == [expected]


def test_mail_undecodable_8bit_address_is_refused_even_with_smtputf8() -> None:
    driver = ready()
    out = driver.feed(b"MAIL FROM:<j\xf6rg@example.net> SMTPUTF8\r\n")
    assert out.startswith(b"553 5.6.7")


def test_auth_parameter_accepted_when_auth_is_offered() -> None:
    driver = ready(auth_mechanisms=("PLAIN",))
    assert codes(driver.say("MAIL FROM:<a@example.net> AUTH=<>")) == ["250 2.1.0"]


def test_require_auth() -> None:
    driver = ready(auth_mechanisms=("PLAIN",), require_auth=True)
    assert driver.say("MAIL FROM:<a@example.net>") == ["530 5.7.0 Authentication required"]


@pytest.mark.parametrize(
    ("path", "expected", "address"),
    [
        ("<bob@example.test>", "250 2.1.5", "bob@example.test"),
        ("<Bob@EXAMPLE.test>", "250 2.1.5", "Bob@EXAMPLE.test"),
        ("<@a.example,@b.example:bob@example.test>", "250 2.1.5", "bob@example.test"),
        ("<postmaster>", "250 2.1.5", "postmaster"),
        ("<PostMaster>", "250 2.1.5", "postmaster"),
        ('<"user@remote"@example.test>', "250 2.1.5", '"user@remote"@example.test'),
        ('<"a b\\"c"@example.test>', "250 2.1.5", '"a b\\"c"@example.test'),
        ("<victim%example.net@example.test>", "250 2.1.5", "victim%example.net@example.test"),
        ("<bob@[192.0.2.1]>", "554 5.7.1", "bob@[192.0.2.1]"),
        ("<bob@[IPv6:2001:db8::1]>", "554 5.7.1", "bob@[IPv6:2001:db8::1]"),
        ("<a@b@c>", "501 5.1.3", None),
        ("<a@>", "501 5.1.3", None),
        ("<@>", "501 5.1.3", None),
        ("<>", "501 5.1.3", None),
        ("<a@example.test@example.net>", "501 5.1.3", None),
        ("<bob@[192.0.2.300]>", "501 5.1.3", None),
        ("<bob@[tag:whatever]>", "501 5.1.3", None),
        ("<a..b@example.test>", "501 5.1.3", None),
        ("<.a@example.test>", "501 5.1.3", None),
        ("<a@-example.test>", "501 5.1.3", None),
        ("<a@example.test.>", "501 5.1.3", None),
        ("bob@example.test", "501 5.1.3", None),
        ("<bob@example.test> NOTIFY=NEVER", "555 5.5.4", None),
        ("<j\u00f6rg@example.test>", "553 5.6.7", None),
    ],
)
def test_rcpt_to_addresses(path: str, expected: str, address: str | None) -> None:
    driver = ready()
    driver.say("MAIL FROM:<a@example.net>")
    assert codes(driver.say(f"RCPT TO:{path}")) == [expected]
    rcpts = [e for e in driver.events if isinstance(e, smtp.RcptTo)]
    assert rcpts == ([smtp.RcptTo(address)] if address is not None else [])


def test_rcpt_utf8_needs_smtputf8_in_mail() -> None:
    driver = ready()
    driver.say("MAIL FROM:<a@example.net> SMTPUTF8")
    assert codes(driver.say("RCPT TO:<j\u00f6rg@b\u00fccher.example.test>")) == ["554 5.7.1"]
    assert codes(driver.say("RCPT TO:<j\u00f6rg@example.test>")) == ["250 2.1.5"]
    assert driver.conn.recipients == ("j\u00f6rg@example.test",)


def test_data_refused_by_adapter_keeps_session_usable() -> None:
    driver = ready()
    driver.say("MAIL FROM:<a@example.net>", "RCPT TO:<b@example.test>")
    driver.decide = lambda decision: replies.NO_SPACE
    assert driver.say("DATA") == ["452 4.3.1 Insufficient system storage"]
    assert not driver.conn.closed
    assert driver.conn.recipients == ("b@example.test",)


def test_data_end_refusal_resets_transaction() -> None:
    driver = ready()
    driver.say("MAIL FROM:<a@example.net>", "RCPT TO:<b@example.test>", "DATA")
    driver.decide = lambda decision: smtp.Reply(451, "4.3.0", "Local error")
    assert codes(driver.say("x", ".")) == ["451 4.3.0"]
    assert driver.messages == []
    assert driver.conn.mail_from is None


def test_adapter_421_closes_the_session() -> None:
    driver = ready()
    driver.decide = lambda decision: smtp.Reply(421, "4.3.2", "Shutting down")
    assert codes(driver.say("MAIL FROM:<a@example.net>", "NOOP")) == ["421 4.3.2"]
    assert driver.conn.closed


def test_local_protocol_errors() -> None:
    conn = smtp.ServerConnection("mx.example.test")
    with pytest.raises(LocalProtocolError):
        conn.send(replies.OK)  # nothing pending
    conn.receive_data(b"EHLO x\r\nMAIL FROM:<a@example.net>\r\n")
    while isinstance(event := conn.next_event(), smtp.Sentinel):
        raise AssertionError(event)
    assert isinstance(event, smtp.MailFrom)
    with pytest.raises(LocalProtocolError):
        conn.next_event()  # the decision must be answered first
    with pytest.raises(LocalProtocolError):
        conn.send(replies.START_DATA)  # 354 does not answer MAIL
    with pytest.raises(LocalProtocolError):
        conn.tls_started()  # no STARTTLS
    conn.send(replies.SENDER_OK)
    assert conn.mail_from == "a@example.net"


def test_eof_closes_quietly_after_pending_commands() -> None:
    driver = ready()
    driver.conn.receive_data(b"NOOP\r\nNOO")
    assert codes(reply_lines(driver.feed(b""))) == ["250 2.0.0"]
    assert driver.conn.next_event() is smtp.CLOSED


def test_timeout() -> None:
    driver = ready()
    driver.conn.timeout()
    assert driver.pump() == b"421 4.4.2 Error: timeout exceeded\r\n"
    assert driver.conn.next_event() is smtp.CLOSED


def test_timeout_during_data_aborts_the_message() -> None:
    driver = ready()
    driver.say("MAIL FROM:<a@example.net>", "RCPT TO:<b@example.test>", "DATA")
    driver.feed(b"partial")
    driver.conn.timeout()
    assert codes(driver.say()) == ["421 4.4.2"]
    assert driver.aborted == ["timeout"]
    assert driver.messages == []


def test_reply_rendering() -> None:
    assert replies.ehlo("mx", ["A", "B"]).to_bytes() == b"250-mx\r\n250-A\r\n250 B\r\n"
    assert smtp.Reply(550, "5.1.1", "a\nb").to_bytes() == b"550-5.1.1 a\r\n550 5.1.1 b\r\n"
    assert replies.challenge("").to_bytes() == b"334 \r\n"
    assert replies.OK.is_positive and replies.START_DATA.is_positive
    assert not replies.START_DATA.is_success and not replies.NO_SPACE.is_positive
    for bad in [(99, "", "x"), (250, "4.0.0", "x"), (250, "2.0", "x"), (250, "", "a\r\nb")]:
        with pytest.raises(ValueError):
            smtp.Reply(*bad)


def test_ended_by_quit_only_after_a_clean_quit() -> None:
    driver = ready()
    assert not driver.conn.ended_by_quit
    driver.say("NOOP")
    assert not driver.conn.ended_by_quit
    driver.say("QUIT")
    assert driver.conn.ended_by_quit  # nothing unread: the adapter may simply close


def test_input_pipelined_after_quit_asks_for_a_lingering_close() -> None:
    driver = ready()
    assert driver.feed(b"QUIT\r\nNOOP\r\n") == b"221 2.0.0 Bye\r\n"
    assert driver.conn.closed and not driver.conn.ended_by_quit


def test_closing_for_other_reasons_is_not_a_quit() -> None:
    driver = ready()
    driver.feed(b"GET / HTTP/1.1\r\n")
    assert driver.conn.closed and not driver.conn.ended_by_quit
