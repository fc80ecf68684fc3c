"""An aiosmtpd-based SMTP sink for delivery tests, on any loopback address and port.

It runs aiosmtpd's asyncio server in its own thread (aiosmtpd's Controller), so trio tests talk
to it over real sockets. Behaviour is data, fixed at construction:

    Sink("127.0.0.2", 25, rcpt_replies={"bad@x.test": "550 5.1.1 no such user"},
         data_reply="451 4.3.0 try later", drop_after_data=True, stall_mail=5.0,
         tls=server_context, auth=("user", "secret"), size_limit=1000, pipelining=True)

Everything received is recorded: `messages` (MAIL FROM, RCPT TOs, content), `connections`,
`logins`. Use it as a context manager (a sync one: Controller.start blocks until it serves).
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass(frozen=True)
class Received:
    """One message as the sink got it."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes
    mail_options: tuple[str, ...]
    tls: bool


@dataclass
class SinkBehaviour:
    """How the sink answers."""

    rcpt_replies: Mapping[str, str] = field(default_factory=dict)
    mail_reply: str | None = None
    data_reply: str | None = None
    drop_after_data: bool = False
    stall_mail: float = 0.0
    refuse_ehlo: bool = False
    pipelining: bool = True
    auth: tuple[str, str] | None = None


class _Handler:
    def __init__(self, behaviour: SinkBehaviour) -> None:
        self.behaviour = behaviour
        self.messages: list[Received] = []
        self.logins: list[str] = []
        self.lock = threading.Lock()

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        if self.behaviour.refuse_ehlo:
            return ["502 5.5.1 EHLO not implemented"]  # aiosmtpd pushes each list item
        session.host_name = hostname
        if self.behaviour.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.behaviour.stall_mail:
            await asyncio.sleep(self.behaviour.stall_mail)
        if self.behaviour.mail_reply is not None:
            return self.behaviour.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = self.behaviour.rcpt_replies.get(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.behaviour.drop_after_data:
            assert server.transport is not None
            server.transport.close()
            return "421 dropped"  # never reaches the client: the transport is closed
        content = envelope.original_content or b""
        with self.lock:
            self.messages.append(
                Received(
                    envelope.mail_from or "",
                    tuple(envelope.rcpt_tos),
                    content,
                    tuple(envelope.mail_options),
                    session.ssl is not None,
                )
            )
        return self.behaviour.data_reply or "250 2.0.0 OK queued"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        expected = self.behaviour.auth
        if expected is None or not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        ok = (data.login.decode(), data.password.decode()) == expected
        if ok:
            with self.lock:
                self.logins.append(f"{mechanism}:{data.login.decode()}")
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd sends 535


class _CountingSMTP(SMTP):
    def __init__(self, counter: list[int], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._counter = counter

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._counter[0] += 1
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self._counter[1] += 1
        super().connection_lost(error)


class _Controller(Controller):
    def __init__(self, counter: list[int], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._counter = counter

    def factory(self) -> SMTP:
        return _CountingSMTP(self._counter, self.handler, **self.SMTP_kwargs)


class Sink:
    """A loopback SMTP server with scripted answers; see the module docstring."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 25,
        *,
        tls: ssl.SSLContext | None = None,
        size_limit: int = 0,
        smtputf8: bool = True,
        exclude_auth: tuple[str, ...] = (),
        **behaviour: Any,
    ) -> None:
        self.host = host
        self.port = port
        self._counter = [0, 0]  # connections made, connections lost
        self._handler = _Handler(SinkBehaviour(**behaviour))
        self._controller = _Controller(
            self._counter,
            self._handler,
            hostname=host,
            port=port,
            server_hostname=f"sink.{host}",
            tls_context=tls,
            data_size_limit=size_limit,
            enable_SMTPUTF8=smtputf8,
            authenticator=self._handler.authenticate,
            auth_require_tls=True,
            auth_exclude_mechanism=exclude_auth,
            ready_timeout=5.0,
        )

    @property
    def messages(self) -> list[Received]:
        """Messages accepted so far."""
        with self._handler.lock:
            return list(self._handler.messages)

    @property
    def logins(self) -> list[str]:
        """Successful AUTH logins as "MECHANISM:user"."""
        with self._handler.lock:
            return list(self._handler.logins)

    @property
    def connections(self) -> int:
        """Connections accepted, minus the Controller's own readiness probe."""
        return self._counter[0] - 1

    @property
    def open_connections(self) -> int:
        """Connections currently open."""
        return self._counter[0] - self._counter[1]

    def __enter__(self) -> Sink:
        self._controller.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._controller.stop()
