"""The trio adapter around the sans-I/O POP3 core: moves bytes, answers its decisions.

Store calls (listing, expunging, reading large messages) block on files, so they run in worker
threads, at most one thread hop per command (RETR reads and encodes in the same hop). A message
of at most ``INLINE_READ`` octets is read and encoded on the event loop instead: that is one
small read from the page cache (~20 us), where a thread hop costs 100-500 us on a busy host and
was most of a RETR's time; when an IMAP worker holds the shared folder, the read goes to a
thread too (FolderBusy), so the loop never waits for a lock.
The maildrop lock is taken when the password is right and released when the session ends,
however it ends; the login ``+OK`` is sent before the listing is built, which then happens
before any later command is read (as Dovecot does); deletions only happen in the UPDATE state
(RFC 1939 §6).
"""

from __future__ import annotations

import logging

import trio

from tinymail.net.abuse import AuthStatus
from tinymail.net.context import ServiceContext
from tinymail.proto import pop3
from tinymail.proto.pop3 import content
from tinymail.store.layout import mailbox_path
from tinymail.store.maildrop import (
    DropListing,
    FolderBusy,
    Maildrop,
    SessionLocks,
    open_maildrop,
)

log = logging.getLogger("tinymail.pop3")

COMMAND_TIMEOUT = 600.0  # RFC 1939 §3: an autologout timer of at least 10 minutes
PREAUTH_TIMEOUT = 180.0  # research section 4: 3 minutes before login (Dovecot)
INLINE_READ = 64 * 1024  # listing size up to which RETR/TOP read without a thread hop

#: RFC 1939 §4 exclusive access: one POP3 session per maildrop in this process.
LOCKS = SessionLocks()


async def handle_pop3(stream: trio.abc.Stream, peer: tuple[str, int], ctx: ServiceContext) -> None:
    """Serve one POP3 connection until QUIT, timeout, error or shutdown."""
    session = POP3Session(stream, peer, ctx)
    try:
        await session.run()
    except trio.Cancelled:
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            session.conn.shutdown()
            await session.stream.send_all(session.conn.data_to_send())
        raise
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        log.info("proto=pop3 client=[%s] connection lost", peer[0])
    finally:
        await session.cleanup()


class POP3Session:
    """One connection: the core, the stream and the maildrop once logged in."""

    def __init__(self, stream: trio.abc.Stream, peer: tuple[str, int], ctx: ServiceContext):
        self.stream = stream
        self.peer = peer
        self.ctx = ctx
        tls_ok = ctx.tls is not None and not ctx.implicit_tls
        self.conn = pop3.ServerConnection(
            hostname=ctx.config.hostname,
            tls_available=tls_ok,
            tls_active=ctx.implicit_tls,
            # Passwords only over TLS, except on loopback (SPEC; research 2.2 T5).
            plaintext_auth=ctx.plaintext_auth_allowed(peer[0]),
        )
        self.maildrop: Maildrop | None = None
        self.sizes: list[int] = []  # of the session's listing, by message number - 1
        self.lock_key: str | None = None
        self.retrieved: set[int] = set()  # RETR'd in this session: \Seen at QUIT

    async def run(self) -> None:
        """The core/adapter loop of DESIGN.md."""
        await self.stream.send_all(self.conn.greeting())
        while True:
            event = self.conn.next_event()
            if event is pop3.NEED_DATA:
                await self._flush()
                self.conn.receive_data(await self._receive())
            elif event is pop3.CLOSED:
                await self._flush()
                return
            elif isinstance(event, pop3.StartTLS):
                await self._start_tls()
            else:
                await self._decide(event)

    async def _flush(self) -> None:
        out = self.conn.data_to_send()
        if out:
            await self.stream.send_all(out)

    async def _receive(self) -> bytes:
        timeout = COMMAND_TIMEOUT if self.maildrop is not None else PREAUTH_TIMEOUT
        with trio.move_on_after(timeout):
            return bytes(await self.stream.receive_some(65536))
        self.conn.timeout()
        log.info("proto=pop3 client=[%s] timeout", self.peer[0])
        return b""

    async def _start_tls(self) -> None:
        await self._flush()
        tls = self.ctx.tls
        if tls is None:  # the core only offers STLS when we said TLS is available
            raise RuntimeError("STLS without a TLS context")
        ssl_stream = trio.SSLStream(self.stream, tls.context, server_side=True)
        await ssl_stream.do_handshake()
        self.stream = ssl_stream
        self.conn.tls_started()

    async def _decide(self, event: pop3.Decision) -> None:
        try:
            if isinstance(event, pop3.Authenticate):
                await self._authenticate(event)
            elif isinstance(event, pop3.FetchMessage):
                await self._fetch(event)
            elif isinstance(event, pop3.OpenMaildrop):
                self._open(event.owner)
            elif isinstance(event, pop3.ListMaildrop):
                await self._list(event.owner)
            elif isinstance(event, pop3.Update):
                await self._update(event)
        except Exception:  # a store failure (I/O, lock timeout, unparsable mbox) ends nothing
            log.exception("proto=pop3 client=[%s] error answering %s", self.peer[0], event)
            self._fail(event)

    def _fail(self, event: pop3.Decision) -> None:
        """Answer a decision whose store call failed with the core's temporary failure."""
        if isinstance(event, pop3.Authenticate):
            self.conn.auth_failed(temporary=True)
        elif isinstance(event, (pop3.OpenMaildrop, pop3.ListMaildrop)):
            self._release()
            self.conn.maildrop_failed()
        elif isinstance(event, pop3.FetchMessage):
            self.conn.message_missing()
        elif isinstance(event, pop3.Update):
            self.conn.update_failed()

    async def _authenticate(self, event: pop3.Authenticate) -> None:
        # The one login path logs, delays and budgets failures (net/abuse.py).
        result = await self.ctx.login(self.peer[0], event.username, event.password)
        if result.owner is None:
            self.conn.auth_failed(temporary=result.status is AuthStatus.REFUSED)
            return
        self.conn.auth_ok(result.owner)

    def _open(self, owner: str) -> None:
        key = str(mailbox_path(self.ctx.config.data_dir, owner))
        if not LOCKS.acquire(key):
            self.conn.maildrop_in_use()
            return
        self.lock_key = key
        self.conn.maildrop_locked()

    async def _list(self, owner: str) -> None:
        await self._flush()  # the login +OK goes out before the (maybe long) listing
        cfg = self.ctx.config

        def work() -> tuple[Maildrop, DropListing]:
            drop = open_maildrop(cfg.data_dir, owner, cfg.store.format)
            return drop, drop.listing()

        drop, listing = await trio.to_thread.run_sync(work)
        self.maildrop = drop
        self.sizes = listing.sizes
        self.conn.maildrop_listed(pop3.Listing(listing.uidvalidity, listing.uids, listing.sizes))

    async def _fetch(self, event: pop3.FetchMessage) -> None:
        drop = self.maildrop
        assert drop is not None  # the core only asks after maildrop_listed
        uid, top_lines = event.uid, event.top_lines

        def work(now: bool) -> content.Encoded | None:
            data = drop.read_now(uid) if now else drop.read(uid)
            return None if data is None else content.encode(data, top_lines)

        try:
            if self.sizes[event.number - 1] > INLINE_READ:
                raise FolderBusy  # a big read would hold up every session
            encoded = work(True)
        except FolderBusy:
            encoded = await trio.to_thread.run_sync(work, False)
        if encoded is None:
            self.conn.message_missing()
            return
        if top_lines is None:
            self.retrieved.add(uid)  # \Seen is set at QUIT, with the deletions
        self.conn.message_encoded(encoded)

    async def _update(self, event: pop3.Update) -> None:
        drop = self.maildrop
        assert drop is not None
        deleted = list(event.deleted)
        seen = sorted(self.retrieved.difference(deleted))

        if seen or deleted:
            # Like Dovecot, the session's changes land together in the UPDATE state.
            await trio.to_thread.run_sync(drop.update, seen, deleted)
        if deleted:
            log.info("proto=pop3 user=<%s> deleted=%d", event.owner, len(deleted))
        self._release()
        self.conn.update_done()

    def _release(self) -> None:
        if self.lock_key is not None:
            LOCKS.release(self.lock_key)
            self.lock_key = None

    async def cleanup(self) -> None:
        """Release the maildrop lock and close the stream."""
        self._release()
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            await self.stream.aclose()
