"""The sans-I/O POP3 server core (RFC 1939, RFC 2449 CAPA, RFC 5034 AUTH, RFC 2595 STLS).

Rules / theory:
- States AUTHORIZATION -> TRANSACTION -> UPDATE (RFC 1939 §3). Deletions are only marks until
  QUIT in TRANSACTION; a dropped connection deletes nothing (§6, research 2.8 P4).
- Bytes in (``receive_data``), replies out (``data_to_send``). What the core cannot decide alone
  (password, maildrop lock and listing, message bytes, expunge, TLS) is a decision event from
  ``next_event``; the adapter settles it with the answer method named in ``events``. Commands
  are handled one at a time, so pipelined commands (RFC 2449 §6.6) wait behind a decision.
- Peer input never raises: every malformed line becomes ``-ERR`` (a ``RemoteProtocolError``
  converted at one place), too many of them or an overlong line end the session (research 2.8
  P1, P5; Dovecot: 3 bad commands before login, 20 after).
- The login ``+OK`` does not wait for the listing (Dovecot sends "+OK Logged in." and then reads
  the mailbox): ``maildrop_locked`` answers the lock, then ``ListMaildrop`` is handed out before
  any later command is parsed, so the listing is still the maildrop as of login (RFC 1939 §4) and
  a slow listing delays the first command, not the login.
- After STLS the unread input is dropped (CVE-2011-0411, research 2.2 T3) and the USER name
  forgotten (RFC 2595 §4: no state from before TLS).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

from tinymail.proto import sasl
from tinymail.proto.errors import LocalProtocolError, RemoteProtocolError
from tinymail.proto.lines import LINE_TOO_LONG, LineBuffer
from tinymail.proto.pop3 import content
from tinymail.proto.pop3.events import (
    CLOSED,
    NEED_DATA,
    Authenticate,
    Decision,
    FetchMessage,
    Listing,
    ListMaildrop,
    OpenMaildrop,
    Sentinel,
    StartTLS,
    Update,
)


class State(Enum):
    """RFC 1939 §3 session states, plus CLOSED once the session is over."""

    AUTHORIZATION = "AUTHORIZATION"
    TRANSACTION = "TRANSACTION"
    UPDATE = "UPDATE"
    CLOSED = "CLOSED"


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-session limits; the defaults follow Dovecot (research 2.8, section 4)."""

    max_line: int = 2048  # RFC 2449 §4 needs >= 255; Dovecot caps input at 4 * 512
    max_bad_commands_preauth: int = 3
    max_bad_commands: int = 20
    max_auth_failures: int = 3


@dataclass(frozen=True, slots=True)
class Reply:
    """A single-line status answer (RFC 1939 §3), with an optional RFC 2449 §8 response code."""

    ok: bool
    text: str
    code: str = ""

    def to_bytes(self) -> bytes:
        """The status line as sent."""
        status = "+OK" if self.ok else "-ERR"
        code = f"[{self.code}] " if self.code else ""
        return f"{status} {code}{self.text}\r\n".encode()


IMPLEMENTATION = "tinymail"
_T = TypeVar("_T")
_Render = Callable[[int, int], bytes]  # message number, index -> one LIST or UIDL line
_EMPTY = Listing(0, (), ())
_MAX_NUMBER_DIGITS = 10  # message numbers and TOP line counts; longer is -ERR, not a huge int


class ServerConnection:
    """One POP3 session's protocol state."""

    def __init__(
        self,
        *,
        hostname: str,
        limits: Limits = Limits(),
        tls_available: bool = False,
        tls_active: bool = False,
        plaintext_auth: bool = False,
    ) -> None:
        """``plaintext_auth``: USER/PASS and AUTH PLAIN are allowed without TLS (loopback)."""
        self.hostname = hostname
        self.limits = limits
        self.state = State.AUTHORIZATION
        self.tls_available = tls_available
        self.tls_active = tls_active
        self.owner: str | None = None
        self._plaintext_auth = plaintext_auth
        self._lines = LineBuffer(limits.max_line)
        self._out: list[bytes] = []  # chunks: a message is queued without being copied
        self._eof = False
        self._user: str | None = None  # name from USER, waiting for PASS
        self._sasl_plain = False  # "AUTH PLAIN" sent without initial response: "+ " is out
        self._pending: Decision | None = None  # decision handed out, not yet answered
        self._queued: Decision | None = None  # decision made by the last line, not yet handed out
        self._bad = 0
        self._auth_failures = 0
        self._listing = _EMPTY
        self._total = 0  # octets of the whole listing (STAT without deletions)
        self._deleted: set[int] = set()  # 1-based message numbers marked by DELE
        self._rendered: dict[str, bytes] = {}  # full LIST / UIDL answers while nothing is deleted

    # ---- adapter-facing I/O -------------------------------------------------------------------

    def greeting(self) -> bytes:
        """The opening ``+OK`` (RFC 1939 §4)."""
        return Reply(True, f"{self.hostname} {IMPLEMENTATION} POP3 ready.").to_bytes()

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the peer; ``b""`` means the peer closed its side."""
        if data:
            self._lines.feed(data)
        else:
            self._eof = True

    def data_to_send(self) -> bytes:
        """Return and forget the replies produced so far."""
        out = b"".join(self._out)
        self._out.clear()
        return out

    def next_event(self) -> Decision | Sentinel:
        """Process buffered lines until a decision is needed, more data is needed, or the end."""
        if self._pending is not None:
            raise LocalProtocolError(f"{self._pending!r} has not been answered")
        while self.state is not State.CLOSED:
            if self._queued is not None:
                self._pending, self._queued = self._queued, None
                return self._pending
            line = self._lines.next_line()
            if line is None:
                if self._eof:
                    self.state = State.CLOSED  # no QUIT: nothing is deleted (RFC 1939 §6)
                    break
                return NEED_DATA
            if line is LINE_TOO_LONG:
                self._close(Reply(False, "Line too long."))
                break
            try:
                self._dispatch(line)
            except RemoteProtocolError as exc:
                self._answer_error(exc)
        return CLOSED

    def timeout(self) -> None:
        """The adapter's idle deadline passed: say so and end the session (nothing deleted)."""
        self._close(Reply(False, "Disconnected for inactivity."))

    def shutdown(self) -> None:
        """The server is stopping: tell the client to come back (nothing deleted)."""
        self._close(Reply(False, "Server shutting down.", "SYS/TEMP"))

    # ---- answers to decisions ---------------------------------------------------------------

    def auth_ok(self, owner: str) -> None:
        """The password is right for ``owner``: next comes ``OpenMaildrop``."""
        self._settle(Authenticate)
        self._queued = OpenMaildrop(owner)

    def auth_failed(self, *, temporary: bool = False) -> None:
        """Wrong credentials (``[AUTH]``) or a failed user database (``[SYS/TEMP]``, RFC 3206)."""
        self._settle(Authenticate)
        if temporary:
            self._reply(Reply(False, "Temporary authentication failure.", "SYS/TEMP"))
        else:
            self._count_auth_failure()

    def _count_auth_failure(self) -> None:
        self._auth_failures += 1
        reply = Reply(False, "Authentication failed.", "AUTH")
        if self._auth_failures >= self.limits.max_auth_failures:
            self._close(reply)  # research 2.5 A6
        else:
            self._reply(reply)

    def maildrop_locked(self) -> None:
        """The maildrop is locked: ``+OK``, TRANSACTION, and ``ListMaildrop`` comes next."""
        request = self._settle(OpenMaildrop)
        self._enter_transaction(request.owner, _EMPTY)
        self._reply(Reply(True, "Logged in."))
        self._queued = ListMaildrop(request.owner)

    def maildrop_listed(self, listing: Listing) -> None:
        """The listing of the maildrop locked by ``maildrop_locked``, in maildrop order (§4)."""
        request = self._settle(ListMaildrop)
        self._enter_transaction(request.owner, listing)

    def maildrop_opened(self, listing: Listing) -> None:
        """The maildrop is locked and ``listing`` is its content: both answers at once."""
        request = self._settle(OpenMaildrop)
        self._enter_transaction(request.owner, listing)
        self._reply(Reply(True, f"Logged in, {len(listing.uids)} messages."))

    def _enter_transaction(self, owner: str, listing: Listing) -> None:
        if len(listing.uids) != len(listing.sizes):
            raise LocalProtocolError("a listing needs one size per UID")
        self.owner = owner
        self._listing = listing
        self._total = sum(listing.sizes)
        self._deleted.clear()
        self._rendered.clear()
        self.state = State.TRANSACTION

    def maildrop_in_use(self) -> None:
        """Another session holds the lock: RFC 2449 §8.1.1 ``[IN-USE]``; stay in AUTHORIZATION."""
        self._settle(OpenMaildrop)
        self._reply(Reply(False, "Mailbox is locked by another POP3 session.", "IN-USE"))

    def maildrop_failed(self) -> None:
        """The maildrop could not be opened or listed (I/O error): RFC 3206 ``[SYS/TEMP]``.

        Before the login ``+OK`` the session stays in AUTHORIZATION; after it (a failed
        ``ListMaildrop``) it ends, as Dovecot's does, and nothing is deleted."""
        reply = Reply(False, "Unable to open the mailbox, try again later.", "SYS/TEMP")
        if isinstance(self._pending, ListMaildrop):
            self._settle(ListMaildrop)
            self._close(reply)
            return
        self._settle(OpenMaildrop)
        self._reply(reply)

    def message(self, data: bytes) -> None:
        """The stored bytes of the requested message (LF or CRLF line ends)."""
        pending = self._pending
        top_lines = pending.top_lines if isinstance(pending, FetchMessage) else None
        self.message_encoded(content.encode(data, top_lines))

    def message_encoded(self, encoded: content.Encoded) -> None:
        """``content.encode(data, event.top_lines)`` of the requested message, made by the
        adapter where it suits it (a worker thread: large messages stay off the event loop)."""
        request = self._settle(FetchMessage)
        if encoded.top_lines != request.top_lines:
            raise LocalProtocolError(f"answer for TOP {encoded.top_lines} to {request!r}")
        if request.top_lines is None:
            self._out.append(b"+OK %d octets\r\n" % encoded.octets)
        else:
            self._reply(Reply(True, "Top of message follows"))
        self._out.extend(encoded.chunks)

    def message_missing(self) -> None:
        """The message vanished under us (e.g. an IMAP expunge): ``-ERR``, the session goes on."""
        self._settle(FetchMessage)
        self._reply(Reply(False, "Message was removed by another session.", "SYS/TEMP"))

    def update_done(self) -> None:
        """Deletions applied and lock released: the final ``+OK`` (RFC 1939 §6)."""
        self._settle(Update)
        self._close(Reply(True, "Logging out."))

    def update_failed(self) -> None:
        """Deletions could not be applied (RFC 1939 §6: -ERR, some were not removed)."""
        self._settle(Update)
        self._close(Reply(False, "Some deleted messages were not removed.", "SYS/TEMP"))

    def tls_started(self) -> None:
        """The TLS handshake after STLS succeeded."""
        self._settle(StartTLS)
        self.tls_active = True

    # ---- internals -----------------------------------------------------------------------------

    def _settle(self, kind: type[_T]) -> _T:
        request = self._pending
        if not isinstance(request, kind):
            raise LocalProtocolError(f"no pending {kind.__name__} to answer (have {request!r})")
        self._pending = None
        return request

    def _reply(self, reply: Reply) -> None:
        self._out.append(reply.to_bytes())

    def _close(self, reply: Reply) -> None:
        self._reply(reply)
        self.state = State.CLOSED

    def _answer_error(self, exc: RemoteProtocolError) -> None:
        """The single place where peer errors become ``-ERR`` (and bad-command counting)."""
        reply = exc.reply
        assert isinstance(reply, Reply)
        preauth = self.state is State.AUTHORIZATION
        # Before login every error counts; after it only unknown commands (a client asking for
        # a message another session expunged is not misbehaving).
        if preauth or isinstance(exc, _UnknownCommand):
            self._bad += 1
        limit = self.limits.max_bad_commands_preauth if preauth else self.limits.max_bad_commands
        if self._bad >= limit:
            self._close(Reply(False, "Too many bad commands."))
        else:
            self._reply(reply)

    def _dispatch(self, raw: bytes) -> None:
        if self._sasl_plain:
            self._sasl_plain = False
            self._auth_plain(raw)
            return
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _error("Invalid command encoding.") from None
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in line):
            raise _error("Invalid characters in command.")
        verb, _, arg = line.partition(" ")
        verb = verb.upper()
        # Deliberately not a dict of bound methods built per line: a dispatch chain is cheap.
        if verb == "CAPA":
            self._capa()
        elif verb == "QUIT":
            self._quit()
        elif self.state is State.AUTHORIZATION:
            self._authorization(verb, arg)
        else:
            self._transaction(verb, arg)

    def _capa(self) -> None:
        # RFC 2449 §5; USER and SASL only while they can be used (RFC 2449 §6.8, §6.3).
        caps = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
        if self.state is State.AUTHORIZATION:
            if self._auth_allowed():
                caps += ["USER", "SASL PLAIN"]
            if self.tls_available and not self.tls_active:
                caps.append("STLS")  # RFC 2595 §4
        caps.append(f"IMPLEMENTATION {IMPLEMENTATION}")
        self._multiline(Reply(True, "Capability list follows"), caps)

    def _quit(self) -> None:
        if self.state is State.TRANSACTION and self.owner is not None:
            self.state = State.UPDATE  # RFC 1939 §6
            uids = self._listing.uids
            deleted = tuple(uids[n - 1] for n in sorted(self._deleted))
            self._queued = Update(self.owner, deleted)
        else:
            self._close(Reply(True, "Logging out."))  # RFC 1939 §4: QUIT in AUTHORIZATION

    def _auth_allowed(self) -> bool:
        return self.tls_active or self._plaintext_auth

    def _authorization(self, verb: str, arg: str) -> None:
        if verb == "USER":
            self._require_auth_allowed()
            if not arg:
                raise _error("USER needs a name.")
            self._user = arg
            self._reply(Reply(True, "Send your password."))
        elif verb == "PASS":
            self._require_auth_allowed()
            user, self._user = self._user, None
            if user is None:
                raise _error("No username given.")
            self._queued = Authenticate(user, arg, "USER")  # the rest of the line (§7)
        elif verb == "AUTH":
            self._auth(arg)
        elif verb == "STLS":
            self._stls()
        else:
            raise _UnknownCommand(Reply(False, "Unknown command."))

    def _require_auth_allowed(self) -> None:
        if not self._auth_allowed():
            raise _error("Plaintext authentication disallowed on non-secure connections.", "AUTH")

    def _auth(self, arg: str) -> None:
        mechanism, _, initial = arg.partition(" ")
        if not arg:
            # Old-style SASL discovery used by Outlook (Dovecot client-authenticate.c).
            mechs = ["PLAIN"] if self._auth_allowed() else []
            self._multiline(Reply(True, "Supported mechanisms follow"), mechs)
            return
        if mechanism.upper() != "PLAIN":
            raise _error("Unsupported authentication mechanism.")
        self._require_auth_allowed()
        if initial:
            self._auth_plain(initial.encode("ascii", "replace"))  # RFC 5034 §4 initial response
        else:
            self._sasl_plain = True
            self._out.append(b"+ \r\n")  # RFC 5034 §4: empty challenge

    def _auth_plain(self, response: bytes) -> None:
        try:
            authzid, authcid, password = sasl.decode_plain(sasl.decode_response(response))
        except sasl.SaslCancelled:
            raise _error("Authentication aborted by client.") from None
        except sasl.SaslError:
            raise _error("Invalid SASL PLAIN response.") from None
        if authzid and authzid != authcid:
            self._count_auth_failure()  # research 2.5 A2: no proxy authorization
            return
        self._queued = Authenticate(authcid, password, "PLAIN")

    def _stls(self) -> None:
        if not self.tls_available or self.tls_active:
            raise _error("TLS is not available." if not self.tls_active else "TLS already active.")
        self._lines.take_buffered()  # CVE-2011-0411: nothing sent before the handshake counts
        self._user = None
        self._reply(Reply(True, "Begin TLS negotiation now."))
        self._queued = StartTLS()

    def _transaction(self, verb: str, arg: str) -> None:
        args = arg.split(" ") if arg else []
        listing = self._listing
        if verb in ("RETR", "TOP") and len(args) == (1 if verb == "RETR" else 2):
            number = self._number(args[0])
            lines = _parse_count(args[1]) if verb == "TOP" else None
            self._queued = FetchMessage(number, listing.uids[number - 1], lines)
        elif verb == "STAT" and not args:
            sizes = listing.sizes
            count = len(sizes) - len(self._deleted)
            total = self._total - sum(sizes[n - 1] for n in self._deleted)
            self._out.append(b"+OK %d %d\r\n" % (count, total))
        elif verb == "LIST" and len(args) <= 1:
            sizes = listing.sizes
            self._list_answer("LIST", args, lambda n, i: b"%d %d\r\n" % (n, sizes[i]))
        elif verb == "UIDL" and len(args) <= 1:
            # Dovecot's default pop3_uidl_format: UID then UIDVALIDITY, 8 hex digits each.
            uids, tail = listing.uids, b"%08x\r\n" % listing.uidvalidity
            self._list_answer("UIDL", args, lambda n, i: b"%d %08x%s" % (n, uids[i], tail))
        elif verb == "DELE" and len(args) == 1:
            self._deleted.add(self._number(args[0]))
            self._rendered.clear()
            self._reply(Reply(True, "Marked to be deleted."))
        elif verb == "RSET" and not args:
            self._deleted.clear()  # RFC 1939 §5 RSET
            self._rendered.clear()
            self._reply(Reply(True, f"{len(listing.uids)} messages."))
        elif verb == "NOOP" and not args:
            self._reply(Reply(True, "Done."))
        else:
            raise _UnknownCommand(Reply(False, "Unknown command or wrong arguments."))

    def _list_answer(self, verb: str, args: list[str], render: _Render) -> None:
        """LIST or UIDL: one message, or all that are not deleted (cached while none is)."""
        if args:
            number = self._number(args[0])
            self._out.append(b"+OK " + render(number, number - 1))
            return
        answer = self._rendered.get(verb)
        if answer is None:
            deleted = self._deleted
            count = len(self._listing.uids)
            lines = [render(i + 1, i) for i in range(count) if i + 1 not in deleted]
            head = Reply(True, f"{len(lines)} messages").to_bytes()
            answer = b"".join([head, *lines, b".\r\n"])
            self._rendered[verb] = answer
        self._out.append(answer)

    def _number(self, text: str) -> int:
        """A message number that exists and is not marked deleted (RFC 1939 §5)."""
        number = _parse_count(text)
        if not 1 <= number <= len(self._listing.uids):
            raise _error("No such message.")
        if number in self._deleted:
            raise _error("Message is deleted.")
        return number

    def _multiline(self, head: Reply, lines: list[str]) -> None:
        self._out.append(head.to_bytes())
        self._out.append("".join(f"{line}\r\n" for line in lines).encode())
        self._out.append(b".\r\n")


class _UnknownCommand(RemoteProtocolError):
    """A command that is not valid in this state: counts toward the bad-command limit."""


def _error(text: str, code: str = "") -> RemoteProtocolError:
    return RemoteProtocolError(Reply(False, text, code))


def _parse_count(text: str) -> int:
    """A non-negative decimal number (RFC 1939 §3 "numeric arguments"), bounded in length."""
    if not text.isascii() or not text.isdigit() or len(text) > _MAX_NUMBER_DIGITS:
        raise _error("Invalid number.")
    return int(text)
