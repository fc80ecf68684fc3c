"""Sans-I/O SMTP client core: bytes in, events out; commands in, bytes out.

Rules / theory
- Every command the adapter sends is remembered in a FIFO of pending commands, and every
  complete server reply is matched to the oldest one (RFC 5321 4.2: exactly one reply per
  command). That is what makes PIPELINING (RFC 2920) a non-event here: the adapter may send
  several commands in one write when the server offers it, and the replies come back in order.
- A reply is one or more lines "NNN-text" ending with "NNN text" (RFC 5321 4.2.1); the code must
  be the same on every line. A line that breaks this is a `ServerProtocolError`.
- After "220" to STARTTLS, anything already buffered is plaintext injected before the handshake
  (CVE-2011-0411, research 2.2 T4): the core drops it and waits for `tls_started()`, which also
  forgets the EHLO extensions (RFC 3207 4.2).
- AUTH is refused by the core unless the adapter has said TLS is on: credentials never travel in
  the clear.
- Message data: the spool holds LF-ended text. The client emits CRLF line endings, doubles a
  leading dot (RFC 5321 4.5.2) and turns any stray CR into a space, so a crafted "\\r.\\r" can
  never end the data early at the next hop (SMTP smuggling, research 2.1 S4).
"""

from __future__ import annotations

import base64
import enum
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

MAX_REPLY_LINE = 4096  # RFC 5321 4.5.3.1.5 says 512; real servers exceed it, so be lenient.
MAX_REPLY_LINES = 200  # bounds memory for a hostile multi-line reply.


class ServerProtocolError(Exception):
    """The server broke the SMTP reply grammar; the connection is unusable."""


class ClientUsageError(Exception):
    """The adapter asked the core for something the protocol state forbids (our bug)."""


@dataclass(frozen=True, slots=True)
class ServerReply:
    """One complete server reply: the code and the text of each line (without the code)."""

    code: int
    lines: tuple[str, ...] = ("",)

    @property
    def enhanced(self) -> str | None:
        """The RFC 3463 enhanced status code from the first line, if the server sent one."""
        head = self.lines[0].split(" ", 1)[0]
        parts = head.split(".")
        well_formed = len(parts) == 3 and all(p.isdigit() and 0 < len(p) <= 3 for p in parts)
        # RFC 3463 2: the class digit must agree with the reply code's first digit.
        return head if well_formed and head[0] == str(self.code)[0] else None

    @property
    def positive(self) -> bool:
        """2xx: the command succeeded (RFC 5321 4.2.1)."""
        return 200 <= self.code < 300

    @property
    def transient(self) -> bool:
        """4xx: try again later."""
        return 400 <= self.code < 500

    @property
    def permanent(self) -> bool:
        """5xx: do not repeat the same request."""
        return 500 <= self.code < 600

    def text(self) -> str:
        """The reply on one line, as it goes into logs and DSN Diagnostic-Code fields."""
        return f"{self.code} " + " ".join(line for line in self.lines if line).strip()


class Command(enum.Enum):
    """What a pending reply answers."""

    GREETING = "greeting"
    EHLO = "EHLO"
    HELO = "HELO"
    STARTTLS = "STARTTLS"
    AUTH = "AUTH"
    MAIL = "MAIL"
    RCPT = "RCPT"
    DATA = "DATA"
    DATA_END = "."
    RSET = "RSET"
    QUIT = "QUIT"


@dataclass(frozen=True, slots=True)
class Greeting:
    """The server's opening reply (220 to go on, anything else to give up on this host)."""

    reply: ServerReply


@dataclass(frozen=True, slots=True)
class EhloReply:
    """Reply to EHLO; `extensions` maps upper-case keywords to their parameters."""

    reply: ServerReply
    extensions: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CommandReply:
    """Reply to any other command; `argument` is the RCPT address for RCPT replies."""

    command: Command
    reply: ServerReply
    argument: str = ""


class NeedData(enum.Enum):
    """Sentinel: feed more bytes with `receive_data`."""

    NEED_DATA = "need data"


NEED_DATA = NeedData.NEED_DATA
Event = Greeting | EhloReply | CommandReply


class State(enum.Enum):
    """Client-side view of the session."""

    CONNECTED = "connected"  # waiting for the greeting
    READY = "ready"  # commands may be sent
    TLS_PENDING = "tls pending"  # 220 to STARTTLS seen; adapter must handshake
    DATA = "data"  # 354 seen; message bytes may be sent
    CLOSED = "closed"


def parse_extensions(reply: ServerReply) -> dict[str, str]:
    """EHLO keywords (RFC 5321 4.1.1.1): every line after the first is "KEYWORD params"."""
    extensions: dict[str, str] = {}
    for line in reply.lines[1:]:
        keyword, _, params = line.strip().partition(" ")
        if keyword:
            extensions[keyword.upper()] = params.strip()
    return extensions


class ReplyParser:
    """Incremental reply parser: feed bytes, take complete `ServerReply` objects."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._lines: list[str] = []
        self._code = 0

    def feed(self, data: bytes | bytearray) -> None:
        """Append received bytes."""
        self._buffer += data

    def clear(self) -> None:
        """Forget everything buffered (STARTTLS: drop injected plaintext)."""
        self._buffer.clear()
        self._lines.clear()
        self._code = 0

    def next_reply(self) -> ServerReply | None:
        """Return the next complete reply, or None if more bytes are needed."""
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > MAX_REPLY_LINE:
                    raise ServerProtocolError("reply line too long")
                return None
            raw = bytes(self._buffer[:end]).rstrip(b"\r")  # tolerate bare LF endings
            del self._buffer[: end + 1]
            if len(raw) > MAX_REPLY_LINE:
                raise ServerProtocolError("reply line too long")
            reply = self._take_line(raw)
            if reply is not None:
                return reply

    def _take_line(self, raw: bytes) -> ServerReply | None:
        # RFC 5321 4.2: ServerReply-line = *( ServerReply-code "-" [ textstring ] CRLF )
        #                            ServerReply-code [ SP textstring ] CRLF
        if len(raw) < 3 or not raw[:3].isdigit() or raw[:1] not in b"2345":
            raise ServerProtocolError(f"malformed reply line {raw[:40]!r}")
        code = int(raw[:3])
        sep = raw[3:4]
        if sep not in (b"", b" ", b"-"):
            raise ServerProtocolError(f"malformed reply line {raw[:40]!r}")
        if self._lines and code != self._code:
            raise ServerProtocolError("reply code changed inside a multi-line reply")
        self._code = code
        # Servers may send 8-bit text (SMTPUTF8); never fail on it.
        self._lines.append(raw[4:].decode("utf-8", "replace"))
        if len(self._lines) > MAX_REPLY_LINES:
            raise ServerProtocolError("too many lines in one reply")
        if sep == b"-":
            return None
        reply = ServerReply(code, tuple(self._lines))
        self._lines = []
        return reply


class DataEncoder:
    """LF-text to SMTP DATA bytes: CRLF endings, dot-stuffing, stray CR neutralised.

    Whole-chunk bytes operations (no per-byte loop): messages can be tens of megabytes.
    """

    def __init__(self) -> None:
        self._at_line_start = True
        self._pending_cr = False  # the previous chunk ended in CR: CRLF or stray, not known yet

    def encode(self, chunk: bytes) -> bytes:
        """Encode one chunk; state carries across chunk boundaries."""
        if self._pending_cr:
            chunk = b"\r" + chunk
        self._pending_cr = chunk.endswith(b"\r")
        if self._pending_cr:
            chunk = chunk[:-1]
        # CRLF in the source is one line ending; a stray CR becomes a space, as Postfix's
        # cleanup_replace_stray_cr_lf does (research 2.1 S4).
        text = chunk.replace(b"\r\n", b"\n").replace(b"\r", b" ")
        return self._lines(text)

    def finish(self) -> bytes:
        """Close the data: end any open line, then the terminating dot (RFC 5321 4.1.1.4)."""
        out = self._lines(b" ") if self._pending_cr else b""
        self._pending_cr = False
        if not self._at_line_start:
            out += b"\r\n"
        self._at_line_start = True
        return out + b".\r\n"

    def _lines(self, text: bytes) -> bytes:
        if not text:
            return b""
        # RFC 5321 4.5.2: double a dot that starts a line.
        stuffed = text.replace(b"\n.", b"\n..")
        if self._at_line_start and stuffed.startswith(b"."):
            stuffed = b"." + stuffed
        self._at_line_start = text.endswith(b"\n")
        return stuffed.replace(b"\n", b"\r\n")


class ClientConnection:
    """The client half of one SMTP connection, without I/O."""

    def __init__(self) -> None:
        self.state = State.CONNECTED
        self.extensions: dict[str, str] = {}
        self.tls_active = False
        self.esmtp = False
        self._parser = ReplyParser()
        self._pending: deque[tuple[Command, str]] = deque([(Command.GREETING, "")])
        self._encoder: DataEncoder | None = None

    # -- capabilities -----------------------------------------------------------------------

    @property
    def pipelining(self) -> bool:
        """RFC 2920: may several commands go out in one write?"""
        return "PIPELINING" in self.extensions

    @property
    def starttls_offered(self) -> bool:
        """RFC 3207: STARTTLS in the EHLO reply and not yet on TLS."""
        return "STARTTLS" in self.extensions and not self.tls_active

    @property
    def size_limit(self) -> int | None:
        """RFC 1870 SIZE limit, or None when unadvertised or unlimited (SIZE 0)."""
        value = self.extensions.get("SIZE")
        if value is None or not value.isdigit() or int(value) == 0:
            return None
        return int(value)

    @property
    def auth_mechanisms(self) -> frozenset[str]:
        """RFC 4954 mechanisms; also honours the pre-standard "AUTH=LOGIN PLAIN" line."""
        names = set(self.extensions.get("AUTH", "").upper().split())
        for keyword, params in self.extensions.items():
            if keyword.startswith("AUTH="):  # old Exchange/Postfix "AUTH=LOGIN PLAIN" line
                names.update(keyword[5:].split())
                names.update(params.upper().split())
        return frozenset(names)

    # -- input ------------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray) -> None:
        """Feed bytes read from the server."""
        if self.state is State.TLS_PENDING:
            return  # research 2.2 T4: never read plaintext between 220 and the handshake
        self._parser.feed(data)

    def next_event(self) -> Event | NeedData:
        """The next complete reply, tagged with the command it answers."""
        if self.state is State.TLS_PENDING:
            return NEED_DATA
        reply = self._parser.next_reply()
        if reply is None:
            return NEED_DATA
        if not self._pending:
            raise ServerProtocolError(f"unexpected reply {reply.text()!r}")
        command, argument = self._pending.popleft()
        if reply.code == 421:  # RFC 5321 3.8: the server is closing the channel
            self.state = State.CLOSED
        if command is Command.GREETING:
            if self.state is not State.CLOSED:
                self.state = State.READY
            return Greeting(reply)
        if command is Command.EHLO:
            self.extensions = parse_extensions(reply) if reply.positive else {}
            self.esmtp = reply.positive
            return EhloReply(reply, self.extensions)
        if command is Command.HELO:
            self.extensions = {}
        elif command is Command.STARTTLS and reply.code == 220:
            self.state = State.TLS_PENDING
            self._parser.clear()  # research 2.2 T4: drop plaintext pipelined after the 220
        elif command is Command.DATA and reply.code == 354:
            self.state = State.DATA
            self._encoder = DataEncoder()
        elif command is Command.QUIT:
            self.state = State.CLOSED
        return CommandReply(command, reply, argument)

    # -- commands ---------------------------------------------------------------------------

    def ehlo(self, name: str) -> bytes:
        """EHLO (RFC 5321 4.1.1.1)."""
        return self._command(Command.EHLO, f"EHLO {name}")

    def helo(self, name: str) -> bytes:
        """HELO: the fallback when EHLO is refused (RFC 5321 3.2)."""
        return self._command(Command.HELO, f"HELO {name}")

    def starttls(self) -> bytes:
        """STARTTLS (RFC 3207 4)."""
        if self.tls_active:
            raise ClientUsageError("TLS is already active")
        return self._command(Command.STARTTLS, "STARTTLS")

    def tls_started(self) -> None:
        """The adapter finished the TLS handshake: forget everything learned before it."""
        if self.state is not State.TLS_PENDING:
            raise ClientUsageError("no STARTTLS in progress")
        self.tls_active = True
        self.extensions = {}  # RFC 3207 4.2: EHLO again, discard the old extension list
        self.esmtp = False
        self._parser.clear()
        self.state = State.READY

    def auth_plain(self, user: str, password: str) -> bytes:
        """AUTH PLAIN with an initial response (RFC 4954 4, RFC 4616)."""
        self._require_tls()
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode("ascii")
        return self._command(Command.AUTH, f"AUTH PLAIN {token}")

    def auth_login(self) -> bytes:
        """AUTH LOGIN; answer each 334 challenge with `auth_response`."""
        self._require_tls()
        return self._command(Command.AUTH, "AUTH LOGIN")

    def auth_response(self, value: str) -> bytes:
        """One base64 line answering a 334 challenge (RFC 4954 4)."""
        self._require_tls()
        line = base64.b64encode(value.encode()).decode("ascii")
        return self._command(Command.AUTH, line)

    def mail(
        self, sender: str, *, size: int | None = None, eight_bit: bool = False, utf8: bool = False
    ) -> bytes:
        """MAIL FROM with the SIZE, BODY and SMTPUTF8 parameters the server supports."""
        params = ""
        if size is not None and "SIZE" in self.extensions:
            params += f" SIZE={size}"  # RFC 1870 6
        if eight_bit and "8BITMIME" in self.extensions:
            params += " BODY=8BITMIME"  # RFC 6152 2
        if utf8:
            if "SMTPUTF8" not in self.extensions:
                raise ClientUsageError("server does not offer SMTPUTF8")
            params += " SMTPUTF8"  # RFC 6531 3.4
        return self._command(Command.MAIL, f"MAIL FROM:<{sender}>{params}")

    def rcpt(self, recipient: str) -> bytes:
        """RCPT TO; the reply event carries the recipient back."""
        return self._command(Command.RCPT, f"RCPT TO:<{recipient}>", recipient)

    def data(self) -> bytes:
        """DATA; after its 354 reply send `message_data` chunks and `end_data`."""
        return self._command(Command.DATA, "DATA")

    def message_data(self, chunk: bytes) -> bytes:
        """Encode a chunk of the message (LF-ended text) for the wire."""
        if self.state is not State.DATA or self._encoder is None:
            raise ClientUsageError("message data before a 354 reply")
        return self._encoder.encode(chunk)

    def end_data(self) -> bytes:
        """The end of the message: line end if needed, then "." (RFC 5321 4.1.1.4)."""
        if self.state is not State.DATA or self._encoder is None:
            raise ClientUsageError("end of data before a 354 reply")
        tail = self._encoder.finish()
        self._encoder = None
        self.state = State.READY
        self._pending.append((Command.DATA_END, ""))
        return tail

    def rset(self) -> bytes:
        """RSET: abort the transaction; also the liveness check before reusing a connection."""
        return self._command(Command.RSET, "RSET")

    def quit(self) -> bytes:
        """QUIT."""
        return self._command(Command.QUIT, "QUIT")

    # -- internals --------------------------------------------------------------------------

    def _require_tls(self) -> None:
        if not self.tls_active:
            raise ClientUsageError("AUTH is only sent over TLS")

    def _command(self, command: Command, line: str, argument: str = "") -> bytes:
        if self.state is not State.READY:
            raise ClientUsageError(f"cannot send {command.value} in state {self.state.value}")
        # RFC 2920 3.1: only pipeline when the server offered PIPELINING; AUTH continuation
        # lines answer a 334 and so never overlap.
        if self._pending and not self.pipelining:
            raise ClientUsageError("a reply is still pending and PIPELINING is not offered")
        if "\r" in line or "\n" in line:
            raise ClientUsageError("line break inside a command")
        self._pending.append((command, argument))
        return line.encode("utf-8") + b"\r\n"
