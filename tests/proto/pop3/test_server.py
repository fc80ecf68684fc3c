"""Dialogues against the sans-I/O POP3 core (RFC 1939, 2449, 5034, 2595)."""

from __future__ import annotations

import base64

import pytest

from tinymail.proto import pop3
from tinymail.proto.errors import LocalProtocolError
from tinymail.proto.pop3 import content

from .helpers import UIDVALIDITY, FakeMaildrop, connection, run

MSG1 = b"Subject: one\n\nbody\n.dot line\n"
MSG2 = b"Subject: two\n\nl1\nl2\nl3\n"


def logged_in(**kwargs: bool) -> tuple[pop3.ServerConnection, FakeMaildrop]:
    conn = connection(**kwargs)
    drop = FakeMaildrop(messages={3: MSG1, 7: MSG2})
    out = run(conn, drop, b"USER bob@example.test\r\nPASS secret\r\n")
    assert out == b"+OK Send your password.\r\n+OK Logged in.\r\n"
    assert conn.state is pop3.State.TRANSACTION
    return conn, drop


def test_greeting() -> None:
    assert connection().greeting() == b"+OK mx.example.test tinymail POP3 ready.\r\n"


def test_stat_list_uidl() -> None:
    conn, drop = logged_in()
    size1, size2 = len(MSG1) + MSG1.count(b"\n"), len(MSG2) + MSG2.count(b"\n")
    out = run(conn, drop, b"STAT\r\nLIST\r\nLIST 2\r\nUIDL\r\nuidl 1\r\n")
    assert (
        out
        == (
            f"+OK 2 {size1 + size2}\r\n"
            f"+OK 2 messages\r\n1 {size1}\r\n2 {size2}\r\n.\r\n"
            f"+OK 2 {size2}\r\n"
            f"+OK 2 messages\r\n1 00000003{UIDVALIDITY:08x}\r\n2 00000007{UIDVALIDITY:08x}\r\n.\r\n"
            f"+OK 1 00000003{UIDVALIDITY:08x}\r\n"
        ).encode()
    )


def test_uidl_is_dovecot_format() -> None:
    conn = connection()
    drop = FakeMaildrop(messages={})
    run(conn, drop, b"USER bob@example.test\r\n")
    conn.receive_data(b"PASS secret\r\n")
    event = conn.next_event()
    assert isinstance(event, pop3.Authenticate)
    conn.auth_ok("bob@example.test")
    assert conn.next_event() == pop3.OpenMaildrop("bob@example.test")
    conn.maildrop_opened(pop3.Listing(0x5F00AB12, [0x1234], [10]))
    assert conn.data_to_send() == b"+OK Logged in, 1 messages.\r\n"
    out = run(conn, drop, b"UIDL\r\n")
    assert out == b"+OK 1 messages\r\n1 000012345f00ab12\r\n.\r\n"


def test_login_ok_comes_before_the_listing() -> None:
    """Dovecot's order: "+OK Logged in." is out, then the maildrop is listed before any
    later command (even a pipelined one) is looked at, so the listing is as of login."""
    conn = connection()
    conn.receive_data(b"USER bob@example.test\r\nPASS secret\r\nSTAT\r\n")
    assert isinstance(conn.next_event(), pop3.Authenticate)
    conn.auth_ok("bob@example.test")
    assert conn.next_event() == pop3.OpenMaildrop("bob@example.test")
    conn.maildrop_locked()
    assert conn.next_event() == pop3.ListMaildrop("bob@example.test")
    assert conn.data_to_send() == b"+OK Send your password.\r\n+OK Logged in.\r\n"
    assert conn.state is pop3.State.TRANSACTION
    conn.maildrop_listed(pop3.Listing(7, [4, 9], [10, 20]))
    assert conn.next_event() is pop3.NEED_DATA
    assert conn.data_to_send() == b"+OK 2 30\r\n"


def test_listing_failure_after_login_ends_the_session() -> None:
    conn = connection()
    drop = FakeMaildrop(messages={3: MSG1}, list_fails=True)
    out = run(conn, drop, b"USER bob@example.test\r\nPASS secret\r\nSTAT\r\n")
    assert out.endswith(
        b"+OK Logged in.\r\n-ERR [SYS/TEMP] Unable to open the mailbox, try again later.\r\n"
    )
    assert conn.state is pop3.State.CLOSED
    assert drop.updates == []


def test_eager_listing_answers_lock_and_listing_at_once() -> None:
    conn = connection()
    drop = FakeMaildrop(messages={3: MSG1, 7: MSG2}, eager=True)
    out = run(conn, drop, b"USER bob@example.test\r\nPASS secret\r\nSTAT\r\n")
    size = len(MSG1) + MSG1.count(b"\n") + len(MSG2) + MSG2.count(b"\n")
    assert out.endswith(b"+OK Logged in, 2 messages.\r\n+OK 2 %d\r\n" % size)
    assert not any(isinstance(d, pop3.ListMaildrop) for d in drop.decisions)


def test_listing_cache_follows_dele_and_rset() -> None:
    conn, drop = logged_in()
    full = run(conn, drop, b"UIDL\r\n")
    assert run(conn, drop, b"UIDL\r\n") == full
    run(conn, drop, b"DELE 1\r\n")
    after = run(conn, drop, b"UIDL\r\nLIST\r\nSTAT\r\n")
    assert after.startswith(b"+OK 1 messages\r\n2 00000007")
    size2 = len(MSG2) + MSG2.count(b"\n")
    assert after.endswith(b"+OK 1 messages\r\n2 %d\r\n.\r\n+OK 1 %d\r\n" % (size2, size2))
    run(conn, drop, b"RSET\r\n")
    assert run(conn, drop, b"UIDL\r\n") == full


def test_encoded_answer_must_match_the_request() -> None:
    conn, _ = logged_in()
    conn.receive_data(b"TOP 1 0\r\n")
    event = conn.next_event()
    assert isinstance(event, pop3.FetchMessage) and event.top_lines == 0
    with pytest.raises(LocalProtocolError):
        conn.message_encoded(content.encode(MSG1))


def test_retr_crlf_and_byte_stuffing() -> None:
    conn, drop = logged_in()
    out = run(conn, drop, b"RETR 1\r\n")
    wire = b"Subject: one\r\n\r\nbody\r\n.dot line\r\n"
    assert out == b"+OK %d octets\r\n" % len(wire) + wire.replace(b"\r\n.", b"\r\n..") + b".\r\n"
    assert drop.decisions[-1] == pop3.FetchMessage(number=1, uid=3, top_lines=None)


def test_top() -> None:
    conn, drop = logged_in()
    out = run(conn, drop, b"TOP 2 2\r\nTOP 2 0\r\nTOP 2 99\r\n")
    assert out == (
        b"+OK Top of message follows\r\nSubject: two\r\n\r\nl1\r\nl2\r\n.\r\n"
        b"+OK Top of message follows\r\nSubject: two\r\n\r\n.\r\n"
        b"+OK Top of message follows\r\nSubject: two\r\n\r\nl1\r\nl2\r\nl3\r\n.\r\n"
    )


def test_dele_rset_quit_semantics() -> None:
    conn, drop = logged_in()
    out = run(conn, drop, b"DELE 1\r\nDELE 1\r\nRETR 1\r\nSTAT\r\nLIST\r\nRSET\r\nDELE 2\r\n")
    lines = out.split(b"\r\n")
    assert lines[0] == b"+OK Marked to be deleted."
    assert lines[1] == b"-ERR Message is deleted."
    assert lines[2] == b"-ERR Message is deleted."
    assert lines[3].startswith(b"+OK 1 ")
    assert lines[4:7] == [b"+OK 1 messages", lines[5], b"."] and lines[5].startswith(b"2 ")
    assert lines[7] == b"+OK 2 messages."
    assert lines[8] == b"+OK Marked to be deleted."
    out = run(conn, drop, b"QUIT\r\n")
    assert out == b"+OK Logging out.\r\n"
    assert drop.updates == [(7,)]
    assert conn.next_event() is pop3.CLOSED


def test_connection_drop_deletes_nothing() -> None:
    conn, drop = logged_in()
    run(conn, drop, b"DELE 1\r\n", eof=True)
    assert conn.next_event() is pop3.CLOSED
    assert drop.updates == []


def test_update_failure_is_reported() -> None:
    conn, drop = logged_in()
    drop.update_fails = True
    out = run(conn, drop, b"DELE 2\r\nQUIT\r\n")
    assert out.endswith(b"-ERR [SYS/TEMP] Some deleted messages were not removed.\r\n")
    assert conn.state is pop3.State.CLOSED


def test_in_use_keeps_authorization_state() -> None:
    conn = connection()
    drop = FakeMaildrop(locked=True)
    out = run(conn, drop, b"USER bob@example.test\r\nPASS secret\r\n")
    assert out.endswith(b"-ERR [IN-USE] Mailbox is locked by another POP3 session.\r\n")
    assert conn.state is pop3.State.AUTHORIZATION
    drop.locked = False
    out = run(conn, drop, b"USER bob@example.test\r\nPASS secret\r\n")
    assert out.endswith(b"+OK Logged in.\r\n")


def test_quit_in_authorization() -> None:
    conn = connection()
    drop = FakeMaildrop()
    assert run(conn, drop, b"QUIT\r\nNOOP\r\n") == b"+OK Logging out.\r\n"
    assert drop.decisions == []


@pytest.mark.parametrize(
    "command",
    [b"RETR 0", b"RETR -1", b"RETR 99999999999999999999", b"TOP 1 -5", b"RETR 3", b"DELE x"],
)
def test_bad_numbers_are_errors(command: bytes) -> None:
    conn, drop = logged_in()
    out = run(conn, drop, command + b"\r\n")
    assert out.startswith(b"-ERR ") and out.count(b"\r\n") == 1
    assert conn.state is pop3.State.TRANSACTION


def test_top_huge_line_count_is_refused_without_work() -> None:
    conn, drop = logged_in()
    assert run(conn, drop, b"TOP 1 99999999999\r\n") == b"-ERR Invalid number.\r\n"


def test_message_vanished() -> None:
    conn, drop = logged_in()
    drop.missing.add(3)
    out = run(conn, drop, b"RETR 1\r\nNOOP\r\n")
    assert out == b"-ERR [SYS/TEMP] Message was removed by another session.\r\n+OK Done.\r\n"


def test_capa_before_and_after_login() -> None:
    conn = connection(tls_available=True)
    drop = FakeMaildrop()
    out = run(conn, drop, b"CAPA\r\n")
    assert out == (
        b"+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n"
        b"PIPELINING\r\nUSER\r\nSASL PLAIN\r\nSTLS\r\nIMPLEMENTATION tinymail\r\n.\r\n"
    )
    conn, drop = logged_in()
    out = run(conn, drop, b"CAPA\r\n")
    assert b"USER" not in out and b"STLS" not in out and b"SASL" not in out
    assert out.startswith(b"+OK") and out.endswith(b"IMPLEMENTATION tinymail\r\n.\r\n")


def test_no_plaintext_auth_without_tls() -> None:
    conn = connection(plaintext_auth=False, tls_available=True)
    drop = FakeMaildrop()
    out = run(conn, drop, b"CAPA\r\nUSER bob@example.test\r\nAUTH\r\n")
    assert b"USER\r\n" not in out.split(b".\r\n")[0] and b"SASL" not in out
    assert b"-ERR [AUTH] Plaintext authentication disallowed" in out
    assert out.endswith(b"+OK Supported mechanisms follow\r\n.\r\n")
    assert drop.decisions == []


def test_bare_auth_lists_mechanisms() -> None:
    out = run(connection(), FakeMaildrop(), b"AUTH\r\n")
    assert out == b"+OK Supported mechanisms follow\r\nPLAIN\r\n.\r\n"


def plain(authzid: str, authcid: str, password: str) -> bytes:
    return base64.b64encode(f"{authzid}\0{authcid}\0{password}".encode())


def test_auth_plain_initial_response() -> None:
    conn, drop = connection(), FakeMaildrop()
    out = run(conn, drop, b"AUTH PLAIN " + plain("", "bob@example.test", "secret") + b"\r\n")
    assert out == b"+OK Logged in.\r\n"
    assert drop.decisions[0] == pop3.Authenticate("bob@example.test", "secret", "PLAIN")


def test_auth_plain_continuation_and_cancel() -> None:
    conn, drop = connection(), FakeMaildrop()
    assert run(conn, drop, b"AUTH PLAIN\r\n") == b"+ \r\n"
    assert run(conn, drop, b"*\r\n") == b"-ERR Authentication aborted by client.\r\n"
    assert run(conn, drop, b"AUTH plain\r\n") == b"+ \r\n"
    out = run(conn, drop, plain("bob@example.test", "bob@example.test", "secret") + b"\r\n")
    assert out == b"+OK Logged in.\r\n"


def test_auth_plain_other_authzid_is_refused() -> None:
    conn, drop = connection(), FakeMaildrop()
    out = run(conn, drop, b"AUTH PLAIN " + plain("admin", "bob@example.test", "secret") + b"\r\n")
    assert out == b"-ERR [AUTH] Authentication failed.\r\n"
    assert drop.decisions == []


def test_three_auth_failures_disconnect() -> None:
    conn, drop = connection(), FakeMaildrop()
    attempt = b"USER bob@example.test\r\nPASS wrong\r\n"
    out = run(conn, drop, attempt * 3 + b"NOOP\r\n")
    assert out.count(b"-ERR [AUTH] Authentication failed.\r\n") == 3
    assert conn.state is pop3.State.CLOSED


def test_three_bad_commands_before_login_disconnect() -> None:
    conn = connection()
    out = run(conn, FakeMaildrop(), b"GET / HTTP/1.1\r\nHost: x\r\nSTAT\r\nCAPA\r\n")
    assert out == (
        b"-ERR Unknown command.\r\n-ERR Unknown command.\r\n-ERR Too many bad commands.\r\n"
    )
    assert conn.state is pop3.State.CLOSED


def test_long_line_disconnects() -> None:
    conn = connection()
    out = run(conn, FakeMaildrop(), b"USER " + b"A" * 100_000)
    assert out == b"-ERR Line too long.\r\n"
    assert conn.state is pop3.State.CLOSED


def test_bare_lf_does_not_end_a_command() -> None:
    conn = connection()
    out = run(conn, FakeMaildrop(), b"NOOP\nQUIT\r\n")
    assert out == b"-ERR Invalid characters in command.\r\n"


def test_stls_drops_pipelined_input() -> None:
    conn = connection(tls_available=True, plaintext_auth=False)
    conn.receive_data(b"STLS\r\nCAPA\r\n")
    assert conn.next_event() == pop3.StartTLS()
    assert conn.data_to_send() == b"+OK Begin TLS negotiation now.\r\n"  # research 2.2 T3
    conn.tls_started()
    assert conn.next_event() is pop3.NEED_DATA
    assert conn.data_to_send() == b""
    out = run(conn, FakeMaildrop(), b"CAPA\r\nSTLS\r\nUSER bob@example.test\r\n")
    assert b"STLS" not in out.split(b".\r\n")[0] and b"USER\r\n" in out
    assert b"-ERR TLS already active.\r\n+OK Send your password.\r\n" in out


def test_stls_forgets_user() -> None:
    conn = connection(tls_available=True)
    conn.receive_data(b"USER bob@example.test\r\nSTLS\r\n")
    assert conn.next_event() == pop3.StartTLS()
    conn.tls_started()
    out = run(conn, FakeMaildrop(), b"PASS secret\r\n")
    assert out.endswith(b"-ERR No username given.\r\n")


def test_answering_the_wrong_decision_is_a_local_error() -> None:
    conn = connection()
    with pytest.raises(LocalProtocolError):
        conn.auth_ok("x")
    conn.receive_data(b"USER bob@example.test\r\nPASS secret\r\n")
    assert isinstance(conn.next_event(), pop3.Authenticate)
    with pytest.raises(LocalProtocolError):
        conn.next_event()
    with pytest.raises(LocalProtocolError):
        conn.message(b"")


def test_pipelined_commands_in_one_write() -> None:
    conn, drop = logged_in()
    out = run(conn, drop, b"RETR 2\r\nDELE 2\r\nNOOP\r\nQUIT\r\n")
    assert out.endswith(b"+OK Marked to be deleted.\r\n+OK Done.\r\n+OK Logging out.\r\n")
    assert drop.updates == [(7,)]


def test_timeout_and_shutdown() -> None:
    conn, _ = logged_in()
    conn.timeout()
    assert conn.data_to_send() == b"-ERR Disconnected for inactivity.\r\n"
    assert conn.next_event() is pop3.CLOSED
    conn, _ = logged_in()
    conn.shutdown()
    assert conn.data_to_send() == b"-ERR [SYS/TEMP] Server shutting down.\r\n"
