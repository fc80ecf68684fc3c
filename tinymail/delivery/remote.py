"""Remote delivery: resolve a Route, connect, run one SMTP transaction, report per recipient.

Rules (issue 4)
- MX routes: MX hosts in preference order (random among equals); no MX -> the domain itself
  (implicit MX, RFC 5321 5.1); null MX -> 5.1.10 at once (RFC 7505 4.1); NXDOMAIN -> 5.1.2.
  Only the recipient domain's own DNS can bounce mail: for smarthost and transport routes every
  DNS or connection problem is temporary (a broken relay must never bounce mail).
- Each host's IPv6 then IPv4 addresses are tried; a refused or failed connection, a refused
  greeting, EHLO/HELO, TLS or AUTH moves on to the next address, then the next MX host. When
  every host failed the recipients are deferred with the last error.
- TLS: opportunistic by default (RFC 7435: STARTTLS when offered, certificate unchecked, and a
  failed handshake retries the same address in plaintext); REQUIRE defers when TLS is missing,
  VERIFY also checks the certificate against the host name.
- AUTH only after STARTTLS (the client core refuses it otherwise).
- Connections are reused: after a transaction the session goes back to a small per-Route pool
  and the next message starts its transaction at once (a finished transaction leaves nothing to
  RSET); at most `max_per_destination` deliveries run per Route. A pooled connection that turns
  out dead before the server answered anything (it timed out while idle) has taken
  responsibility for nothing: the message goes out on a fresh connection in the same attempt
  (likewise when its only answer was a 421 that closed it, sent when the server timed it out).
- Content: bytes [offset, offset+size) of a spool file, LF-ended, or the same bytes already in
  memory (`MessageSource.data`, small messages: no file I/O on the way out); the client core
  turns it into CRLF, dot-stuffed DATA and neutralises stray CR (never the outbound half of an
  SMTP smuggle).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import ssl
import stat
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field

import trio

from tinymail.delivery.courier import Outcome, Status
from tinymail.delivery.router import Route, RouteKind, TlsPolicy
from tinymail.net.dns import DNSError, NullMX, Resolver
from tinymail.net.smtp_client import (
    CHUNK,
    ClientSession,
    ConnectionLost,
    Envelope,
    SessionError,
    Timeouts,
)
from tinymail.proto.smtp.client import ServerReply


@dataclass(frozen=True, slots=True)
class MessageSource:
    """Where the message content is: `size` bytes at `offset` of the file at `path`.

    `data`, when given, is that content already read (the runner reads small messages while it
    loads them anyway); then the file is not opened again.
    """

    path: str
    size: int
    offset: int = 0
    data: bytes | None = None


@dataclass(frozen=True, slots=True)
class RemoteSettings:
    """Knobs of the remote courier; the defaults suit production."""

    hostname: str  # EHLO name
    timeouts: Timeouts = field(default_factory=Timeouts)
    max_per_destination: int = 4  # concurrent deliveries (and so connections) per Route
    idle_timeout: float = 10.0  # a pooled connection idle longer is closed, not reused
    max_messages_per_connection: int = 100
    smarthost_user: str = ""
    smarthost_password: str = field(default="", repr=False)
    verify_context: ssl.SSLContext | None = None  # None: the system CA store
    mx_port: int = 25  # port used for MX hosts (tests keep 25 on 127.0.0.x)


def read_password_file(path: str) -> str:
    """The smarthost password: first line of a file that others cannot read.

    Raises PermissionError for a world-readable file, so `serve` refuses to start with it.
    """
    with open(path, encoding="utf-8") as fh:
        if os.fstat(fh.fileno()).st_mode & (stat.S_IROTH | stat.S_IWOTH):
            raise PermissionError(f"{path} is world-readable; chmod 600 it")
        return fh.readline().rstrip("\r\n")


def measure(data: bytes) -> tuple[int, bool, bool]:
    """scan_message's answer for content in memory."""
    eight_bit = not data.isascii()
    header_8bit = eight_bit and not data.split(b"\n\n", 1)[0].isascii()
    return len(data) + data.count(b"\n"), eight_bit, header_8bit


async def scan_message(source: MessageSource) -> tuple[int, bool, bool]:
    """(size on the wire with CRLF, has 8-bit bytes, has 8-bit header bytes)."""
    if source.data is not None:
        return measure(source.data)

    def scan() -> tuple[int, bool, bool]:
        lines = eight_bit = 0
        header_8bit = False
        in_header = True
        with open(source.path, "rb") as fh:
            fh.seek(source.offset)
            remaining = source.size
            while remaining > 0:
                chunk = fh.read(min(CHUNK, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                lines += chunk.count(b"\n")
                if not chunk.isascii():
                    eight_bit = 1
                    if in_header and not chunk.split(b"\n\n", 1)[0].isascii():
                        header_8bit = True
                in_header = in_header and b"\n\n" not in chunk
        return source.size + lines, bool(eight_bit), header_8bit

    return await trio.to_thread.run_sync(scan)


async def read_chunks(source: MessageSource) -> AsyncGenerator[bytes, None]:
    """The message content in CHUNK-sized pieces."""
    async with await trio.open_file(source.path, "rb") as fh:
        await fh.seek(source.offset)
        remaining = source.size
        while remaining > 0:
            chunk = await fh.read(min(CHUNK, remaining))
            if not chunk:
                return
            remaining -= len(chunk)
            yield chunk


def _outcome(reply: ServerReply, relay: str) -> Outcome:
    if reply.positive:
        return Outcome(Status.OK, reply.enhanced or "2.0.0", reply.text(), relay)
    if reply.permanent:
        return Outcome(Status.PERM, reply.enhanced or "5.0.0", reply.text(), relay)
    return Outcome(Status.TEMP, reply.enhanced or "4.0.0", reply.text(), relay)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _temp(reason: str, dsn: str, relay: str = "") -> Outcome:
    return Outcome(Status.TEMP, dsn, reason, relay)


class _Stale(Exception):
    """A pooled connection died before its first reply: the caller retries on a fresh one."""


@dataclass(slots=True)
class _Pooled:
    session: ClientSession
    idle_since: float


class RemoteCourier:
    """Delivers one message to the recipients that share a Route (see the module rules)."""

    def __init__(self, settings: RemoteSettings, resolver: Resolver) -> None:
        self.settings = settings
        self.resolver = resolver
        self._pool: dict[Route, list[_Pooled]] = {}
        self._limits: dict[Route, trio.Semaphore] = {}
        self.connections_opened = 0  # for tests and the benchmark: reuse is visible here
        self._unverified = ssl.create_default_context()
        self._unverified.check_hostname = False  # RFC 7435: encrypt without authenticating
        self._unverified.verify_mode = ssl.CERT_NONE
        self._verified = settings.verify_context or ssl.create_default_context()

    async def deliver(
        self, route: Route, sender: str, recipients: Sequence[str], message: MessageSource
    ) -> dict[str, Outcome]:
        """Per-recipient outcomes of one delivery attempt to `route`."""
        if route.kind is RouteKind.LOCAL:
            raise ValueError("local routes belong to local delivery")
        limit = self._limits.get(route)
        if limit is None:
            limit = self._limits[route] = trio.Semaphore(self.settings.max_per_destination)
        async with limit:
            # Each pass takes a pooled connection or opens one; only a pooled one can turn out
            # stale, and it leaves the pool when it does, so this ends with the fresh one.
            while True:
                session = await self._reuse(route)
                fresh = session is None
                if session is None:
                    found = await self._connect(route)
                    if isinstance(found, Outcome):
                        return dict.fromkeys(recipients, found)
                    session = found
                try:
                    return await self._transact(
                        route, session, sender, recipients, message, stale_ok=not fresh
                    )
                except _Stale:
                    continue
                except BaseException:
                    await session.aclose()  # e.g. the spool file vanished, or we were cancelled
                    raise

    async def deliver_all(
        self,
        sender: str,
        recipients: Sequence[str],
        message: MessageSource,
        route_of: Callable[[str], Route],
    ) -> dict[str, Outcome]:
        """Group recipients by Route (one transaction each) and deliver the groups in parallel."""
        groups: dict[Route, list[str]] = {}
        for rcpt in recipients:
            groups.setdefault(route_of(rcpt), []).append(rcpt)
        if len(groups) == 1:  # the common case needs no nursery
            [(route, group)] = groups.items()
            return await self.deliver(route, sender, group, message)
        outcomes: dict[str, Outcome] = {}

        async def one(route: Route, group: list[str]) -> None:
            outcomes.update(await self.deliver(route, sender, group, message))

        async with trio.open_nursery() as nursery:
            for route, group in groups.items():
                nursery.start_soon(one, route, group)
        return outcomes

    async def aclose(self) -> None:
        """QUIT every pooled connection (shutdown)."""
        pools, self._pool = self._pool, {}
        for pooled in (p for entries in pools.values() for p in entries):
            await pooled.session.aclose()

    async def close_idle(self) -> None:
        """QUIT pooled connections idle longer than `idle_timeout`."""
        now = trio.current_time()
        stale: list[_Pooled] = []
        for entries in self._pool.values():
            # Remove before awaiting, so no delivery can pick a connection being closed.
            stale += [p for p in entries if now - p.idle_since > self.settings.idle_timeout]
            entries[:] = [p for p in entries if p not in stale]
        for pooled in stale:
            await pooled.session.aclose()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Background task: close idle pooled connections until cancelled, then all of them."""
        task_status.started()
        try:
            while True:
                await trio.sleep(self.settings.idle_timeout / 2)
                await self.close_idle()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await self.aclose()

    # -- transaction ------------------------------------------------------------------------

    async def _transact(
        self,
        route: Route,
        session: ClientSession,
        sender: str,
        recipients: Sequence[str],
        message: MessageSource,
        *,
        stale_ok: bool = False,
    ) -> dict[str, Outcome]:
        """One transaction on `session`; with `stale_ok`, raise _Stale (session closed) when
        the connection died before the server answered anything, or when its only answer was
        the one that closed it (a 421 queued while the connection sat idle)."""
        relay = session.relay
        wire_size, eight_bit, header_8bit = await scan_message(message)
        # RFC 6531 3.2: UTF-8 envelope addresses need SMTPUTF8 at the next hop. UTF-8 only in
        # the header goes out as is to a server without it (Postfix SMTPUTF8_README does too).
        utf8_envelope = not (sender + "".join(recipients)).isascii()
        utf8 = utf8_envelope or (header_8bit and "SMTPUTF8" in session.conn.extensions)
        limit = session.conn.size_limit
        if limit is not None and wire_size > limit:
            # RFC 1870 6: do not send what the server announced it will refuse.
            await self._release(route, session)
            reason = f"message size {wire_size} exceeds the limit {limit} of {relay}"
            return dict.fromkeys(recipients, Outcome(Status.PERM, "5.3.4", reason, relay))
        if utf8_envelope and "SMTPUTF8" not in session.conn.extensions:
            await self._release(route, session)
            reason = f"{relay} does not support SMTPUTF8"  # RFC 6531 3.2
            return dict.fromkeys(recipients, Outcome(Status.PERM, "5.6.7", reason, relay))
        # 8-bit content to a server without 8BITMIME goes as is, as Postfix does by default:
        # refusing it would bounce mail that nearly every server accepts in practice.
        envelope = Envelope(sender, list(recipients), wire_size, eight_bit, utf8)
        replies_before = session.replies
        try:
            if message.data is not None:
                replies = await session.send_message(envelope, message.data)
            else:
                async with contextlib.aclosing(read_chunks(message)) as chunks:
                    replies = await session.send_message(envelope, chunks)
        except ConnectionLost as exc:
            await session.aclose()
            if stale_ok and session.replies == replies_before:
                raise _Stale from exc
            # RFC 5321 6.1: no reply after the dot means no responsibility taken: retry.
            return dict.fromkeys(recipients, _temp(f"lost connection with {relay}: {exc}", "4.4.2"))
        if stale_ok and not session.usable and session.replies == replies_before + 1:
            await session.aclose()
            raise _Stale
        await self._release(route, session)
        return {rcpt: _outcome(reply, relay) for rcpt, reply in replies.items()}

    # -- connection pool --------------------------------------------------------------------

    async def _reuse(self, route: Route) -> ClientSession | None:
        """The most recently used pooled connection that is not idle too long, if any."""
        entries = self._pool.get(route)
        while entries:
            pooled = entries.pop()
            if trio.current_time() - pooled.idle_since <= self.settings.idle_timeout:
                return pooled.session
            await pooled.session.aclose()
        return None

    async def _release(self, route: Route, session: ClientSession) -> None:
        if session.usable and session.messages < self.settings.max_messages_per_connection:
            self._pool.setdefault(route, []).append(_Pooled(session, trio.current_time()))
        else:
            await session.aclose()

    # -- finding and opening a connection ---------------------------------------------------

    async def _hosts(self, route: Route) -> list[str] | Outcome:
        """The host names to try, in order, or the outcome that ends the attempt."""
        if route.kind not in (RouteKind.MX, RouteKind.TRANSPORT_MX):
            return [route.host]
        own_domain = route.kind is RouteKind.MX  # only its own DNS may bounce a recipient
        try:
            mx = await self.resolver.mx(route.host)
        except DNSError as exc:
            if exc.permanent and own_domain:
                return Outcome(Status.PERM, "5.1.2", f"domain {route.host} not found ({exc})")
            return _temp(f"DNS lookup for {route.host} failed: {exc}", "4.4.3")
        if isinstance(mx, NullMX):
            # RFC 7505 4.1: a null MX means the domain accepts no mail.
            return Outcome(Status.PERM, "5.1.10", f"{route.host} does not accept mail (null MX)")
        return [host for _, host in mx] or [route.host]  # RFC 5321 5.1 implicit MX

    async def _connect(self, route: Route) -> ClientSession | Outcome:
        hosts = await self._hosts(route)
        if isinstance(hosts, Outcome):
            return hosts
        port = route.port if route.kind is not RouteKind.MX else self.settings.mx_port
        failure: Outcome | None = None
        any_address = False
        for host in hosts:
            try:
                addresses = [host] if _is_ip(host) else await self.resolver.addresses(host)
            except DNSError as exc:
                failure = _temp(f"cannot resolve {host}: {exc}", "4.4.3")
                continue
            for address in addresses:
                any_address = True
                result = await self._open(route, host, address, port, starttls=True)
                if isinstance(result, ClientSession):
                    return result
                failure = result
        if not any_address and failure is None and route.kind is RouteKind.MX:
            return Outcome(Status.PERM, "5.4.4", f"no address for the mail hosts of {route.host}")
        return failure or _temp(f"no address for {', '.join(hosts)}", "4.4.4")

    async def _open(
        self, route: Route, host: str, address: str, port: int, *, starttls: bool
    ) -> ClientSession | Outcome:
        relay = f"{host}[{address}]:{port}"
        timeouts = self.settings.timeouts
        try:
            with trio.fail_after(timeouts.connect):
                stream = await trio.open_tcp_stream(address, port)
        except (OSError, trio.TooSlowError) as exc:
            return _temp(f"connect to {relay} failed: {exc or 'timeout'}", "4.4.1", relay)
        self.connections_opened += 1
        session = ClientSession(stream, relay, timeouts)
        try:
            await self._setup(route, session, host, starttls=starttls)
        except ConnectionLost as exc:
            await session.aclose()
            return _temp(f"lost connection with {relay}: {exc}", "4.4.2", relay)
        except SessionError as exc:
            await session.aclose()
            if exc.dsn == "4.7.5" and route.tls is TlsPolicy.OPPORTUNISTIC and starttls:
                # RFC 7435 4: opportunistic TLS falls back to cleartext when TLS fails.
                return await self._open(route, host, address, port, starttls=False)
            if exc.reply is not None:
                reply = exc.reply
                reason = f"{relay} said: {reply.text()} ({exc})"
                # Deferred, whatever the class of the reply: keep the detail, make it 4.x.x.
                return _temp(reason, "4" + (reply.enhanced or "4.4.0")[1:], relay)
            return _temp(f"{relay}: {exc}", exc.dsn or "4.4.0", relay)
        return session

    async def _setup(
        self, route: Route, session: ClientSession, host: str, *, starttls: bool
    ) -> None:
        name = self.settings.hostname
        await session.greet()
        await session.hello(name)
        if starttls and session.conn.starttls_offered and route.tls is not TlsPolicy.VERIFY:
            await session.starttls(self._unverified, host, name)
        elif starttls and session.conn.starttls_offered:
            await session.starttls(self._verified, host, name)
        elif route.tls is not TlsPolicy.OPPORTUNISTIC:
            raise SessionError("TLS is required, but was not offered", None, "4.7.4")
        if route.auth and self.settings.smarthost_user:
            if not session.conn.tls_active:
                raise SessionError("refusing to send credentials without TLS", None, "4.7.0")
            await session.authenticate(
                self.settings.smarthost_user, self.settings.smarthost_password
            )
