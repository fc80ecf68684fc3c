"""Pipelining, limits, STARTTLS and AUTH in the SMTP server core."""

from __future__ import annotations

import base64

import pytest

from tinymail.proto import smtp

from .helpers import codes, ready, reply_lines, session


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- Pipelining (RFC 2920) ---------------------------------------------------------------


def test_whole_transaction_in_one_chunk_is_answered_in_order() -> None:
    driver = session()
    out = driver.feed(
        b"EHLO client\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.test>\r\n"
        b"RCPT TO:<x@example.net>\r\nRCPT TO:<c@example.test>\r\nDATA\r\n"
    )
    assert codes(reply_lines(out))[1:] == [
        "250 2.1.0",
        "250 2.1.5",
        "554 5.7.1",
        "250 2.1.5",
        "354",
    ]
    out = driver.feed(b"hello\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<d@example.test>\r\nQUIT\r\n")
    assert codes(reply_lines(out)) == ["250 2.0.0", "250 2.1.0", "250 2.1.5", "221 2.0.0"]
    assert driver.messages == [b"hello\n"]
    assert driver.conn.closed


def test_message_sent_before_354_does_not_run_as_commands_when_data_is_refused() -> None:
    driver = ready()
    out = driver.feed(
        b"MAIL FROM:<a@example.net>\r\nRCPT TO:<x@example.net>\r\nDATA\r\n"
        b"RSET\r\nMAIL FROM:<evil@example.net>\r\n.\r\n"
    )
    assert codes(reply_lines(out)) == ["250 2.1.0", "554 5.7.1", "554 5.5.1", "554 5.5.0"]
    assert driver.conn.closed
    assert sum(isinstance(e, smtp.MailFrom) for e in driver.events) == 1


def test_message_sent_before_354_is_taken_as_data_when_data_is_accepted() -> None:
    driver = ready()
    out = driver.feed(
        b"MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.test>\r\nDATA\r\nbody\r\n.\r\n"
    )
    assert codes(reply_lines(out)) == ["250 2.1.0", "250 2.1.5", "354", "250 2.0.0"]
    assert driver.messages == [b"body\n"]


# --- Limits ------------------------------------------------------------------------------


def test_megabyte_command_line_bounded_memory_and_500() -> None:
    driver = ready()
    out = b""
    for _ in range(256):
        out += driver.feed(b"A" * 4096)
        assert len(driver.conn._lines) <= 2048  # never more than one line's worth
    assert reply_lines(out) == ["500 5.5.2 Line too long"]
    assert codes(reply_lines(driver.feed(b"tail\r\nNOOP\r\n"))) == ["250 2.0.0"]


def test_command_line_limit_counts_crlf() -> None:
    driver = ready(smtp.Limits(max_command_line=512))
    assert codes(driver.say("NOOP " + "x" * 505)) == ["250 2.0.0"]  # 512 with CRLF
    assert codes(driver.say("NOOP " + "x" * 506)) == ["500 5.5.2"]


def test_max_recipients() -> None:
    driver = ready()
    driver.say("MAIL FROM:<a@example.net>")
    lines = driver.say(*(f"RCPT TO:<u{i}@example.test>" for i in range(1001)))
    assert codes(lines).count("250 2.1.5") == 1000
    assert lines[-1] == "452 4.5.3 Too many recipients"
    assert len(driver.conn.recipients) == 1000
    assert sum(isinstance(e, smtp.RcptTo) for e in driver.events) == 1000
    assert not driver.conn.closed  # a limit, not an error: the client retries later


def test_too_many_errors_closes() -> None:
    driver = ready(smtp.Limits(max_errors=3))
    lines = driver.say("BOGUS", "BOGUS", "BOGUS", "NOOP")
    assert codes(lines) == ["500 5.5.2", "500 5.5.2", "500 5.5.2", "421 4.7.0"]
    assert driver.conn.closed


def test_default_error_limit_is_twenty() -> None:
    driver = ready()
    lines = driver.say(*["BOGUS"] * 25)
    assert codes(lines) == ["500 5.5.2"] * 20 + ["421 4.7.0"]


# --- STARTTLS (RFC 3207) -----------------------------------------------------------------


def test_starttls_discards_pipelined_plaintext_and_resets_state() -> None:
    driver = session(tls_available=True, auth_mechanisms=("PLAIN",))
    driver.say("EHLO client")
    out = driver.feed(b"STARTTLS\r\nEHLO commandinjectiontester\r\nMAIL FROM:<a@example.net>\r\n")
    assert reply_lines(out) == ["220 2.0.0 Ready to start TLS"]  # nothing else answered
    assert any(isinstance(e, smtp.StartTLS) for e in driver.events)
    assert driver.conn.tls_active
    assert driver.conn.helo_name is None and not driver.conn.esmtp
    assert codes(driver.say("MAIL FROM:<a@example.net>")) == ["503 5.5.1"]  # RFC 3207 §4.2
    lines = driver.say("EHLO client")
    assert "250-STARTTLS" not in lines and lines[-1] == "250 AUTH PLAIN"


def test_bytes_received_during_handshake_are_dropped() -> None:
    conn = smtp.ServerConnection("mx.example.test", tls_available=True)
    conn.receive_data(b"EHLO c\r\nSTARTTLS\r\n")
    assert isinstance(conn.next_event(), smtp.StartTLS)  # EHLO needs no decision
    conn.receive_data(b"NOOP\r\n")  # injected plaintext before the handshake finished
    conn.tls_started()
    conn.data_to_send()
    assert conn.next_event() is smtp.NEED_DATA
    assert conn.data_to_send() == b""


@pytest.mark.parametrize(
    ("available", "active", "line", "expected"),
    [
        (False, False, "STARTTLS", "454 4.7.0"),
        (True, False, "STARTTLS now", "501 5.5.4"),
        (True, True, "STARTTLS", "503 5.5.1"),
    ],
)
def test_starttls_refusals(available: bool, active: bool, line: str, expected: str) -> None:
    driver = ready(tls_available=available, tls_active=active)
    assert codes(driver.say(line)) == [expected]


# --- AUTH (RFC 4954) ---------------------------------------------------------------------


def test_auth_plain_with_initial_response() -> None:
    driver = ready(auth_mechanisms=("PLAIN", "LOGIN"))
    token = b64(b"\x00alice@example.test\x00secret")
    assert driver.say(f"AUTH PLAIN {token}") == ["235 2.7.0 Authentication successful"]
    assert driver.conn.authenticated_as == "alice@example.test"
    creds = driver.events[-1]
    assert creds == smtp.AuthCredentials("", "alice@example.test", "secret", "PLAIN")
    assert "secret" not in repr(creds)
    assert codes(driver.say(f"AUTH PLAIN {token}")) == ["503 5.5.1"]  # only once


def test_auth_plain_with_challenge_and_matching_authzid() -> None:
    driver = ready(auth_mechanisms=("PLAIN",))
    assert driver.say("AUTH PLAIN") == ["334 "]
    assert codes(driver.say(b64(b"alice@example.test\x00alice@example.test\x00secret"))) == [
        "235 2.7.0"
    ]


def test_auth_login_exchange() -> None:
    driver = ready(auth_mechanisms=("LOGIN",))
    assert driver.say("auth login") == ["334 VXNlcm5hbWU6"]
    assert driver.say(b64(b"alice@example.test")) == ["334 UGFzc3dvcmQ6"]
    assert codes(driver.say(b64(b"secret"))) == ["235 2.7.0"]
    assert driver.events[-1] == smtp.AuthCredentials("", "alice@example.test", "secret", "LOGIN")


def test_auth_login_with_initial_username_and_wrong_password() -> None:
    driver = ready(auth_mechanisms=("LOGIN",))
    assert driver.say(f"AUTH LOGIN {b64(b'alice@example.test')}") == ["334 UGFzc3dvcmQ6"]
    assert codes(driver.say(b64(b"wrong"))) == ["535 5.7.8"]
    assert driver.conn.authenticated_as is None


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["AUTH PLAIN", "*"], ["334", "501 5.7.0"]),
        (["AUTH LOGIN", "*"], ["334", "501 5.7.0"]),
        (["AUTH PLAIN !!!"], ["501 5.5.2"]),
        (["AUTH PLAIN", "not base64"], ["334", "501 5.5.2"]),
        (["AUTH PLAIN AA=="], ["501 5.5.2"]),
        (["AUTH PLAIN " + b64(b"\x00alice@example.test")], ["501 5.5.2"]),
        (["AUTH PLAIN " + b64(b"admin\x00alice@example.test\x00secret")], ["535 5.7.8"]),
        (["AUTH CRAM-MD5"], ["504 5.5.4"]),
        (["AUTH"], ["501 5.5.4"]),
        (["AUTH PLAIN a b"], ["501 5.5.4"]),
    ],
)
def test_auth_failures(lines: list[str], expected: list[str]) -> None:
    driver = ready(auth_mechanisms=("PLAIN", "LOGIN"))
    assert codes(driver.say(*lines)) == expected
    assert driver.conn.authenticated_as is None
    assert not any(isinstance(e, smtp.AuthCredentials) for e in driver.events)


def test_auth_state_rules() -> None:
    assert codes(ready().say("AUTH PLAIN")) == ["502 5.5.1"]  # not offered
    driver = session(auth_mechanisms=("PLAIN",))
    assert codes(driver.say("AUTH PLAIN")) == ["503 5.5.1"]  # before EHLO
    driver.say("HELO client")
    assert codes(driver.say("AUTH PLAIN")) == ["503 5.5.1"]  # HELO is not enough
    driver.say("EHLO client", "MAIL FROM:<a@example.net>")
    assert codes(driver.say("AUTH PLAIN")) == ["503 5.5.1"]  # during a transaction


def test_three_auth_failures_close() -> None:
    driver = ready(auth_mechanisms=("PLAIN",))
    bad = "AUTH PLAIN " + b64(b"\x00alice@example.test\x00wrong")
    assert codes(driver.say(bad, bad, bad, "NOOP")) == ["535 5.7.8"] * 3 + ["421 4.7.0"]
    assert driver.conn.closed


def test_auth_then_mail_with_require_auth() -> None:
    driver = ready(auth_mechanisms=("PLAIN",), require_auth=True)
    driver.say("AUTH PLAIN " + b64(b"\x00alice@example.test\x00secret"))
    assert codes(driver.say("MAIL FROM:<alice@example.test>")) == ["250 2.1.0"]
