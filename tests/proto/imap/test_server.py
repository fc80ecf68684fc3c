"""The IMAP core driven directly (no sockets) over a real Maildir in tmp_path."""

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.holding import held_by_another_thread
from tinymail.proto.imap.events import (
    AuthRequest,
    CompressRequest,
    Settings,
    Signal,
    StartTLSRequest,
    State,
)
from tinymail.proto.imap.selected import LIGHT_UPDATES
from tinymail.proto.imap.server import ServerConnection
from tinymail.store.maildir import deliver
from tinymail.store.maildir_folders import MaildirStore

MSG = (
    b"From: Alice <alice@example.test>\nTo: bob@example.test\n"
    b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\n"
    b"Date: Mon, 7 Feb 1994 21:52:25 -0800\nMessage-ID: <1@x>\n\nHello world\nsecond line\n"
)


class Driver:
    def __init__(self, store: MaildirStore | None, config: Settings | None = None) -> None:
        self.store = store
        self.conn = ServerConnection(config or Settings())
        self.greeting = self.conn.greeting()
        self.events: list[object] = []

    def send(self, data: bytes) -> bytes:
        self.conn.receive_data(data)
        out = b""
        for _ in range(1000):
            ev = self.conn.next_event()
            out += self.conn.data_to_send()
            if ev in (Signal.NEED_DATA, Signal.CLOSED):
                return out
            self.events.append(ev)
            if isinstance(ev, AuthRequest):
                ok = ev.username == "bob" and ev.password == "pw"
                self.conn.auth_result(self.store if ok else None)
            elif isinstance(ev, StartTLSRequest):
                self.conn.tls_started()
            elif isinstance(ev, CompressRequest):
                return out  # the caller plays the adapter and calls compress_started()
        raise AssertionError("core did not settle")


@pytest.fixture
def store(tmp_path: Path) -> MaildirStore:
    s = MaildirStore(tmp_path / "Maildir")
    s.ensure_defaults()
    return s


def logged_in(store: MaildirStore) -> Driver:
    d = Driver(store)
    assert b"a OK [CAPABILITY" in d.send(b"a LOGIN bob pw\r\n")
    return d


def test_greeting_and_capabilities() -> None:
    d = Driver(None, Settings(starttls_available=True, plaintext_auth=False))
    assert d.greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 ")
    assert b"STARTTLS" in d.greeting and b"LOGINDISABLED" in d.greeting
    assert b"AUTH=PLAIN" not in d.greeting
    out = d.send(b"a LOGIN bob pw\r\n")
    assert out == b"a NO [PRIVACYREQUIRED] Use STARTTLS first\r\n"
    assert d.send(b"b STARTTLS\r\nc NOOP\r\n") == b"b OK Begin TLS negotiation now\r\n"
    out = d.send(b"d CAPABILITY\r\n")
    assert b"AUTH=PLAIN" in out and b"STARTTLS" not in out and b"LOGINDISABLED" not in out


def test_login_failure_and_lockout(store: MaildirStore) -> None:
    d = Driver(store)
    assert (
        d.send(b"a LOGIN bob nope\r\n") == b"a NO [AUTHENTICATIONFAILED] Authentication failed\r\n"
    )
    d.send(b"b LOGIN bob nope\r\n")
    out = d.send(b"c LOGIN bob nope\r\n")
    assert b"* BYE" in out and d.conn.state is State.LOGOUT


def test_authenticate_plain_with_and_without_ir(store: MaildirStore) -> None:
    import base64

    token = base64.b64encode(b"\0bob\0pw")
    d = Driver(store)
    assert b"a OK" in d.send(b"a AUTHENTICATE PLAIN " + token + b"\r\n")
    d2 = Driver(store)
    assert d2.send(b"a AUTHENTICATE PLAIN\r\n") == b"+ \r\n"
    assert b"a OK" in d2.send(token + b"\r\n")
    d3 = Driver(store)
    d3.send(b"a AUTHENTICATE PLAIN\r\n")
    assert d3.send(b"*\r\n") == b"a BAD Authentication cancelled\r\n"


def test_state_rules(store: MaildirStore) -> None:
    d = Driver(store)
    assert d.send(b"a SELECT INBOX\r\n") == b"a BAD SELECT not allowed now\r\n"
    assert d.send(b"b FOO\r\n") == b"b BAD Unknown command\r\n"
    d = logged_in(store)
    assert d.send(b"c FETCH 1 FLAGS\r\n") == b"c BAD FETCH not allowed now\r\n"
    assert d.send(b"d LOGIN bob pw\r\n") == b"d BAD LOGIN not allowed now\r\n"


def test_literal_limits(store: MaildirStore) -> None:
    d = Driver(store)
    # research I1: no "+" for an oversized synchronizing literal
    assert d.send(b"a LOGIN {4294967295}\r\n") == b"a NO [TOOBIG] Literal too big\r\n"
    assert d.send(b"b LOGIN {3}\r\n") == b"+ Ready for literal data\r\n"
    assert b"b OK" in d.send(b"bob pw\r\n")
    out = d.send(b"c APPEND INBOX {4294967295+}\r\n")
    assert out.startswith(b"* BYE [TOOBIG]") and d.conn.state is State.LOGOUT


def test_select_fetch_store_search(store: MaildirStore) -> None:
    deliver([store.root], MSG)
    deliver([store.root], b"Subject: two\n\nfoo bar\n")
    d = logged_in(store)
    out = d.send(b"s SELECT INBOX\r\n")
    assert b"* 2 EXISTS\r\n" in out and b"* 2 RECENT\r\n" in out
    assert b"[UIDVALIDITY " in out and b"[UIDNEXT 3]" in out and b"[UNSEEN 1]" in out
    assert out.endswith(b"s OK [READ-WRITE] SELECT completed\r\n")
    out = d.send(b"f FETCH 1:* (UID FLAGS RFC822.SIZE)\r\n")
    size = len(MSG.replace(b"\n", b"\r\n"))
    assert f"* 1 FETCH (UID 1 FLAGS (\\Recent) RFC822.SIZE {size})".encode() in out
    out = d.send(b"g FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY[TEXT]<0.5>)\r\n")
    assert (
        b"BODY[HEADER.FIELDS (SUBJECT)] {40}\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\r\n" in out
    )
    assert b"BODY[TEXT]<0> {5}\r\nHello" in out
    assert b"FLAGS (\\Recent \\Seen)" in out  # BODY[] without PEEK sets \Seen
    out = d.send(b"h UID STORE 2 +FLAGS (\\Flagged $Work)\r\n")
    assert b"* 2 FETCH (FLAGS ($Work \\Flagged \\Recent) UID 2)\r\n" in out
    out = d.send(b'i SEARCH CHARSET UTF-8 SUBJECT "GR\xc3\x9c\xc3\x9fe"\r\n')
    assert b"* SEARCH 1\r\n" in out
    assert b"* SEARCH 2\r\n" in d.send(b'j UID SEARCH KEYWORD $Work BODY "FOO"\r\n')
    assert b"* SEARCH 1 2\r\n" in d.send(b"k SEARCH OR SEEN FLAGGED\r\n")
    assert b"* SEARCH 1\r\n" in d.send(b"l SEARCH SENTON 7-Feb-1994\r\n")
    assert b"* SEARCH 2\r\n" in d.send(b"m SEARCH NOT (SEEN)\r\n")
    assert b"m2 BAD" in d.send(b"m2 FETCH 3 FLAGS\r\n")
    assert b"NO [BADCHARSET" in d.send(b"n SEARCH CHARSET KOI8-R ALL\r\n")
    out = d.send(b"o FETCH 1 (ENVELOPE BODYSTRUCTURE INTERNALDATE)\r\n")
    assert b'ENVELOPE ("Mon, 7 Feb 1994 21:52:25 -0800"' in out and b"BODYSTRUCTURE (" in out
    assert re.search(rb'INTERNALDATE "[ \d]\d-\w{3}-\d{4} \d\d:\d\d:\d\d \+0000"', out)


def test_expunge_copy_move_uidplus(store: MaildirStore) -> None:
    for i in range(4):
        deliver([store.root], b"Subject: %d\n\nx\n" % i)
    d = logged_in(store)
    d.send(b"s SELECT INBOX\r\n")
    out = d.send(b"c UID COPY 1:2 Trash\r\n")
    assert re.search(rb"c OK \[COPYUID \d+ 1:2 1:2\] COPY completed", out)
    assert b"NO [TRYCREATE]" in d.send(b"c2 COPY 1 Nowhere\r\n")
    out = d.send(b"m MOVE 3 Archive\r\n")
    assert re.search(rb"\* OK \[COPYUID \d+ 3 1\] Moved\r\n\* 3 EXPUNGE\r\n", out)
    d.send(b"st STORE 1 +FLAGS.SILENT (\\Deleted)\r\n")
    out = d.send(b"e EXPUNGE\r\n")
    assert out == b"* 1 EXPUNGE\r\ne OK EXPUNGE completed\r\n"
    out = d.send(b"f FETCH 1:* UID\r\n")
    assert out == b"* 1 FETCH (UID 2)\r\n* 2 FETCH (UID 4)\r\nf OK FETCH completed\r\n"
    out = d.send(b'a APPEND INBOX (\\Seen) " 7-Feb-1994 21:52:25 -0800" {11}\r\n')
    assert out == b"+ Ready for literal data\r\n"
    out = d.send(b"Subject: y\r\n")
    assert b"* 3 EXISTS" in out and re.search(rb"a OK \[APPENDUID \d+ 5\]", out)
    out = d.send(b"u UID EXPUNGE 4\r\n")
    assert out == b"u OK EXPUNGE completed\r\n"  # UID 4 has no \Deleted


def test_other_sessions_changes_are_reported(store: MaildirStore) -> None:
    deliver([store.root], b"Subject: 1\n\nx\n")
    deliver([store.root], b"Subject: 2\n\nx\n")
    a, b = logged_in(store), logged_in(store)
    out_a = a.send(b"s SELECT INBOX\r\n")
    out_b = b.send(b"s SELECT INBOX\r\n")
    assert b"* 2 RECENT" in out_a and b"* 0 RECENT" in out_b  # \Recent in exactly one session
    b.send(b"x STORE 2 +FLAGS (\\Answered)\r\n")
    assert b"* 2 FETCH (FLAGS (\\Answered \\Recent))\r\n" in a.send(b"n NOOP\r\n")
    b.send(b"y STORE 1 +FLAGS.SILENT (\\Deleted)\r\nz EXPUNGE\r\n")
    deliver([store.root], b"Subject: 3\n\nx\n")
    out = a.send(b"f FETCH 1:* UID\r\n")  # no EXPUNGE during FETCH
    assert b"EXPUNGE" not in out and b"* 3 EXISTS" in out
    out = a.send(b"n2 NOOP\r\n")
    assert b"* 1 EXPUNGE\r\n" in out
    assert b"* 1 FETCH (UID 2)\r\n* 2 FETCH (UID 3)\r\n" in a.send(b"f2 FETCH 1:* UID\r\n")


def test_idle(store: MaildirStore) -> None:
    d = logged_in(store)
    d.send(b"s SELECT INBOX\r\n")
    assert d.send(b"i IDLE\r\n") == b"+ idling\r\n" and d.conn.idling
    deliver([store.root], b"Subject: new\n\nx\n")
    d.conn.idle_poll()
    assert b"* 1 EXISTS\r\n" in d.conn.data_to_send()
    assert d.send(b"DONE\r\n") == b"i OK IDLE terminated\r\n"


def test_list_lsub_status_namespace(store: MaildirStore) -> None:
    d = logged_in(store)
    d.send(b"c CREATE Work.Projects\r\nc2 CREATE Entw&APw-rfe\r\n")
    out = d.send(b'l LIST "" "*"\r\n')
    assert b'* LIST (\\HasNoChildren \\Sent) "." "Sent"\r\n' in out
    assert b'* LIST (\\HasChildren) "." "Work"\r\n' in out
    assert b'"Entw&APw-rfe"' in out
    out = d.send(b'l2 LIST "" %\r\n')
    assert b"Work.Projects" not in out and b'"Work"' in out
    out = d.send(b'l3 LIST (SPECIAL-USE) "" "*" RETURN (SUBSCRIBED STATUS (MESSAGES UIDNEXT))\r\n')
    assert (
        b'* LIST (\\HasNoChildren \\Subscribed \\Trash) "." "Trash"\r\n'
        b'* STATUS "Trash" (MESSAGES 0 UIDNEXT 1)\r\n' in out
    )
    assert b'"INBOX"' not in out
    assert b'* LIST (\\Noselect) "." ""' in d.send(b'l4 LIST "" ""\r\n')
    out = d.send(b'ls LSUB "" "*"\r\n')
    assert b'* LSUB () "." "Drafts"' in out and b"Work" not in out
    assert b'* NAMESPACE (("" ".")) NIL NIL' in d.send(b"n NAMESPACE\r\n")
    out = d.send(b"st STATUS INBOX (MESSAGES UNSEEN UIDVALIDITY)\r\n")
    assert re.search(rb'\* STATUS "INBOX" \(MESSAGES 0 UNSEEN 0 UIDVALIDITY \d+\)', out)
    assert b"NO [NONEXISTENT]" in d.send(b"x SELECT Nope\r\n")
    assert b"x2 NO" in d.send(b'x2 CREATE "../etc"\r\n')
    assert b"x3 BAD" in d.send(b'x3 CREATE "&Jjo"\r\n')
    assert b"* ENABLED\r\n" in d.send(b"e ENABLE CONDSTORE\r\n")
    assert b"r OK" in d.send(b"r RENAME Work Job\r\n")
    assert b'"Job.Projects"' in d.send(b'l5 LIST "" "Job*"\r\n')


def test_partial_fetch_is_exact(store: MaildirStore) -> None:
    body = b"Subject: p\n\n" + b"0123456789" * 10 + b"\n"
    deliver([store.root], body)
    d = logged_in(store)
    d.send(b"e EXAMINE INBOX\r\n")
    served = body.replace(b"\n", b"\r\n")
    out = d.send(b"f FETCH 1 BODY.PEEK[]<10.20>\r\n")
    assert b"BODY[]<10> {20}\r\n" + served[10:30] + b")" in out
    out = d.send(b"g FETCH 1 BODY.PEEK[]<1000.20>\r\n")
    assert b"BODY[]<1000> {0}\r\n)" in out
    assert b"READ-ONLY" in d.send(b"s STORE 1 +FLAGS (\\Seen)\r\n")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=120))
def test_garbage_never_crashes(data: bytes) -> None:
    d = Driver(None)
    d.send(data + b"\r\n")
    assert d.conn.state in (State.NOT_AUTHENTICATED, State.LOGOUT)


def test_compress_negotiation(store: MaildirStore) -> None:
    d = Driver(store, Settings(compress_available=True))
    assert b"COMPRESS=DEFLATE" in d.greeting
    d.send(b"a LOGIN bob pw\r\n")
    # RFC 4978 3: nothing may be pipelined behind COMPRESS
    assert b"b NO [CANNOT]" in d.send(b"b COMPRESS DEFLATE\r\nc NOOP\r\n")
    out = d.send(b"e COMPRESS DEFLATE\r\n")
    assert out == b"e OK DEFLATE active\r\n"
    assert isinstance(d.events[-1], CompressRequest)
    d.conn.compress_started()
    assert b"NO [COMPRESSIONACTIVE]" in d.send(b"f COMPRESS DEFLATE\r\n")
    plain = Driver(store)
    plain.send(b"a LOGIN bob pw\r\n")
    assert b"COMPRESS" not in plain.greeting
    assert b"a2 NO [CANNOT]" in plain.send(b"a2 COMPRESS DEFLATE\r\n")


def test_selected_mailbox_deleted_by_other_session(store: MaildirStore) -> None:
    a, b = logged_in(store), logged_in(store)
    a.send(b"c CREATE Tmp\r\ns SELECT Tmp\r\n")
    assert b"d OK" in b.send(b"d DELETE Tmp\r\n")
    out = a.send(b"n NOOP\r\n")
    assert out.startswith(b"* BYE [UNAVAILABLE]") and a.conn.state is State.LOGOUT


def test_auth_unavailable() -> None:
    d = Driver(None)
    d.conn.receive_data(b"a LOGIN bob pw\r\n")
    assert isinstance(d.conn.next_event(), AuthRequest)
    d.conn.auth_unavailable("Mailbox unavailable")
    assert d.conn.data_to_send() == b"a NO [UNAVAILABLE] Mailbox unavailable\r\n"
    assert d.conn.state is State.NOT_AUTHENTICATED


def test_list_extended_subscribed_and_recursivematch(store: MaildirStore) -> None:
    d = logged_in(store)
    d.send(b"c CREATE Lists.tinymail\r\nu SUBSCRIBE Lists.tinymail\r\nv SUBSCRIBE Gone\r\n")
    out = d.send(b'l LIST (SUBSCRIBED) "" "*"\r\n')
    assert b'* LIST (\\NonExistent \\HasNoChildren \\Subscribed) "." "Gone"\r\n' in out
    assert b'"Lists"' not in out and b'"Lists.tinymail"' in out
    out = d.send(b'l2 LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"\r\n')
    assert b'* LIST (\\HasChildren) "." "Lists" ("CHILDINFO" ("SUBSCRIBED"))\r\n' in out
    assert b'"Lists.tinymail"' not in out
    assert b"l3 BAD" in d.send(b'l3 LIST (RECURSIVEMATCH) "" "*"\r\n')
    assert b"l4 BAD" in d.send(b'l4 LIST (BOGUS) "" "*"\r\n')
    assert b"l5 BAD" in d.send(b'l5 LIST "" "*" RETURN (BOGUS)\r\n')
    out = d.send(b'l6 LIST "" ("Sent" "Trash") RETURN (CHILDREN)\r\n')
    assert out.count(b"* LIST") == 2


def test_output_sink_streams_big_responses(store: MaildirStore) -> None:
    for i in range(3):
        deliver([store.root], b"Subject: %d\n\n" % i + b"x" * 200_000 + b"\n")
    d = logged_in(store)
    d.send(b"s EXAMINE INBOX\r\n")
    chunks: list[bytes] = []
    d.conn.output_sink = chunks.append
    rest = d.send(b"f FETCH 1:* BODY.PEEK[]\r\n")
    assert chunks and all(len(c) >= 256 * 1024 for c in chunks)  # streamed, not piled up
    whole = b"".join(chunks) + rest
    assert whole.count(b"* ") == 3 and whole.endswith(b"f OK FETCH completed\r\n")


def test_light_commands_run_one_at_a_time(store: MaildirStore) -> None:
    deliver([store.root], MSG)
    deliver([store.root], b"Subject: big\n\n" + b"x" * 200_000 + b"\n")
    d = logged_in(store)
    d.conn.receive_data(b"n NOOP\r\n")
    assert d.conn.next_light_event() is Signal.NEED_DATA  # no mailbox to look at
    assert d.conn.data_to_send() == b"n OK NOOP completed\r\n"
    d.send(b"s SELECT INBOX\r\n")  # delivered names carry ,W=: sizes known without a read
    d.send(b"n NOOP\r\n")  # SELECT wrote the uidlist: the first sync after it rescans
    for line in (
        b"f FETCH 2 BODY.PEEK[]",  # too big for the event loop
        b"f FETCH 3 BODY.PEEK[]",  # no such message: the worker answers BAD
        b"f UID FETCH 7 BODY.PEEK[]",
        b"f FETCH 1:2 FLAGS",
        b"f FETCH 1 {5}",
    ):
        d.conn.receive_data(line + b"\r\n")
        assert d.conn.next_light_event() is None, line
        assert d.conn.reader.peek_line() == line  # nothing was consumed
        d.conn.reader.clear()
    chunks: list[bytes] = []
    d.conn.output_sink = chunks.append
    d.conn.receive_data(b"f UID FETCH 1 BODY.PEEK[]\r\ng NOOP\r\n")
    assert d.conn.next_light_event() is Signal.MORE  # one command, the NOOP still waits
    out = d.conn.data_to_send()
    assert b"Hello world" in out and out.endswith(b"f OK FETCH completed\r\n") and not chunks
    assert d.conn.output_sink is not None  # restored for the worker thread
    assert b"g OK" in d.send(b"")
    d.conn.receive_data(b"h FETCH 1 (FLAGS BODY.PEEK[HEADER])\r\n")
    assert d.conn.next_light_event() is Signal.NEED_DATA
    d.conn.receive_data(b"x LOGOUT\r\n")
    assert d.conn.next_light_event() is Signal.CLOSED
    assert b"* BYE" in d.conn.data_to_send()


def test_noop_runs_on_the_loop_only_in_a_quiet_folder(store: MaildirStore) -> None:
    """A NOOP in the selected folder is light when nothing changed on disk since the last
    scan and nothing waits in new/ to be claimed; otherwise a worker rescans and claims."""
    deliver([store.root], MSG)
    d = logged_in(store)
    d.send(b"s SELECT INBOX\r\nn NOOP\r\n")
    d.conn.receive_data(b"n NOOP\r\n")
    assert d.conn.next_light_event() is Signal.NEED_DATA
    assert d.conn.data_to_send() == b"n OK NOOP completed\r\n"
    deliver([store.root], MSG)
    d.conn.receive_data(b"n NOOP\r\n")
    assert d.conn.next_light_event() is None  # new/ changed: a worker lists it
    out = d.send(b"")
    assert b"* 2 EXISTS\r\n* 2 RECENT\r\n" in out  # message 1 is still recent here
    deliver([store.root], MSG)
    other = logged_in(store)
    assert b"* 3 EXISTS" in other.send(b"e EXAMINE INBOX\r\n")  # scans, claims nothing
    d.conn.receive_data(b"n NOOP\r\n")
    assert d.conn.next_light_event() is None  # message 3 waits to be claimed
    out = d.send(b"")
    assert b"* 3 EXISTS\r\n* 3 RECENT\r\n" in out
    with held_by_another_thread(store.open("INBOX")):
        d.conn.receive_data(b"n NOOP\r\n")
        assert d.conn.next_light_event() is None  # would wait
    assert d.conn.next_light_event() is Signal.NEED_DATA


def test_light_noop_reports_little_and_leaves_the_rest_to_a_worker(store: MaildirStore) -> None:
    """On the loop a NOOP reports at most LIGHT_UPDATES flag changes of other sessions in
    this process; more changes, or a message expunged here, go to a worker thread."""
    for _ in range(LIGHT_UPDATES + 6):
        deliver([store.root], MSG)
    fresh = Driver(store)
    fresh.conn.receive_data(b"n NOOP\r\n")
    assert fresh.conn.next_light_event() is None  # not logged in: never on the loop
    d, other = logged_in(store), logged_in(store)
    d.send(b"s SELECT INBOX\r\nn NOOP\r\n")
    other.send(b"s SELECT INBOX\r\n")
    other.send(b"f STORE 1:2 +FLAGS (\\Flagged)\r\n")
    d.conn.receive_data(b"n NOOP\r\n")
    assert d.conn.next_light_event() is Signal.NEED_DATA
    out = d.conn.data_to_send()
    assert out.count(b"\\Flagged") == 2 and out.endswith(b"n OK NOOP completed\r\n")
    other.send(b"f STORE 1:%d +FLAGS (\\Seen)\r\n" % (LIGHT_UPDATES + 1))
    d.conn.receive_data(b"n NOOP\r\n")
    assert d.conn.next_light_event() is None  # too many FETCH lines for the loop
    assert d.send(b"").count(b"\\Seen") == LIGHT_UPDATES + 1
    other.send(b"f STORE 3 +FLAGS (\\Deleted)\r\ne EXPUNGE\r\n")
    d.conn.receive_data(b"n NOOP\r\n")
    assert d.conn.next_light_event() is None  # a message went: the worker renumbers
    assert b"* 3 EXPUNGE\r\n" in d.send(b"")
    d.conn.receive_data(b"n NOOP\r\n")
    assert d.conn.next_light_event() is Signal.NEED_DATA  # caught up: light again


def test_light_fetch_never_waits_for_the_folder(store: MaildirStore) -> None:
    """The event loop runs a small FETCH only when it can hold the folder at once: not while
    another thread holds it, not when the folder changed on disk (that needs a rescan)."""
    deliver([store.root], MSG)
    d = logged_in(store)
    d.send(b"s SELECT INBOX\r\nn NOOP\r\n")
    folder = store.open("INBOX")
    fetch = b"f UID FETCH 1 BODY.PEEK[]\r\n"
    with held_by_another_thread(folder):
        d.conn.receive_data(fetch)
        assert d.conn.next_light_event() is None  # would wait: left to a worker thread
    assert d.conn.next_light_event() is Signal.NEED_DATA  # free again: runs on the loop
    assert b"Hello world" in d.conn.data_to_send()
    deliver([store.root], MSG)  # new/ changed: the next sync must list the folder
    d.conn.receive_data(fetch)
    assert d.conn.next_light_event() is None
    out = d.send(b"")
    assert b"* 2 EXISTS" in out and b"Hello world" in out
