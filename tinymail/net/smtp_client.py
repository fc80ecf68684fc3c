"""Trio adapter around proto.smtp.client: one outbound SMTP connection.

Rules
- Every read and write runs under the RFC 5321 4.5.3.2 timeout of the step it belongs to
  (`Timeouts`); tests scale them down.
- Stage failures the caller must react to (greeting refused, EHLO and HELO refused, TLS required
  but missing or failing, AUTH refused) raise `SessionError` with the reply, if any. A broken or
  stalled connection raises `ConnectionLost`.
- `send_message` returns the reply that decided each recipient: its RCPT reply when refused,
  else the MAIL reply (if refused), the DATA reply (if refused) or the final reply after the dot.
- Under PIPELINING a transaction costs two writes and two round trips: MAIL, the RCPTs and DATA
  in one write (RFC 2920 3.1 allows DATA as the last command of a group), then the content and
  the final dot in one write once 354 has come.
- `replies` counts every reply received; a caller that sees `ConnectionLost` with the count
  unchanged since the transaction began knows the server took responsibility for nothing.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import trio

from tinymail.proto.smtp.client import (
    NEED_DATA,
    ClientConnection,
    CommandReply,
    EhloReply,
    Greeting,
    NeedData,
    ServerProtocolError,
    ServerReply,
    State,
)

CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds per step; defaults are RFC 5321 4.5.3.2's minimums."""

    connect: float = 30.0  # not in the RFC; Postfix smtp_connect_timeout
    greeting: float = 300.0  # 4.5.3.2.1 initial 220 message: 5 minutes
    command: float = 300.0  # EHLO, STARTTLS, AUTH, RSET, QUIT; as MAIL (4.5.3.2.2)
    mail: float = 300.0  # 4.5.3.2.2 MAIL: 5 minutes
    rcpt: float = 300.0  # 4.5.3.2.3 RCPT: 5 minutes
    data_init: float = 120.0  # 4.5.3.2.4 DATA initiation: 2 minutes
    data_block: float = 180.0  # 4.5.3.2.5 data block: 3 minutes
    data_end: float = 600.0  # 4.5.3.2.6 DATA termination: 10 minutes

    def scaled(self, factor: float) -> Timeouts:
        """All timeouts multiplied by `factor` (tests use a small one)."""
        return Timeouts(*(getattr(self, name) * factor for name in self.__slots__))


class ConnectionLost(Exception):
    """The peer closed, reset, stalled past a timeout or broke the reply grammar."""


class SessionError(Exception):
    """A stage of session setup failed; `reply` is the server's answer when there was one."""

    def __init__(self, message: str, reply: ServerReply | None = None, dsn: str = "") -> None:
        super().__init__(message)
        self.reply = reply
        self.dsn = dsn


@dataclass(frozen=True, slots=True)
class Envelope:
    """One transaction: MAIL FROM, RCPT TOs and what MAIL needs to know about the content."""

    sender: str
    recipients: Sequence[str]
    size: int  # estimated size on the wire (RFC 1870 4)
    eight_bit: bool
    utf8: bool


class ClientSession:
    """One SMTP connection over a trio stream, driving a `ClientConnection`."""

    def __init__(self, stream: trio.abc.Stream, relay: str, timeouts: Timeouts) -> None:
        self.stream = stream
        self.relay = relay  # "host[ip]:port" for logs and Outcome.relay
        self.timeouts = timeouts
        self.conn = ClientConnection()
        self.messages = 0
        self.replies = 0

    @property
    def usable(self) -> bool:
        """Can another transaction run on this connection?"""
        return self.conn.state is State.READY

    async def _send(self, data: bytes, timeout: float) -> None:
        # A bare CancelScope, not trio.fail_after: this runs several times per message and the
        # context-manager wrapper costs more than the deadline check itself.
        with trio.CancelScope(deadline=trio.current_time() + timeout) as scope:
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self.conn.state = State.CLOSED
                raise ConnectionLost(f"send failed: {exc!r}") from exc
        if scope.cancelled_caught:
            self.conn.state = State.CLOSED
            raise ConnectionLost(f"send timed out after {timeout:g}s")

    async def _event(self, timeout: float) -> Greeting | EhloReply | CommandReply:
        try:
            event = self.conn.next_event()  # pipelined replies often arrived in one read
            if event is NEED_DATA:
                with trio.CancelScope(deadline=trio.current_time() + timeout) as scope:
                    while (event := self.conn.next_event()) is NEED_DATA:
                        data = await self.stream.receive_some(CHUNK)
                        if not data:
                            raise ConnectionLost("connection closed by the server")
                        self.conn.receive_data(data)
                if scope.cancelled_caught:
                    raise ConnectionLost(f"no reply within {timeout:g}s")
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.conn.state = State.CLOSED
            raise ConnectionLost(f"receive failed: {exc!r}") from exc
        except ServerProtocolError as exc:
            self.conn.state = State.CLOSED
            raise ConnectionLost(str(exc)) from exc
        except ConnectionLost:
            self.conn.state = State.CLOSED
            raise
        assert not isinstance(event, NeedData)
        self.replies += 1
        return event

    async def _reply(self, timeout: float) -> ServerReply:
        return (await self._event(timeout)).reply

    async def _command(self, line: bytes, timeout: float) -> ServerReply:
        await self._send(line, timeout)
        return await self._reply(timeout)

    async def greet(self) -> None:
        """Wait for the 220 greeting (RFC 5321 3.1)."""
        reply = await self._reply(self.timeouts.greeting)
        if reply.code != 220:
            raise SessionError("greeting refused", reply)

    async def hello(self, name: str) -> None:
        """EHLO, falling back to HELO when EHLO is refused (RFC 5321 3.2)."""
        reply = await self._command(self.conn.ehlo(name), self.timeouts.command)
        if reply.positive:
            return
        if reply.code == 421 or not self.usable:
            raise SessionError("EHLO refused", reply)
        reply = await self._command(self.conn.helo(name), self.timeouts.command)
        if not reply.positive:
            raise SessionError("HELO refused", reply)

    async def starttls(self, context: ssl.SSLContext, server_hostname: str, name: str) -> None:
        """STARTTLS, handshake, EHLO again (RFC 3207 4.2)."""
        reply = await self._command(self.conn.starttls(), self.timeouts.command)
        if reply.code != 220:
            raise SessionError("STARTTLS refused", reply, "4.7.5")
        tls = trio.SSLStream(self.stream, context, server_hostname=server_hostname)
        try:
            with trio.fail_after(self.timeouts.command):
                await tls.do_handshake()
        except (trio.BrokenResourceError, trio.TooSlowError, ssl.SSLError) as exc:
            self.conn.state = State.CLOSED
            raise SessionError(f"TLS handshake failed: {exc}", None, "4.7.5") from exc
        self.stream = tls
        self.conn.tls_started()
        await self.hello(name)

    async def authenticate(self, user: str, password: str) -> None:
        """AUTH PLAIN if offered, else LOGIN (RFC 4954); the core refuses it without TLS."""
        mechanisms = self.conn.auth_mechanisms
        if "PLAIN" in mechanisms:
            reply = await self._command(self.conn.auth_plain(user, password), self.timeouts.command)
        elif "LOGIN" in mechanisms:
            reply = await self._command(self.conn.auth_login(), self.timeouts.command)
            for secret in (user, password):
                if reply.code != 334:
                    break
                reply = await self._command(self.conn.auth_response(secret), self.timeouts.command)
        else:
            raise SessionError("the server offers neither AUTH PLAIN nor LOGIN", None, "4.7.0")
        if reply.code != 235:
            raise SessionError("AUTH failed", reply, "4.7.0")

    async def rset(self) -> bool:
        """RSET; False when the connection is no longer good for a transaction."""
        try:
            reply = await self._command(self.conn.rset(), self.timeouts.command)
        except ConnectionLost:
            return False
        return reply.positive

    async def send_message(
        self, envelope: Envelope, content: bytes | AsyncIterator[bytes]
    ) -> dict[str, ServerReply]:
        """One mail transaction; `content` is LF-ended text, whole or in chunks.

        Under PIPELINING, MAIL, the RCPTs and DATA go out in one write (see the module rules).
        """
        self.messages += 1
        conn = self.conn
        recipients = envelope.recipients
        mail = conn.mail(
            envelope.sender, size=envelope.size, eight_bit=envelope.eight_bit, utf8=envelope.utf8
        )
        data_reply: ServerReply | None = None
        if conn.pipelining:  # RFC 2920 3.1: MAIL, RCPTs and DATA in one write
            lines = [mail, *(conn.rcpt(r) for r in recipients), conn.data()]
            await self._send(b"".join(lines), self.timeouts.mail)
            timeouts = [self.timeouts.mail, *[self.timeouts.rcpt] * len(recipients)]
            replies: list[ServerReply] = []
            for timeout in [*timeouts, self.timeouts.data_init]:
                replies.append(await self._reply(timeout))
                if not self.usable:  # a 421 closed the session (or 354 to DATA): no more
                    break
            mail_reply, rcpt_replies = replies[0], replies[1 : len(timeouts)]
            # Recipients whose reply never came share the 421 that closed the session.
            rcpt_replies += [replies[-1]] * (len(recipients) - len(rcpt_replies))
            data_reply = replies[len(timeouts)] if len(replies) > len(timeouts) else None
            if conn.state is State.DATA and not (
                mail_reply.positive and any(r.positive for r in rcpt_replies)
            ):
                # RFC 2920 3.1: DATA was accepted although nobody can receive the message:
                # end it at once, empty (the server refuses or drops it); the replies stand.
                await self._send(conn.end_data(), self.timeouts.data_block)
                await self._reply(self.timeouts.data_end)
        else:
            mail_reply = await self._command(mail, self.timeouts.mail)
            rcpt_replies = []
            for rcpt in recipients if mail_reply.positive else ():
                if not self.usable:  # a 421 ended the session: the rest share its reply
                    rcpt_replies.append(rcpt_replies[-1])
                    continue
                rcpt_replies.append(await self._command(conn.rcpt(rcpt), self.timeouts.rcpt))
        if not mail_reply.positive:
            await self._abort()
            return dict.fromkeys(recipients, mail_reply)
        results = dict(zip(recipients, rcpt_replies, strict=True))
        accepted = [r for r, reply in results.items() if reply.positive]
        closing = next((reply for reply in rcpt_replies if reply.code == 421), None)
        if closing is not None:  # RFC 5321 3.8: 421 closes the channel; accepted ones wait too
            return results | dict.fromkeys(accepted, closing)
        if not accepted:
            await self._abort()
            return results
        if data_reply is None:
            data_reply = await self._command(conn.data(), self.timeouts.data_init)
        if data_reply.code != 354:
            await self._abort()
            return results | dict.fromkeys(accepted, data_reply)
        if isinstance(content, bytes):
            await self._send(conn.message_data(content) + conn.end_data(), self.timeouts.data_block)
        else:
            async for chunk in content:
                await self._send(conn.message_data(chunk), self.timeouts.data_block)
            await self._send(conn.end_data(), self.timeouts.data_block)
        final = await self._reply(self.timeouts.data_end)
        return results | dict.fromkeys(accepted, final)

    async def _abort(self) -> None:
        # The transaction is over without data; RSET keeps the connection reusable.
        if self.usable:
            await self.rset()

    async def aclose(self) -> None:
        """QUIT politely if possible, then close; never waits long, closes even if cancelled."""
        try:
            with trio.move_on_after(min(self.timeouts.command, 5.0)):
                if self.usable:
                    with contextlib.suppress(ConnectionLost):
                        await self._command(self.conn.quit(), self.timeouts.command)
        finally:
            self.conn.state = State.CLOSED
            await trio.aclose_forcefully(self.stream)
