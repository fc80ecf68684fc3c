"""IMAP4rev1 server core (RFC 3501), sans-I/O.

Rules / theory:
- States (RFC 3501 3): not authenticated -> authenticated -> selected, and
  logout from anywhere. Each command lists the states it is valid in
  (commands.HANDLERS); any other state gets a tagged BAD.
- Bytes in (receive_data), bytes out (data_to_send), and events for the
  decisions the core cannot make: AuthRequest (the adapter checks the users
  file and answers auth_result with the user's MailStore or None) and
  StartTLSRequest (the adapter wraps the stream, then calls tls_started).
- Mailbox work is plain calls on the Mailbox/MailStore objects; they block on
  files, so the adapter runs next_event() and idle_poll() in a worker thread.
- A synchronizing literal over the limit is answered with a tagged NO before
  any of it is read; a non-synchronizing one ends the session (RFC 7888 4).
- After every command in the selected state the client hears what other
  sessions changed, before the tagged reply (RFC 3501 5.2, 7.4.1).
"""

from __future__ import annotations

from collections.abc import Callable

from tinymail.proto import sasl
from tinymail.proto.imap import commands, fetch, listing
from tinymail.proto.imap.args import Bad
from tinymail.proto.imap.events import (
    AuthRequest,
    CompressRequest,
    Event,
    Settings,
    Signal,
    StartTLSRequest,
    State,
)
from tinymail.proto.imap.parse import Command, ParseError, parse_command
from tinymail.proto.imap.reader import (
    NEED_DATA,
    CommandReader,
    ContinuationNeeded,
    Limits,
    RawLine,
    Refused,
)
from tinymail.proto.imap.search import SearchSyntaxError
from tinymail.proto.imap.selected import BadSequence, Selection
from tinymail.store.mailbox import MailboxError, MailStore

PREAUTH_LIMITS = Limits(line=8192, literal=8192, command=16384, append=0)
MAX_AUTH_FAILURES = 3
MAX_ERRORS = 20
FLUSH_AT = 256 * 1024
LIGHT_MESSAGE = 128 * 1024  # a FETCH of one message this small may run on the event loop
_BASE_CAPS = (
    "IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE NAMESPACE UIDPLUS MOVE UNSELECT CHILDREN "
    "SPECIAL-USE LIST-EXTENDED LIST-STATUS"
)
_SYNTAX_ERRORS = (
    Bad,
    BadSequence,
    fetch.FetchSyntaxError,
    SearchSyntaxError,
    listing.ListSyntaxError,
)


class ServerConnection:
    """One IMAP session's protocol state."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state = State.NOT_AUTHENTICATED
        self.reader = CommandReader(PREAUTH_LIMITS)
        self.tls = settings.tls_active
        self.plaintext_ok = settings.plaintext_auth or settings.tls_active
        self.store: MailStore | None = None
        self.selection: Selection | None = None
        self.idle_tag: str | None = None
        self.compressed = False
        # Optional: called with queued output once it passes FLUSH_AT bytes, so a FETCH of
        # 100,000 messages streams out instead of piling up (the adapter sends it).
        self.output_sink: Callable[[bytes], None] | None = None
        self._out = bytearray()
        self._waiting: str | None = None  # tag of a command waiting for the adapter
        self._sasl: sasl.ServerExchange | None = None
        self._sasl_tag = ""
        self._auth_failures = 0
        self._errors = 0

    # -- adapter API ----------------------------------------------------------------------

    def capabilities(self) -> str:
        """The CAPABILITY list for the current state; only what is implemented."""
        caps = [_BASE_CAPS, f"APPENDLIMIT={self.settings.append_limit}"]
        if self.settings.compress_available and not self.compressed:
            caps.append("COMPRESS=DEFLATE")  # RFC 4978
        if self.state is State.NOT_AUTHENTICATED:
            if self.settings.starttls_available and not self.tls:
                caps.append("STARTTLS")
            # RFC 3501 6.2.3 / RFC 2595 3.2: no plaintext login on an unprotected link
            caps.append("AUTH=PLAIN AUTH=LOGIN" if self.plaintext_ok else "LOGINDISABLED")
        return " ".join(caps)

    def greeting(self) -> bytes:
        """The server greeting (RFC 3501 7.1.1), with capabilities to save a round trip."""
        return f"* OK [CAPABILITY {self.capabilities()}] tinymail IMAP ready\r\n".encode()

    def receive_data(self, data: bytes) -> None:
        """Bytes from the client."""
        self.reader.receive(data)

    def data_to_send(self) -> bytes:
        """Bytes for the client, emptied on each call."""
        out = bytes(self._out)
        self._out.clear()
        return out

    @property
    def idling(self) -> bool:
        """True between IDLE and DONE (RFC 2177): call idle_poll() now and then."""
        return self.idle_tag is not None

    def auth_result(self, store: MailStore | None) -> None:
        """Answer an AuthRequest: the user's store, or None when the credentials are wrong."""
        tag = self._take_waiting()
        if store is None:
            self.auth_failed(tag)
            return
        self.store = store
        self.state = State.AUTHENTICATED
        self.reader.limits = Limits(append=self.settings.append_limit)
        self.tagged(tag, "OK", "Logged in", f"CAPABILITY {self.capabilities()}")

    def auth_unavailable(self, reason: str) -> None:
        """Answer an AuthRequest whose credentials were right but whose mail cannot be opened."""
        self.tagged(self._take_waiting(), "NO", reason, "UNAVAILABLE")

    def tls_started(self) -> None:
        """The stream is TLS now (RFC 3501 6.2.1): plaintext login becomes allowed."""
        self._take_waiting()
        self.tls = True
        self.plaintext_ok = True

    def compress_started(self) -> None:
        """Both directions are deflated from now on (RFC 4978)."""
        self._take_waiting()
        self.compressed = True

    def idle_poll(self) -> None:
        """While idling: queue untagged updates about the selected mailbox."""
        if self.idle_tag is not None:
            self.send_updates(allow_expunge=True)

    def next_light_event(self) -> Event | None:
        """Process the next command now if it is light, else return None (nothing read).

        Light: LOGOUT; NOOP, outside a mailbox or in one the calling thread can hold without
        waiting and where little is due to be reported (no other thread in it, nothing new
        on disk or waiting to be claimed as \\Recent, few flag changes: Selection.hold_quiet);
        a FETCH of one message of at most LIGHT_MESSAGE octets whose size the store knows, in
        such a mailbox (Selection.hold_if_small). The adapter runs such a command on its
        event loop, where a worker-thread round trip would cost more than the command;
        everything else goes to next_event in a worker.
        Returns after that one command: Signal.MORE when input is left, else what the next
        round would surely give; all output stays queued for data_to_send (the output sink
        is for worker threads)."""
        words = self._light_words()
        if words is None:
            return None
        held = None
        if not self._needs_no_mailbox(words):
            held = self._hold_for_light(words)
            if held is None:
                return None
        sink, self.output_sink = self.output_sink, None
        try:
            return self._next_event(True)
        finally:
            self.output_sink = sink
            if held is not None:
                held.release()

    def _light_words(self) -> list[bytes] | None:
        if self.state is State.NOT_AUTHENTICATED or self._sasl is not None or self.idle_tag:
            return None
        line = self.reader.peek_line()
        if line is None or line.endswith(b"}"):
            return None
        return line.split(b" ", 4)

    def _needs_no_mailbox(self, words: list[bytes]) -> bool:
        if len(words) != 2:
            return False
        name = words[1].upper()
        return name == b"LOGOUT" or (name == b"NOOP" and self.state is State.AUTHENTICATED)

    def _hold_for_light(self, words: list[bytes]) -> Selection | None:
        selection = self.selection
        if self.state is not State.SELECTED or selection is None:
            return None
        name = words[1].upper() if len(words) > 1 else b""
        if name == b"NOOP" and len(words) == 2:
            return selection if selection.hold_quiet() else None
        by_uid = name == b"UID"
        if by_uid:
            words = words[1:]
            name = words[1].upper() if len(words) > 1 else b""
        if name != b"FETCH" or len(words) < 4 or not words[2].isdigit():
            return None
        return selection if selection.hold_if_small(int(words[2]), by_uid, LIGHT_MESSAGE) else None

    def next_event(self) -> Event:
        """Process buffered input until an event needs the adapter."""
        return self._next_event(False)

    def _next_event(self, one: bool) -> Event:
        while True:
            if self.state is State.LOGOUT:
                return Signal.CLOSED
            if self._waiting is not None:
                raise RuntimeError("the adapter must answer the pending request first")
            raw_mode = self._sasl is not None or self.idle_tag is not None
            ev = self.reader.next_event(raw=raw_mode)
            if ev is NEED_DATA:
                return Signal.NEED_DATA
            if isinstance(ev, ContinuationNeeded):
                self.send(b"+ Ready for literal data\r\n")  # RFC 3501 7.5
                continue
            if isinstance(ev, Refused):
                if ev.fatal:
                    self.bye("Literal too big", "TOOBIG")  # RFC 7888 4
                else:
                    self.tagged(ev.tag, "NO" if ev.tag != "*" else "BAD", ev.reason, "TOOBIG")
                    self._count_error()
                continue
            if isinstance(ev, RawLine):
                result = self._raw_line(ev.line)
            else:
                try:
                    cmd = parse_command(ev)
                except ParseError as exc:
                    self.tagged(exc.tag, "BAD", exc.message)
                    self._count_error()
                    continue
                result = self._dispatch(cmd)
            if result is not None:
                return result
            if one:
                if self._logged_out():  # the command changed the state
                    return Signal.CLOSED
                return Signal.MORE if self.reader.buffered() else Signal.NEED_DATA

    # -- helpers for the command handlers ---------------------------------------------

    def send(self, data: bytes) -> None:
        """Queue raw response bytes (handed to output_sink early when they pile up)."""
        self._out += data
        if self.output_sink is not None and len(self._out) >= FLUSH_AT:
            self.output_sink(self.data_to_send())

    def tagged(self, tag: str, status: str, text: str, code: str = "") -> None:
        """Queue `tag STATUS [CODE] text`."""
        code_part = f"[{code}] " if code else ""
        self._out += f"{tag} {status} {code_part}{text}\r\n".encode()

    def bye(self, text: str, code: str = "") -> None:
        """Queue `* BYE` and end the session."""
        code_part = f"[{code}] " if code else ""
        self._out += f"* BYE {code_part}{text}\r\n".encode()
        self.state = State.LOGOUT

    def wait_for_adapter(self, tag: str) -> None:
        """The command with `tag` finishes when the adapter answers an event."""
        self._waiting = tag

    def auth_failed(self, tag: str) -> None:
        """Refuse a login; too many failures end the session."""
        self._auth_failures += 1
        self.tagged(tag, "NO", "Authentication failed", "AUTHENTICATIONFAILED")
        if self._auth_failures >= MAX_AUTH_FAILURES:
            self.bye("Too many authentication failures")

    def start_sasl(self, tag: str, mechanism: str, initial: bytes | None) -> Event | None:
        """Begin AUTHENTICATE (RFC 3501 6.2.2, SASL-IR RFC 4959)."""
        return self._sasl_step(tag, sasl.ServerExchange(mechanism), initial, initial=True)

    def send_updates(self, allow_expunge: bool) -> None:
        """Queue what other sessions changed in the selected mailbox."""
        if self.selection is not None and self.state is State.SELECTED:
            try:
                lines = self.selection.updates(allow_expunge)
            except MailboxError as exc:
                if exc.code != "NONEXISTENT":
                    raise
                # Deleted under us by another session: nothing sensible is left to say.
                self.bye("Selected mailbox was deleted, have to disconnect", "UNAVAILABLE")
                return
            for line in lines:
                self.send(line)

    def require_store(self) -> MailStore:
        """The logged-in user's store."""
        if self.store is None:
            raise RuntimeError("no store in authenticated state")
        return self.store

    def require_selection(self) -> Selection:
        """The selected mailbox."""
        if self.selection is None:
            raise RuntimeError("no selection in selected state")
        return self.selection

    # -- internals -----------------------------------------------------------------------

    def _logged_out(self) -> bool:
        return self.state is State.LOGOUT

    def _count_error(self) -> None:
        self._errors += 1
        if self._errors >= MAX_ERRORS:
            self.bye("Too many errors")

    def _take_waiting(self) -> str:
        if self._waiting is None:
            raise RuntimeError("no request is pending")
        tag, self._waiting = self._waiting, None
        return tag

    def _dispatch(self, cmd: Command) -> Event | None:
        handler = commands.HANDLERS.get((cmd.name, cmd.uid))
        if handler is None:
            self.tagged(cmd.tag, "BAD", "Unknown command")
            self._count_error()
            return None
        func, states = handler
        if self.state not in states:
            self.tagged(cmd.tag, "BAD", f"{cmd.name} not allowed now")
            self._count_error()
            return None
        try:
            return func(self, cmd)
        except _SYNTAX_ERRORS as exc:
            self.tagged(cmd.tag, "BAD", str(exc))
            self._count_error()
        except MailboxError as exc:
            self.tagged(cmd.tag, "NO", exc.message, exc.code)
        except OSError:
            self.tagged(cmd.tag, "NO", "Internal error, try again later", "UNAVAILABLE")
        return None

    def _raw_line(self, line: bytes) -> Event | None:
        if self.idle_tag is not None:
            tag, self.idle_tag = self.idle_tag, None
            if line.upper() == b"DONE":  # RFC 2177 3
                self.send_updates(allow_expunge=True)
                self.tagged(tag, "OK", "IDLE terminated")
            else:
                self.tagged(tag, "BAD", "Expected DONE")
            return None
        exchange, self._sasl = self._sasl, None
        if exchange is None:
            raise RuntimeError("raw line outside IDLE and AUTHENTICATE")
        return self._sasl_step(self._sasl_tag, exchange, line, initial=False)

    def _sasl_step(
        self, tag: str, exchange: sasl.ServerExchange, data: bytes | None, initial: bool
    ) -> Event | None:
        try:
            result = exchange.start(data) if initial else exchange.step(data or b"")
        except sasl.SaslCancelled:
            self.tagged(tag, "BAD", "Authentication cancelled")  # RFC 3501 6.2.2
            return None
        except sasl.SaslError:
            self.auth_failed(tag)
            return None
        if isinstance(result, sasl.Challenge):
            self._sasl, self._sasl_tag = exchange, tag
            self.send(b"+ " + result.data.encode() + b"\r\n")
            return None
        self._waiting = tag
        return AuthRequest(result.authcid, result.password, result.mechanism)


__all__ = [
    "AuthRequest",
    "CompressRequest",
    "Event",
    "ServerConnection",
    "Settings",
    "Signal",
    "StartTLSRequest",
    "State",
]
