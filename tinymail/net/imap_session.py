"""The trio adapter around the sans-I/O IMAP core (proto/imap/server.py).

Rules:
- The core's next_event() may touch mailbox files, so after login it runs in
  a worker thread (DESIGN.md: blocking file work goes through trio.to_thread),
  one hop for everything buffered. A command the core calls light (LOGOUT, a
  FETCH of one small message whose size is known, in a mailbox it can hold
  without waiting) runs on the loop instead: the hop costs several times the
  page-cached read it would move, and the loop never waits for a lock or a rescan.
- IDLE (RFC 2177): while the client idles, a poll task asks the core for
  updates every IDLE_POLL seconds (a few stat() calls when nothing changed)
  and sends them; the receive is never cancelled, the poll task is.
- Timeouts: 3 minutes before login, 30 minutes after (RFC 3501 5.4
  autologout, also the IDLE limit of RFC 2177).
- Auth failures are logged in the same one-line format as SMTP (fail2ban).
"""

from __future__ import annotations

import logging
import ssl
import zlib
from pathlib import Path
from typing import Protocol

import trio

from tinymail.config import Config
from tinymail.net.abuse import AuthResult, AuthStatus
from tinymail.net.tls import TLSHolder
from tinymail.net.wire import DirectSender
from tinymail.proto.imap.events import (
    AuthRequest,
    CompressRequest,
    Settings,
    Signal,
    StartTLSRequest,
    State,
)
from tinymail.proto.imap.server import ServerConnection
from tinymail.store.layout import mailbox_path
from tinymail.store.mailbox import MailStore
from tinymail.store.maildir_folders import MaildirStore
from tinymail.store.mbox_store import MboxStore
from tinymail.store.users import UserSource

log = logging.getLogger("tinymail.imap")

IDLE_POLL = 0.25
PREAUTH_TIMEOUT = 180.0
AUTH_TIMEOUT = 30 * 60.0
HANDSHAKE_TIMEOUT = 30.0
RECEIVE_SIZE = 65536


class ImapContext(Protocol):
    """What the IMAP adapter needs from net.context.ServiceContext."""

    @property
    def config(self) -> Config: ...

    @property
    def users(self) -> UserSource: ...

    @property
    def tls(self) -> TLSHolder | None: ...

    @property
    def service(self) -> str: ...

    @property
    def implicit_tls(self) -> bool: ...

    def is_loopback(self, peer: tuple[str, int] | str) -> bool: ...

    def plaintext_auth_allowed(self, host: str) -> bool: ...

    async def login(self, host: str, authcid: str, password: str) -> AuthResult: ...


def open_store(data_dir: Path, owner: str, store_format: str = "maildir") -> MailStore:
    """The owner's folders ([store] format: a Maildir++ tree or mbox files), with INBOX and
    the SPECIAL-USE folders created."""
    root = mailbox_path(data_dir, owner)
    store: MailStore = MboxStore(root) if store_format == "mbox" else MaildirStore(root)
    store.ensure_defaults()
    return store


async def handle_imap(stream: trio.abc.Stream, peer: tuple[str, int], ctx: ImapContext) -> None:
    """Serve one IMAP connection until LOGOUT, timeout, error or shutdown."""
    session = ImapSession(stream, peer, ctx)
    try:
        await session.run()
    except trio.Cancelled:
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            await session.stream.send_all(b"* BYE Server shutting down\r\n")
        raise
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        log.info("client=[%s] connection lost", peer[0])
    except Exception:
        log.exception("client=[%s] internal error in IMAP session", peer[0])
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            await session.stream.send_all(b"* BYE Internal error\r\n")
    finally:
        session.plain_sends_end()
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            await session.stream.aclose()


class DeflateStream(trio.abc.Stream):
    """RFC 4978 COMPRESS=DEFLATE: raw deflate both ways, a sync flush after every send so
    each response reaches the client whole (stdlib zlib; no partial-flush stalls)."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self._deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
        self._inflate = zlib.decompressobj(-15)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Compress and flush."""
        out = self._deflate.compress(bytes(data)) + self._deflate.flush(zlib.Z_SYNC_FLUSH)
        await self.inner.send_all(out)

    async def wait_send_all_might_not_block(self) -> None:
        """As the inner stream."""
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Inflate; output per call is bounded, so a deflate bomb cannot blow up memory."""
        limit = max_bytes or RECEIVE_SIZE
        while True:
            if self._inflate.unconsumed_tail:
                data = self._inflate.unconsumed_tail
            else:
                data = bytes(await self.inner.receive_some(RECEIVE_SIZE))
                if not data:
                    return b""
            try:
                out = self._inflate.decompress(data, limit)
            except zlib.error as exc:
                raise trio.BrokenResourceError(f"bad DEFLATE data: {exc}") from exc
            if out:
                return out

    async def aclose(self) -> None:
        """Close the inner stream."""
        await self.inner.aclose()


class ImapSession:
    """One connection: the core and its stream."""

    def __init__(self, stream: trio.abc.Stream, peer: tuple[str, int], ctx: ImapContext) -> None:
        self.stream = stream
        # Responses on plain TCP skip trio's post-send yield (net/wire.py): most commands
        # of a lock-step client are one small response each.
        self._direct = DirectSender(stream) if isinstance(stream, trio.SocketStream) else None
        self.peer = peer
        self.ctx = ctx
        self.user = ""
        tls_configured = ctx.tls is not None
        self.conn = ServerConnection(
            Settings(
                hostname=ctx.config.hostname,
                starttls_available=tls_configured and not ctx.implicit_tls,
                tls_active=ctx.implicit_tls,
                plaintext_auth=ctx.plaintext_auth_allowed(peer[0]),
                append_limit=ctx.config.smtp.max_message_size,
                compress_available=True,
            )
        )

    async def run(self) -> None:
        """The core/adapter loop of DESIGN.md."""
        if self.ctx.implicit_tls and not isinstance(self.stream, trio.SSLStream):
            await self._wrap_tls()  # serve() normally did the handshake already
        await self.stream.send_all(self.conn.greeting())
        while True:
            if self.conn.state is State.NOT_AUTHENTICATED:
                event = self.conn.next_event()  # no mailbox work before login
            elif (light := self.conn.next_light_event()) is not None:
                event = light  # one small command: a thread round trip costs more
            else:
                event = await trio.to_thread.run_sync(self.conn.next_event)
            await self._flush()
            if event is Signal.CLOSED:
                return
            if event is Signal.MORE:
                continue
            if event is Signal.NEED_DATA:
                data = await (self._idle() if self.conn.idling else self._receive())
                if not data:
                    return
                self.conn.receive_data(data)
            elif isinstance(event, AuthRequest):
                await self._auth(event)
            elif isinstance(event, StartTLSRequest):
                await self._wrap_tls()
                self.conn.tls_started()
            elif isinstance(event, CompressRequest):
                self.plain_sends_end()
                self.stream = DeflateStream(self.stream)
                self.conn.compress_started()

    async def _flush(self) -> None:
        out = self.conn.data_to_send()
        if out:
            await (self._direct or self.stream).send_all(out)

    def plain_sends_end(self) -> None:
        """From now on every send goes through self.stream (TLS, COMPRESS, closing)."""
        if self._direct is not None:
            self._direct.close()
            self._direct = None

    async def _receive(self) -> bytes:
        timeout = PREAUTH_TIMEOUT if self.conn.state is State.NOT_AUTHENTICATED else AUTH_TIMEOUT
        with trio.move_on_after(timeout):
            return bytes(await self.stream.receive_some(RECEIVE_SIZE))
        await self.stream.send_all(b"* BYE Autologout; idle for too long\r\n")
        log.info("client=[%s] user=<%s> timeout", self.peer[0], self.user)
        return b""

    async def _idle(self) -> bytes:
        data = b""

        async def poll() -> None:
            while True:
                await trio.sleep(IDLE_POLL)
                await trio.to_thread.run_sync(self.conn.idle_poll)
                with trio.CancelScope(shield=True):  # never leave half a response behind
                    await self._flush()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(poll)
            with trio.move_on_after(AUTH_TIMEOUT):
                data = bytes(await self.stream.receive_some(RECEIVE_SIZE))
            nursery.cancel_scope.cancel()
        if not data:
            with trio.move_on_after(1):
                await self.stream.send_all(b"* BYE Autologout; idle for too long\r\n")
        return data

    async def _auth(self, event: AuthRequest) -> None:
        # The one login path logs, delays and budgets failures (net/abuse.py).
        result = await self.ctx.login(self.peer[0], event.username, event.password)
        if result.status is AuthStatus.REFUSED:
            self.conn.auth_unavailable("Too many failed logins from your address, try later")
            return
        owner = result.owner
        if owner is None:
            self.conn.auth_result(None)
            return
        cfg = self.ctx.config
        try:
            store = await trio.to_thread.run_sync(open_store, cfg.data_dir, owner, cfg.store.format)
        except OSError as exc:
            log.error("client=[%s] user=<%s> cannot open mailbox: %s", self.peer[0], owner, exc)
            self.conn.auth_unavailable("Mailbox unavailable, try again later")
            return
        self.user = owner
        self.conn.auth_result(store)
        # From now on next_event() runs in a worker thread; big responses stream from there.
        self.conn.output_sink = self._send_from_thread

    def _send_from_thread(self, data: bytes) -> None:
        trio.from_thread.run(self.stream.send_all, data)

    async def _wrap_tls(self) -> None:
        holder = self.ctx.tls
        if holder is None:
            raise RuntimeError("TLS requested without [tls]")
        self.plain_sends_end()
        tls_stream = trio.SSLStream(self.stream, holder.context, server_side=True)
        with trio.fail_after(HANDSHAKE_TIMEOUT):
            try:
                await tls_stream.do_handshake()
            except (ssl.SSLError, trio.BrokenResourceError) as exc:
                raise trio.BrokenResourceError(f"TLS handshake failed: {exc}") from exc
        self.stream = tls_stream
