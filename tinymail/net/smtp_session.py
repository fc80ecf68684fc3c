"""The trio adapter around the sans-I/O SMTP server core: moves bytes, runs decisions.

A failure while answering one decision is logged with its traceback and answered
with 451 4.3.0; the session and the server go on.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import time
from dataclasses import replace
from email.utils import formatdate

import trio

from tinymail import policy
from tinymail.abuse import RequestDeadline
from tinymail.delivery.local import LocalDelivery
from tinymail.delivery.resolve import Resolution, split_address
from tinymail.mail.headers import field_value, iter_fields, parse_address_list
from tinymail.net.abuse import AuthStatus, guard_of, plaintext_auth_allowed
from tinymail.net.context import ServiceContext
from tinymail.net.direct import deliver_direct
from tinymail.net.tls import describe, start_server_tls
from tinymail.net.wire import DirectSender
from tinymail.proto.smtp import events as ev
from tinymail.proto.smtp import replies
from tinymail.proto.smtp.events import CLOSED, NEED_DATA
from tinymail.proto.smtp.replies import Reply
from tinymail.proto.smtp.server import Limits, ServerConnection
from tinymail.queue.model import Envelope
from tinymail.queue.spool import FLUSH_AT, IncomingMessage

log = logging.getLogger("tinymail.smtp")

LOCAL_ERROR = Reply(451, "4.3.0", "Local error in processing; try again later")
NO_SPACE = Reply(452, "4.3.1", "Insufficient system storage")
START_DATA = Reply(354, "", "End data with <CR><LF>.<CR><LF>")
SHUTDOWN = Reply(421, "4.3.2", "Service shutting down, try again later")
# The From: check reads the header block from the first bytes of DATA; a header block longer
# than this is refused for an authenticated sender (it could hide a From: past the limit).
HEADER_CAP = 256 * 1024


async def handle_smtp(stream: trio.abc.Stream, peer: tuple[str, int], ctx: ServiceContext) -> None:
    """Serve one SMTP connection until QUIT, timeout, error or shutdown."""
    session = SMTPSession(stream, peer, ctx)
    try:
        await session.run()
    except trio.Cancelled:
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            await session.stream.send_all(SHUTDOWN.to_bytes())
        raise
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        log.info("client=[%s] connection lost", peer[0])
    finally:
        await session.cleanup()


class SMTPSession:
    """One connection: the core, the stream and the message being received."""

    def __init__(self, stream: trio.abc.Stream, peer: tuple[str, int], ctx: ServiceContext):
        self.stream = stream
        self.peer = peer
        self.ctx = ctx
        cfg = ctx.config
        # Implicit TLS (submissions): serve.py finished the handshake before this session.
        self.tls_info = describe(stream) if isinstance(stream, trio.SSLStream) else ""
        self.guard = guard_of(ctx.state)
        self.deadline: RequestDeadline | None = None
        self.owner: str | None = None  # the users-file entry of a successful AUTH
        self.head = bytearray()  # start of DATA, for the From: check of authenticated senders
        tls_ok = ctx.tls is not None and not ctx.implicit_tls
        plaintext_ok = plaintext_auth_allowed(ctx, peer[0])
        can_auth = tls_ok or ctx.implicit_tls or plaintext_ok
        self.conn = ServerConnection(
            hostname=cfg.hostname,
            limits=Limits(
                max_message_size=cfg.smtp.max_message_size,
                max_recipients=cfg.smtp.max_recipients,
            ),
            tls_available=tls_ok,
            tls_active=ctx.implicit_tls,
            # AUTH only over TLS, except from [auth] plaintext_networks (research 2.2 T5);
            # with no TLS at all it is not offered, else it appears after STARTTLS.
            auth_mechanisms=("PLAIN", "LOGIN") if can_auth else (),
            auth_requires_tls=not plaintext_ok,
            require_auth=ctx.service in ("submission", "submissions"),  # RFC 6409 4.3
        )
        self.incoming: IncomingMessage | None = None
        self.write_error: OSError | None = None
        self._snapshot: LocalDelivery | None = None
        self._resolved: dict[str, Resolution | None] = {}  # under _snapshot
        # Replies on plain TCP skip trio's post-send yield (net/wire.py); last, as it owns an fd.
        self._sender = DirectSender(stream) if isinstance(stream, trio.SocketStream) else None

    async def run(self) -> None:
        """The core/adapter loop of DESIGN.md."""
        await self._send(self.conn.greeting())
        while True:
            event = self.conn.next_event()
            if event is NEED_DATA:
                await self._flush()
                self.conn.receive_data(await self._receive())
            elif event is CLOSED:
                await self._flush()
                return
            elif isinstance(event, ev.DataChunk):
                await self._write(event.data)
            elif isinstance(event, ev.DataAborted):
                await self._discard(event.reason)
            elif isinstance(event, ev.StartTLS):
                await self._start_tls()
            else:
                self.conn.send(await self._decide(event))

    async def _flush(self) -> None:
        out = self.conn.data_to_send()
        if out:
            await self._send(out)
            self.deadline = None  # a reply ends a request: the next one gets a fresh deadline

    async def _send(self, data: bytes) -> None:
        if self._sender is not None:
            await self._sender.send_all(data)
        else:
            await self.stream.send_all(data)

    def _close_sender(self) -> None:
        if self._sender is not None:
            self._sender.close()
            self._sender = None

    async def _receive(self) -> bytes:
        smtp_cfg = self.ctx.config.smtp
        if self.deadline is None:
            timeout = smtp_cfg.data_timeout if self.incoming else smtp_cfg.command_timeout
            self.deadline = self.guard.request_deadline(timeout)
        # Research 2.9: a deadline per request, not per read, so trickled bytes cannot hold
        # the slot; received bytes extend it at [limits] min_data_rate (Postfix).
        with trio.move_on_after(self.deadline.remaining(trio.current_time())):
            data = bytes(await self.stream.receive_some(65536))
            self.deadline.received(len(data), trio.current_time())
            return data
        self.conn.timeout()
        log.info("client=[%s] timeout", self.peer[0])
        return b""

    async def _decide(self, event: ev.Decision) -> Reply:
        try:
            if isinstance(event, ev.MailFrom):
                return self._mail_from(event.address)
            if isinstance(event, ev.RcptTo):
                return self._rcpt(event.address)
            if isinstance(event, ev.DataStart):
                return await self._data_start()
            if isinstance(event, ev.DataEnd):
                return await self._data_end()
            return await self._auth(event)
        except Exception:
            log.exception("client=[%s] internal error answering %s", self.peer[0], type(event))
            await self._discard("internal error")
            return LOCAL_ERROR

    def _login(self) -> str | None:
        return self.owner if self.conn.authenticated_as is not None else None

    def _delivery(self) -> LocalDelivery:
        """Users, aliases and config as of this transaction's MAIL (one look per message)."""
        if self._snapshot is None:
            self._snapshot = self.ctx.state.local_delivery()
        return self._snapshot

    def _resolve(self, address: str) -> Resolution | None:
        """Resolve once per transaction: RCPT, the From: check and direct delivery share it."""
        try:
            return self._resolved[address]
        except KeyError:
            res = self._resolved[address] = self._delivery().resolve(address)
            return res

    def _owners(self, address: str) -> tuple[str, ...]:
        """The mailbox owners a local address resolves to; () for a remote or unknown one."""
        _, domain = split_address(address)
        if domain and not self.ctx.config.is_local_domain(domain):
            return ()
        resolution = self._resolve(address)
        return resolution.mailboxes if resolution is not None else ()

    def _mail_from(self, address: str) -> Reply:
        self._snapshot = None  # a new transaction sees the current users and aliases
        self._resolved.clear()
        login = self._login()
        owners = self._owners(address) if login is not None and address else ()
        reply = policy.sender_reply(address, login=login, owners=owners)
        if not reply.is_success:
            log.info("client=[%s] reject MAIL <%s>: %s", self.peer[0], address, reply.text)
        return reply

    def _from_header(self) -> Reply:
        """The ownership check of every From: address (authenticated sessions only)."""
        login = self._login()
        if login is None:
            return policy.SENDER_OK
        head = bytes(self.head)
        end = head.find(b"\n\n")
        if end < 0 and len(head) >= HEADER_CAP:
            return Reply(553, "5.7.1", "Header section too long to check the From: address")
        addresses = []
        for field in iter_fields(head, 0, len(head) if end < 0 else end + 1):
            if field.name.lower() != b"from":
                continue
            for item in parse_address_list(field_value(head, field)):
                if item.mailbox is None or item.host is None:
                    continue  # RFC 5322 3.4 group markers carry no address
                local = item.mailbox.decode("utf-8", "surrogateescape")
                host = item.host.decode("utf-8", "surrogateescape")
                addresses.append(local if item.host == b"MISSING_DOMAIN" else f"{local}@{host}")
        return policy.from_header_reply(addresses, login=login, owners_of=self._owners)

    def _rcpt(self, address: str) -> Reply:
        cfg = self.ctx.config
        _, domain = split_address(address)
        local_domain = not domain or cfg.is_local_domain(domain)
        known = local_domain and self._resolve(address) is not None
        # Relay rights only matter (and the trusted_networks look is only paid) off the
        # local domains.
        may_relay = not local_domain and (
            self.conn.authenticated_as is not None or self.ctx.is_trusted(self.peer)
        )
        reply = policy.recipient_reply(
            address, local_domain=local_domain, known_local=known, may_relay=may_relay
        )
        if not reply.is_success:
            log.info(
                "client=[%s] reject RCPT <%s>: %s %s", self.peer[0], address, reply.code, reply.text
            )
        return reply

    async def _data_start(self) -> Reply:
        spool = self.ctx.state.spool
        needed = self.ctx.config.smtp.max_message_size * 3 // 2
        room = spool.room_known(needed)  # statvfs at most once a second, off the loop
        if room is None:
            room = await trio.to_thread.run_sync(spool.has_room, needed)
        if not room:
            log.warning("client=[%s] refusing DATA: queue file system is nearly full", self.peer[0])
            return NO_SPACE
        self.incoming = spool.incoming_message()
        self.write_error = None
        self.head.clear()
        self.incoming.write(self._received_header(self.incoming.qid))
        return START_DATA

    def _received_header(self, qid: str) -> bytes:
        conn = self.conn
        proto = ("ESMTP" if conn.esmtp else "SMTP") + ("S" if conn.tls_active else "")
        proto += "A" if conn.authenticated_as else ""
        helo = conn.helo_name or "unknown"
        rcpts = conn.recipients
        tls = f"\n\t(using {self.tls_info})" if self.tls_info else ""
        for_part = f"\n\tfor <{rcpts[0]}>" if len(rcpts) == 1 else ""
        text = (
            f"Received: from {helo} ([{self.peer[0]}]){tls}\n"
            f"\tby {self.ctx.config.hostname} (tinymail) with {proto} id {qid}{for_part};\n"
            f"\t{_date_now()}\n"
        )
        return text.encode("utf-8", "surrogateescape")

    async def _write(self, data: bytes) -> None:
        if self.incoming is None or self.write_error is not None:
            return
        if self.conn.authenticated_as is not None and len(self.head) < HEADER_CAP:
            self.head += data[: HEADER_CAP - len(self.head)]
        self.incoming.write(data)
        if self.incoming.buffered >= FLUSH_AT:
            try:
                await trio.to_thread.run_sync(self.incoming.flush)
            except OSError as exc:
                self.write_error = exc

    async def _data_end(self) -> Reply:
        incoming, self.incoming = self.incoming, None
        if incoming is None:
            return LOCAL_ERROR
        if self.write_error is not None:
            await trio.to_thread.run_sync(incoming.abort)
            return _io_error_reply(self.write_error, incoming.qid)
        refusal = self._from_header()
        self.head.clear()
        if not refusal.is_success:
            log.info("qid=%s client=[%s] reject DATA: %s", incoming.qid, self.peer[0], refusal.text)
            await trio.to_thread.run_sync(incoming.abort)
            return refusal
        conn = self.conn
        envelope = Envelope(
            qid=incoming.qid,
            sender=conn.mail_from or "",
            recipients=conn.recipients,
            arrival=time.time(),
            size=incoming.size,
            origin=f"smtp client=[{self.peer[0]}] helo={conn.helo_name or ''}",
        )
        state = self.ctx.state
        accepted = Reply(250, "2.0.0", f"Ok: queued as {envelope.qid}")
        content = incoming.memory_content()
        if content is not None:  # small message: try the mailboxes first (net/direct.py)
            done = await deliver_direct(state, envelope, content, self._delivery(), self._resolve)
            remaining = tuple(r for r in envelope.recipients if r not in done)
            if not remaining:
                self._log_accepted(envelope)
                return accepted
            envelope = replace(envelope, recipients=remaining)
        try:
            await trio.to_thread.run_sync(incoming.commit, envelope)
        except OSError as exc:
            return _io_error_reply(exc, incoming.qid)
        try:
            await state.group_sync.sync(state.spool.active)
        except OSError as exc:
            await trio.to_thread.run_sync(incoming.spool.remove, incoming.qid)
            return _io_error_reply(exc, incoming.qid)
        self._log_accepted(envelope)
        # The runner's first attempt takes envelope and content from here, not the spool.
        state.runner.notify(envelope.qid, preload=(envelope, content))
        return accepted

    def _log_accepted(self, envelope: Envelope) -> None:
        conn = self.conn
        log.info(
            "qid=%s from=<%s> size=%d nrcpt=%d proto=%s client=[%s]",
            envelope.qid,
            envelope.sender,
            envelope.size,
            len(conn.recipients),
            "ESMTP" + ("S" if conn.tls_active else "") if conn.esmtp else "SMTP",
            self.peer[0],
        )

    async def _discard(self, reason: str) -> None:
        incoming, self.incoming = self.incoming, None
        if incoming is not None:
            log.info("qid=%s client=[%s] message discarded: %s", incoming.qid, self.peer[0], reason)
            await trio.to_thread.run_sync(incoming.abort)

    async def _start_tls(self) -> None:
        await self._flush()
        tls = self.ctx.tls
        if tls is None:  # the core only offers STARTTLS when we said it is available
            raise RuntimeError("STARTTLS without a TLS context")
        timeout = self.ctx.config.limits.tls_handshake_timeout
        self._close_sender()  # from now on everything goes through the TLS stream
        ssl_stream = await start_server_tls(self.stream, tls, timeout)
        self.stream = ssl_stream
        self.tls_info = describe(ssl_stream)
        self.conn.tls_started()

    async def _auth(self, event: ev.AuthCredentials) -> Reply:
        result = await self.guard.authenticate(
            self.ctx.service, self.peer[0], event.authcid, event.password
        )
        if result.status is AuthStatus.OK:
            self.owner = result.owner
            return replies.AUTH_OK
        if result.status is AuthStatus.REFUSED:
            return replies.AUTH_TEMPORARY_FAILURE  # RFC 4954 6: 454 4.7.0
        return replies.AUTH_FAILED  # RFC 4954 6: 535 5.7.8

    async def cleanup(self) -> None:
        """Drop a half-received message and close the stream."""
        with trio.CancelScope(shield=True):
            self._close_sender()
            await self._discard("connection closed")
            if self.conn.ended_by_quit:
                await self.stream.aclose()  # nothing unread: a plain close loses no reply
                return
            with trio.move_on_after(1):
                await _lingering_close(self.stream)


async def _lingering_close(stream: trio.abc.Stream) -> None:
    """Close so the client can still read our last reply (a 421, say).

    Closing a socket with unread input makes the kernel send RST, and a client that
    was still sending then loses the reply. So: send FIN, read and drop what is in
    flight for a moment (bounded by the caller's timeout), then close.
    """
    if isinstance(stream, trio.SocketStream):
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await stream.send_eof()
            for _ in range(16):
                if not await stream.receive_some(65536):
                    break
    await stream.aclose()


_date_cache: tuple[int, str] = (0, "")


def _date_now() -> str:
    """The RFC 5322 date of this second, local time (formatted once per second)."""
    global _date_cache
    second = int(time.time())
    if _date_cache[0] != second:
        _date_cache = (second, formatdate(second, localtime=True))
    return _date_cache[1]


def _io_error_reply(exc: OSError, qid: str) -> Reply:
    log.error("qid=%s not queued: %s", qid, exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return NO_SPACE
    return LOCAL_ERROR
