"""A test driver for the SMTP server core: plays the adapter's loop with a scripted policy."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from tinymail.proto import smtp
from tinymail.proto.smtp import replies
from tinymail.proto.smtp.events import DataAborted, DataChunk, StartTLS

ENHANCED = re.compile(r"\d{3}( [245]\.\d{1,3}\.\d{1,3}(?= |$))?")
REPLY_LINE = re.compile(rb"\d{3}[ -][^\r\n]*\r\n")
USERS = {"alice@example.test": "secret"}
LOCAL_DOMAINS = {"example.test"}


def policy(decision: smtp.Decision) -> smtp.Reply:
    """A small adapter policy: local domains only, one user, queue IDs numbered by the caller."""
    if isinstance(decision, smtp.MailFrom):
        return replies.SENDER_OK
    if isinstance(decision, smtp.RcptTo):
        domain = decision.address.rpartition("@")[2]
        if decision.address == "postmaster" or domain.lower() in LOCAL_DOMAINS:
            return replies.RECIPIENT_OK
        return smtp.Reply(554, "5.7.1", "Relay access denied")
    if isinstance(decision, smtp.DataStart):
        return replies.START_DATA
    if isinstance(decision, smtp.DataEnd):
        return replies.queued("TEST")
    if USERS.get(decision.authcid) == decision.password:
        return replies.AUTH_OK
    return replies.AUTH_FAILED


@dataclass
class Driver:
    """Feeds bytes to a ``ServerConnection`` and runs the adapter loop until it needs data."""

    conn: smtp.ServerConnection
    decide: Callable[[smtp.Decision], smtp.Reply] = policy
    events: list[object] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)
    aborted: list[str] = field(default_factory=list)
    _current: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> bytes:
        """receive_data(data), then run the loop; return everything the core sent."""
        self.conn.receive_data(data)
        return self.pump()

    def pump(self) -> bytes:
        """Run the adapter loop until NEED_DATA or CLOSED; return the bytes to send."""
        out = bytearray()
        for _ in range(100_000):  # every loop bounded
            event = self.conn.next_event()
            if event is smtp.NEED_DATA or event is smtp.CLOSED:
                out += self.conn.data_to_send()
                return bytes(out)
            self.events.append(event)
            if isinstance(event, DataChunk):
                self._current += event.data
            elif isinstance(event, DataAborted):
                self.aborted.append(event.reason)
                self._current.clear()
            elif isinstance(event, StartTLS):
                out += self.conn.data_to_send()  # the 220 goes out in plaintext first
                self.conn.tls_started()
            else:
                reply = self.decide(event)
                if isinstance(event, smtp.DataEnd) and reply.is_success:
                    self.messages.append(bytes(self._current))
                if isinstance(event, smtp.DataEnd):
                    self._current.clear()
                self.conn.send(reply)
        raise AssertionError("the core never asked for data")

    def say(self, *lines: str) -> list[str]:
        """Send command lines (CRLF added, one write) and return the reply lines."""
        return reply_lines(self.feed("".join(f"{line}\r\n" for line in lines).encode()))


def reply_lines(data: bytes) -> list[str]:
    """Split output into lines, asserting each is a well-formed reply line."""
    assert well_formed(data), data
    return data.decode("utf-8").split("\r\n")[:-1]


def well_formed(data: bytes) -> bool:
    """True if ``data`` is a sequence of CRLF-terminated ``NNN[ -]text`` lines."""
    return REPLY_LINE.sub(b"", data) == b"" and all(
        REPLY_LINE.fullmatch(line + b"\r\n") for line in data.split(b"\r\n")[:-1]
    )


def codes(lines: list[str]) -> list[str]:
    """The code and enhanced code of each final reply line, e.g. "250 2.1.0" or "354"."""
    found = (ENHANCED.match(line) for line in lines if line[3:4] == " ")
    return [match.group().rstrip() for match in found if match]


def session(
    limits: smtp.Limits | None = None,
    *,
    tls_available: bool = False,
    tls_active: bool = False,
    auth_mechanisms: tuple[str, ...] = (),
    require_auth: bool = False,
    auth_requires_tls: bool = False,
) -> Driver:
    """A driver on a fresh connection for mx.example.test."""
    conn = smtp.ServerConnection(
        "mx.example.test",
        limits,
        tls_available=tls_available,
        tls_active=tls_active,
        auth_mechanisms=auth_mechanisms,
        require_auth=require_auth,
        auth_requires_tls=auth_requires_tls,
    )
    return Driver(conn)


def ready(
    limits: smtp.Limits | None = None,
    *,
    tls_available: bool = False,
    tls_active: bool = False,
    auth_mechanisms: tuple[str, ...] = (),
    require_auth: bool = False,
) -> Driver:
    """A session that has said EHLO."""
    driver = session(
        limits,
        tls_available=tls_available,
        tls_active=tls_active,
        auth_mechanisms=auth_mechanisms,
        require_auth=require_auth,
    )
    driver.say("EHLO client.example.net")
    return driver
