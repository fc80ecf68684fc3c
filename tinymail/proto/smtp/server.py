"""The sans-I/O SMTP server core (RFC 5321 receive side, with RFC 1870, 2920, 3207, 4954, 6152,
6531 and 2034).

Rules / theory:
- Bytes in (``receive_data``), events out (``next_event``), bytes out (``data_to_send``). The
  adapter answers each *decision* event with ``send(reply)``; until then nothing more is
  parsed, so pipelined replies keep their order (RFC 2920 §3.1).
- Peer mistakes are ``RemoteProtocolError`` carrying a ``Reply``; they are turned into bytes at
  one boundary (``_step``), so no peer input can make the core raise. ``LocalProtocolError``
  is for adapter bugs only.
- Commands end with CRLF only; a bare CR/LF or any control character in a command is a 501, so
  a bare line end never starts a command. DATA framing and its bare CR/LF policy live in
  ``dotstuff.py`` (bare LF normalised, bare CR refused with 550 5.5.2, read on to CRLF.CRLF).
- DATA is a synchronisation point: if DATA is refused while more input is already buffered, the
  client sent its message without waiting for 354 (RFC 2920 §3.1) and that text would run as
  commands, so the core answers 554 5.5.0 and closes (Postfix 3.9 "protocol synchronization").
- STARTTLS discards everything buffered after its line (CVE-2011-0411) and everything received
  until ``tls_started()``, which then forgets HELO, AUTH and the transaction (RFC 3207 §4.2).
- Error accounting: each ``RemoteProtocolError`` and each 5xx from the adapter counts; at
  ``max_errors`` the core sends 421 4.7.0 and closes (Postfix ``smtpd_hard_error_limit``).
  Failed or aborted AUTH exchanges also count towards ``max_auth_failures`` (chasquid: 3).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from tinymail.proto import sasl
from tinymail.proto.errors import LocalProtocolError, RemoteProtocolError, WireReply
from tinymail.proto.lines import LINE_TOO_LONG, LineBuffer
from tinymail.proto.smtp import replies
from tinymail.proto.smtp.address import parse_mail_from, parse_rcpt_to
from tinymail.proto.smtp.dotstuff import DataProblem, DotDecoder
from tinymail.proto.smtp.events import (
    CLOSED,
    NEED_DATA,
    AuthCredentials,
    DataAborted,
    DataChunk,
    DataEnd,
    DataStart,
    Decision,
    Event,
    MailFrom,
    RcptTo,
    Sentinel,
    StartTLS,
)
from tinymail.proto.smtp.replies import Reply

_DECISIONS = (MailFrom, RcptTo, DataStart, DataEnd, AuthCredentials)
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")
# Research 2.4 L9: an HTTP request sent to port 25 is a cross-protocol attack, not a mistake.
_HTTP_VERBS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE"})
_DATA_REFUSALS = {
    DataProblem.TOO_BIG: replies.MESSAGE_TOO_BIG,
    DataProblem.BARE_CR: replies.BARE_CR,
    DataProblem.LINE_TOO_LONG: replies.DATA_LINE_TOO_LONG,
}


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-session limits (defaults follow OpenSMTPD/Postfix; research 2.4)."""

    max_message_size: int = 35 * 1024 * 1024  # advertised as SIZE (RFC 1870)
    max_recipients: int = 1000  # Postfix smtpd_recipient_limit; RFC 5321 §4.5.3.1.8 asks >= 100
    max_command_line: int = 2048  # bytes incl. CRLF; RFC 5321 §4.5.3.1.4 asks >= 512
    max_data_line: int = 64 * 1024  # bytes excl. line end; longer lines refuse the message
    max_errors: int = 20  # Postfix smtpd_hard_error_limit
    max_auth_failures: int = 3  # research 2.5 A6 (chasquid)

    def __post_init__(self) -> None:
        if min(self.max_message_size, self.max_recipients, self.max_data_line) < 1:
            raise ValueError("limits must be positive")
        if self.max_command_line < 512 or self.max_errors < 1 or self.max_auth_failures < 1:
            raise ValueError("max_command_line must be >= 512 and error limits >= 1")


class Phase(Enum):
    """What the next input bytes mean."""

    COMMAND = "COMMAND"
    AUTH = "AUTH"  # the next line is a SASL response to a 334 challenge
    DATA = "DATA"
    TLS_HANDSHAKE = "TLS_HANDSHAKE"  # between StartTLS and tls_started()
    CLOSED = "CLOSED"


class ServerConnection:
    """One SMTP server session, as a state machine over bytes (see the module rules)."""

    def __init__(
        self,
        hostname: str,
        limits: Limits | None = None,
        *,
        tls_available: bool = False,
        tls_active: bool = False,
        auth_mechanisms: tuple[str, ...] = (),
        require_auth: bool = False,
        auth_requires_tls: bool = False,
    ) -> None:
        unknown = set(auth_mechanisms) - sasl.MECHANISMS
        if unknown:
            raise ValueError(f"unsupported SASL mechanisms: {sorted(unknown)}")
        self.hostname = hostname
        self.limits = limits if limits is not None else Limits()
        self._tls_available = tls_available
        self._tls_active = tls_active
        self._auth_mechanisms = auth_mechanisms
        self._require_auth = require_auth
        self._auth_requires_tls = auth_requires_tls  # hide AUTH until TLS (research 2.2 T5)
        self._lines = LineBuffer(self.limits.max_command_line)
        self._out = bytearray()
        self._events: deque[Event] = deque()
        self._phase = Phase.COMMAND
        self._pending: Decision | None = None
        self._eof = False
        self._said_quit = False  # the session ended with QUIT's 221
        self._errors = 0
        self._auth_failures = 0
        self._sasl: sasl.ServerExchange | None = None
        self._mail_from: str | None = None
        self._recipients: list[str] = []
        self._smtputf8 = False
        self._decoder: DotDecoder | None = None
        self._helo_name: str | None = None
        self._esmtp = False
        self._authenticated_as: str | None = None
        self._reset_transaction()
        self._commands: dict[str, Callable[[str], Event | None]] = {
            "EHLO": self._ehlo,
            "HELO": self._helo,
            "MAIL": self._mail,
            "RCPT": self._rcpt,
            "DATA": self._data,
            "RSET": self._rset,
            "NOOP": self._noop,
            "QUIT": self._quit,
            "VRFY": self._vrfy,
            "EXPN": self._expn,
            "HELP": self._help,
            "STARTTLS": self._starttls,
            "AUTH": self._auth,
        }

    # --- Session facts the adapter reads --------------------------------------------------

    @property
    def helo_name(self) -> str | None:
        """The name given in the last HELO/EHLO, None before one (or after STARTTLS)."""
        return self._helo_name

    @property
    def esmtp(self) -> bool:
        """True if the client greeted with EHLO (for "ESMTP"/"ESMTPS"/"ESMTPA" in Received)."""
        return self._esmtp

    @property
    def tls_active(self) -> bool:
        """True once TLS protects the session."""
        return self._tls_active

    @property
    def authenticated_as(self) -> str | None:
        """The authcid of a successful AUTH, else None."""
        return self._authenticated_as

    @property
    def mail_from(self) -> str | None:
        """The accepted sender of the current transaction ("" = null sender), else None."""
        return self._mail_from

    @property
    def recipients(self) -> tuple[str, ...]:
        """The accepted recipients of the current transaction."""
        return tuple(self._recipients)

    @property
    def closed(self) -> bool:
        """True once the session is over."""
        return self._phase is Phase.CLOSED

    @property
    def ended_by_quit(self) -> bool:
        """True when the client said QUIT, got its 221 and sent nothing after it.

        Such a client reads its reply and closes; the adapter may then simply close too,
        with no unread input that could make the kernel answer with a reset.
        """
        return self._said_quit and not self._lines

    # --- The adapter's calls --------------------------------------------------------------

    def greeting(self) -> bytes:
        """The 220 banner to send first (RFC 5321 §3.1)."""
        return replies.greeting(self.hostname).to_bytes()

    def receive_data(self, data: bytes) -> None:
        """Hand the core bytes read from the peer; b"" means the peer closed (EOF)."""
        if self._phase is Phase.CLOSED:
            return
        if self._eof:
            raise LocalProtocolError("receive_data() after EOF")
        if not data:
            self._eof = True
        elif self._phase is not Phase.TLS_HANDSHAKE:  # plaintext after STARTTLS is dropped
            self._lines.feed(data)

    def next_event(self) -> Event | Sentinel:
        """Return the next event, ``NEED_DATA`` or ``CLOSED``; never raises for peer input."""
        while True:
            if self._events:
                event = self._events.popleft()
                if isinstance(event, _DECISIONS):
                    self._pending = event
                return event
            if self._phase is Phase.CLOSED:
                return CLOSED
            if self._pending is not None:
                raise LocalProtocolError(f"answer {self._pending!r} with send() first")
            if self._phase is Phase.TLS_HANDSHAKE:
                raise LocalProtocolError("call tls_started() after the TLS handshake")
            if not self._step():
                return NEED_DATA

    def data_to_send(self) -> bytes:
        """Return and clear the bytes the core has queued for the peer."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def send(self, reply: Reply) -> None:
        """Answer the pending decision event with ``reply`` (queued for ``data_to_send``)."""
        decision = self._pending
        if decision is None:
            raise LocalProtocolError("send() without a pending decision")
        if isinstance(decision, DataStart):
            wrong = reply.code < 400 and reply.code != 354  # RFC 5321 §4.3.2: 354 or a refusal
        else:
            wrong = reply.code < 400 and not reply.is_success
        if wrong:
            raise LocalProtocolError(f"{reply.code} is not an answer to {type(decision).__name__}")
        self._pending = None
        self._queue(reply)
        if isinstance(decision, MailFrom) and reply.is_success:
            self._mail_from = decision.address
            self._smtputf8 = decision.smtputf8
        elif isinstance(decision, RcptTo) and reply.is_success:
            self._recipients.append(decision.address)
        elif isinstance(decision, DataStart):
            if reply.code == 354:
                self._phase = Phase.DATA
                self._decoder = DotDecoder(
                    max_size=self.limits.max_message_size, max_line=self.limits.max_data_line
                )
            elif len(self._lines):
                self._close_with(replies.SYNCHRONIZATION)
        elif isinstance(decision, DataEnd):
            self._reset_transaction()  # RFC 5321 §4.1.1.4: the transaction is over either way
        elif isinstance(decision, AuthCredentials):
            if reply.is_success:
                self._authenticated_as = decision.authcid
            else:
                self._auth_failed()
        if reply.code == 421:  # RFC 5321 §3.8: 421 means the server is closing
            self._phase = Phase.CLOSED
        elif reply.code >= 500:
            self._count_error()

    def tls_started(self) -> None:
        """The adapter finished the TLS handshake: forget the plaintext session (RFC 3207 §4.2)."""
        if self._phase is not Phase.TLS_HANDSHAKE:
            raise LocalProtocolError("tls_started() without a StartTLS event")
        self._lines.take_buffered()
        self._phase = Phase.COMMAND
        self._tls_active = True
        self._helo_name = None
        self._esmtp = False
        self._authenticated_as = None
        self._reset_transaction()

    def timeout(self) -> None:
        """The adapter's idle or DATA timer fired: 421 4.4.2 and close (RFC 5321 §4.5.3.2)."""
        if self._phase is Phase.CLOSED:
            return
        if self._phase is Phase.DATA and self._decoder and self._decoder.problem is None:
            self._events.append(DataAborted("timeout"))
        self._pending = None
        self._close_with(replies.TIMEOUT)

    # --- Input processing -----------------------------------------------------------------

    def _step(self) -> bool:
        """Process one line (or the buffered DATA bytes); False if more input is needed."""
        if self._phase is Phase.DATA:
            return self._step_data()
        line = self._lines.next_line()
        if line is None:
            if not self._eof:
                return False
            self._phase = Phase.CLOSED  # the peer left; nobody is listening for a reply
            return True
        phase, self._phase = self._phase, Phase.COMMAND  # an AUTH exchange takes one line
        try:
            if line is LINE_TOO_LONG:
                raise RemoteProtocolError(replies.LINE_TOO_LONG)  # RFC 5321 §4.5.3.1.4
            if phase is Phase.AUTH and self._sasl is not None:
                exchange = self._sasl
                event = self._sasl_call(lambda: exchange.step(line))
            else:
                event = self._command(line)
        except RemoteProtocolError as exc:  # the one place peer errors become replies
            self._queue(exc.reply)
            if exc.close:
                self._phase = Phase.CLOSED
            else:
                self._count_error()
            if self._sasl is not None:  # a failed exchange (RFC 4954 §4) is an auth failure
                self._sasl = None
                self._auth_failed()
            return True
        if event is not None:
            self._events.append(event)
        return True

    def _step_data(self) -> bool:
        decoder = self._decoder
        assert decoder is not None  # set together with Phase.DATA
        raw = self._lines.take_buffered()
        if not raw:
            if self._eof:
                if decoder.problem is None:
                    self._events.append(DataAborted("connection closed during DATA"))
                self._phase = Phase.CLOSED
            return self._eof
        refused_before = decoder.problem is not None
        content = decoder.feed(raw)
        if decoder.problem is not None and not refused_before:
            self._events.append(DataAborted(decoder.problem.value))
        elif content:
            self._events.append(DataChunk(content))
        if decoder.done:
            self._phase = Phase.COMMAND
            self._decoder = None
            self._lines.feed(decoder.leftover)  # pipelined commands after the message
            if decoder.problem is None:
                self._events.append(DataEnd())
            else:
                self._reset_transaction()
                self._queue(_DATA_REFUSALS[decoder.problem])
                self._count_error()
        return True

    def _command(self, line: bytes) -> Event | None:
        if _CONTROL.search(line):
            raise RemoteProtocolError(replies.BAD_CHARACTERS)  # research 2.4 L6
        text = line.decode("utf-8", "surrogateescape")  # 8-bit only matters in addresses
        verb, _, argument = text.partition(" ")
        name = verb.upper() if verb.isascii() else ""
        if name in _HTTP_VERBS or (verb.endswith(":") and len(verb) > 1):
            raise RemoteProtocolError(replies.FORBIDDEN_COMMAND, close=True)
        handler = self._commands.get(name)
        if handler is None:
            raise RemoteProtocolError(replies.UNKNOWN_COMMAND)
        return handler(argument)

    # --- Commands (RFC 5321 §4.1.1) -------------------------------------------------------

    def _greet(self, argument: str, esmtp: bool) -> None:
        name = argument.strip(" ")
        if not name or " " in name or not name.isascii():
            raise RemoteProtocolError(
                replies.syntax_error(f"Syntax: {'EHLO' if esmtp else 'HELO'} hostname")
            )
        self._helo_name = name
        self._esmtp = esmtp
        self._reset_transaction()  # RFC 5321 §4.1.4: EHLO/HELO also acts as RSET

    def _ehlo(self, argument: str) -> None:
        self._greet(argument, esmtp=True)
        extensions = [
            f"SIZE {self.limits.max_message_size}",  # RFC 1870
            "PIPELINING",  # RFC 2920
            "8BITMIME",  # RFC 6152
            "ENHANCEDSTATUSCODES",  # RFC 2034
            "SMTPUTF8",  # RFC 6531
        ]
        if self._tls_available and not self._tls_active:
            extensions.append("STARTTLS")  # RFC 3207 §4
        if self._auth_offered():
            extensions.append("AUTH " + " ".join(self._auth_mechanisms))  # RFC 4954 §3
        self._queue(replies.ehlo(self.hostname, extensions))

    def _helo(self, argument: str) -> None:
        self._greet(argument, esmtp=False)
        self._queue(replies.helo(self.hostname))

    def _mail(self, argument: str) -> Event:
        if self._helo_name is None:
            raise RemoteProtocolError(replies.bad_sequence("Error: send HELO/EHLO first"))
        if self._mail_from is not None:
            raise RemoteProtocolError(replies.bad_sequence("Error: nested MAIL command"))
        if self._require_auth and self._authenticated_as is None:
            raise RemoteProtocolError(replies.AUTH_REQUIRED)  # RFC 4954 §6
        return parse_mail_from(
            argument,
            esmtp=self._esmtp,
            max_size=self.limits.max_message_size,
            auth_param=self._auth_offered(),
        )

    def _rcpt(self, argument: str) -> Event | None:
        if self._mail_from is None:
            raise RemoteProtocolError(replies.bad_sequence("Error: need MAIL command"))
        address = parse_rcpt_to(argument, utf8=self._smtputf8)
        if len(self._recipients) >= self.limits.max_recipients:
            # RFC 5321 §4.5.3.1.10: a limit, not a client error; it retries in a new transaction
            self._queue(replies.TOO_MANY_RECIPIENTS)
            return None
        return RcptTo(address)

    def _data(self, argument: str) -> Event:
        if argument:
            raise RemoteProtocolError(replies.syntax_error("Syntax: DATA"))
        if self._mail_from is None:
            refusal = replies.bad_sequence("Error: need MAIL command")
        elif not self._recipients:
            refusal = replies.NO_VALID_RECIPIENTS
        else:
            return DataStart(self._mail_from, tuple(self._recipients))
        if len(self._lines):  # the message is already here: it must not run as commands
            self._queue(refusal)
            raise RemoteProtocolError(replies.SYNCHRONIZATION, close=True)
        raise RemoteProtocolError(refusal)

    def _rset(self, argument: str) -> None:
        if argument:
            raise RemoteProtocolError(replies.syntax_error("Syntax: RSET"))
        self._reset_transaction()  # RFC 5321 §4.1.1.5
        self._queue(replies.OK)

    def _noop(self, argument: str) -> None:
        self._queue(replies.OK)  # RFC 5321 §4.1.1.9: the argument is ignored

    def _quit(self, argument: str) -> None:
        if argument:
            raise RemoteProtocolError(replies.syntax_error("Syntax: QUIT"))
        self._close_with(replies.BYE)  # RFC 5321 §4.1.1.10
        self._said_quit = True

    def _vrfy(self, argument: str) -> None:
        if not argument.strip():
            raise RemoteProtocolError(replies.syntax_error("Syntax: VRFY address"))
        self._queue(replies.CANNOT_VRFY)

    def _expn(self, argument: str) -> None:
        self._queue(replies.NOT_IMPLEMENTED)  # RFC 5321 §3.5.2: EXPN may be disabled

    def _help(self, argument: str) -> None:
        self._queue(replies.HELP)

    def _starttls(self, argument: str) -> Event:
        if argument:
            raise RemoteProtocolError(replies.syntax_error("Syntax: STARTTLS"))  # RFC 3207 §4
        if self._tls_active:
            raise RemoteProtocolError(replies.bad_sequence("Error: TLS already active"))
        if not self._tls_available:
            raise RemoteProtocolError(replies.TLS_NOT_AVAILABLE)
        self._queue(replies.READY_FOR_TLS)
        self._lines.take_buffered()  # CVE-2011-0411: nothing pipelined after STARTTLS survives
        self._phase = Phase.TLS_HANDSHAKE
        return StartTLS()

    def _auth(self, argument: str) -> Event | None:
        if not self._auth_mechanisms:
            raise RemoteProtocolError(replies.NOT_IMPLEMENTED)
        if not self._esmtp:
            raise RemoteProtocolError(replies.bad_sequence("Error: send EHLO first"))
        if self._authenticated_as is not None:  # RFC 4954 §4: one AUTH per session
            raise RemoteProtocolError(replies.bad_sequence("Error: already authenticated"))
        if self._mail_from is not None:  # RFC 4954 §4: not during a mail transaction
            raise RemoteProtocolError(replies.bad_sequence("Error: MAIL transaction in progress"))
        if not self._auth_offered():
            raise RemoteProtocolError(replies.ENCRYPTION_REQUIRED)
        mechanism, _, initial = argument.partition(" ")
        mechanism = mechanism.upper()
        if not mechanism or " " in initial:
            raise RemoteProtocolError(replies.syntax_error("Syntax: AUTH mechanism [response]"))
        if mechanism not in self._auth_mechanisms:
            raise RemoteProtocolError(replies.AUTH_MECHANISM_UNKNOWN)
        exchange = self._sasl = sasl.ServerExchange(mechanism)
        response = initial.encode("utf-8", "surrogateescape") if initial else None
        return self._sasl_call(lambda: exchange.start(response))  # RFC 4954 §4 initial response

    def _sasl_call(self, advance: Callable[[], sasl.Challenge | AuthCredentials]) -> Event | None:
        """Run one SASL step: queue its 334 challenge or return the credentials to verify."""
        try:
            result = advance()
        except sasl.SaslCancelled as exc:
            raise RemoteProtocolError(replies.AUTH_CANCELLED) from exc
        except sasl.SaslBase64Error as exc:
            raise RemoteProtocolError(replies.BAD_BASE64) from exc
        except sasl.SaslAuthzidMismatch as exc:
            raise RemoteProtocolError(replies.AUTH_FAILED) from exc
        except sasl.SaslError as exc:
            raise RemoteProtocolError(replies.BAD_SASL_RESPONSE) from exc
        if isinstance(result, sasl.Challenge):
            self._phase = Phase.AUTH
            self._queue(replies.challenge(result.data))
            return None
        self._sasl = None
        return result

    # --- Helpers --------------------------------------------------------------------------

    def _auth_offered(self) -> bool:
        return bool(self._auth_mechanisms) and (self._tls_active or not self._auth_requires_tls)

    def _auth_failed(self) -> None:
        self._auth_failures += 1
        if self._auth_failures >= self.limits.max_auth_failures and not self.closed:
            self._close_with(replies.TOO_MANY_AUTH_FAILURES)

    def _count_error(self) -> None:
        self._errors += 1
        if self._errors >= self.limits.max_errors and not self.closed:
            self._close_with(replies.TOO_MANY_ERRORS)

    def _reset_transaction(self) -> None:
        self._mail_from = None
        self._recipients = []
        self._smtputf8 = False

    def _queue(self, reply: WireReply) -> None:
        self._out += reply.to_bytes()

    def _close_with(self, reply: Reply) -> None:
        self._queue(reply)
        self._phase = Phase.CLOSED
