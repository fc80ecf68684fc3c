"""The trio adapter around the sans-I/O SMTP server core: moves bytes, runs decisions.

A failure while answering one decision is logged with its traceback and answered
with 451 4.3.0; the session and the server go on.
"""

from __future__ import annotations

import errno
import logging
import time
from email.utils import formatdate

import trio

from tinymail import policy
from tinymail.delivery.local import system_account_exists
from tinymail.delivery.resolve import resolve_local, split_address
from tinymail.net.context import ServiceContext
from tinymail.proto.smtp import events as ev
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
        self.tls_info = ""
        tls_ok = ctx.tls is not None and not ctx.implicit_tls
        self.conn = ServerConnection(
            hostname=cfg.hostname,
            limits=Limits(
                max_message_size=cfg.smtp.max_message_size,
                max_recipients=cfg.smtp.max_recipients,
            ),
            tls_available=tls_ok,
            tls_active=ctx.implicit_tls,
            auth_mechanisms=self._auth_mechanisms(ctx.implicit_tls),
            require_auth=ctx.service in ("submission", "submissions"),
        )
        self.incoming: IncomingMessage | None = None
        self.write_error: OSError | None = None

    def _auth_mechanisms(self, tls_active: bool) -> tuple[str, ...]:
        # AUTH only over TLS, except on loopback (SPEC; research 2.2 T5).
        if tls_active or self.ctx.is_loopback(self.peer):
            return ("PLAIN", "LOGIN")
        return ()

    async def run(self) -> None:
        """The core/adapter loop of DESIGN.md."""
        await self.stream.send_all(self.conn.greeting())
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
            await self.stream.send_all(out)

    async def _receive(self) -> bytes:
        smtp_cfg = self.ctx.config.smtp
        timeout = smtp_cfg.data_timeout if self.incoming else smtp_cfg.command_timeout
        with trio.move_on_after(timeout):
            return bytes(await self.stream.receive_some(65536))
        self.conn.timeout()
        log.info("client=[%s] timeout", self.peer[0])
        return b""

    async def _decide(self, event: ev.Decision) -> Reply:
        try:
            if isinstance(event, ev.MailFrom):
                return policy.SENDER_OK
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

    def _rcpt(self, address: str) -> Reply:
        cfg = self.ctx.config
        _, domain = split_address(address)
        local_domain = not domain or cfg.is_local_domain(domain)
        known = False
        if local_domain:
            known = (
                resolve_local(
                    address,
                    users=self.ctx.users.current(),
                    aliases=self.ctx.state.aliases.current(),
                    local_domains=cfg.domains,
                    system_account=system_account_exists,
                )
                is not None
            )
        may_relay = self.conn.authenticated_as is not None or self.ctx.is_trusted(self.peer)
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
        if not await trio.to_thread.run_sync(spool.has_room, needed):
            log.warning("client=[%s] refusing DATA: queue file system is nearly full", self.peer[0])
            return NO_SPACE
        self.incoming = spool.incoming_message()
        self.write_error = None
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
            f"\t{formatdate(localtime=True)}\n"
        )
        return text.encode("utf-8", "surrogateescape")

    async def _write(self, data: bytes) -> None:
        if self.incoming is None or self.write_error is not None:
            return
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
        try:
            await trio.to_thread.run_sync(incoming.commit, envelope)
        except OSError as exc:
            return _io_error_reply(exc, incoming.qid)
        try:
            await state.group_sync.sync(state.spool.active)
        except OSError as exc:
            await trio.to_thread.run_sync(incoming.spool.remove, incoming.qid)
            return _io_error_reply(exc, incoming.qid)
        log.info(
            "qid=%s from=<%s> size=%d nrcpt=%d proto=%s client=[%s]",
            envelope.qid,
            envelope.sender,
            envelope.size,
            len(envelope.recipients),
            "ESMTP" + ("S" if conn.tls_active else "") if conn.esmtp else "SMTP",
            self.peer[0],
        )
        state.runner.notify(envelope.qid)
        return Reply(250, "2.0.0", f"Ok: queued as {envelope.qid}")

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
        ssl_stream = trio.SSLStream(self.stream, tls.context, server_side=True)
        await ssl_stream.do_handshake()
        self.stream = ssl_stream
        obj = ssl_stream.cipher()
        if obj is not None:
            self.tls_info = f"{obj[1]} with cipher {obj[0]} ({obj[2]} bits)"
        self.conn.tls_started()

    async def _auth(self, event: ev.AuthCredentials) -> Reply:
        db = self.ctx.users.current()
        owner = await trio.to_thread.run_sync(db.verify, event.authcid, event.password)
        if owner is None:
            log.warning(
                "auth failed: service=%s client=[%s] user=<%s>",
                self.ctx.service,
                self.peer[0],
                event.authcid,
            )
            return Reply(535, "5.7.8", "Authentication credentials invalid")
        log.info("auth ok: service=%s client=[%s] user=<%s>", self.ctx.service, self.peer[0], owner)
        return Reply(235, "2.7.0", "Authentication successful")

    async def cleanup(self) -> None:
        """Drop a half-received message and close the stream."""
        with trio.CancelScope(shield=True):
            await self._discard("connection closed")
            with trio.move_on_after(1):
                await self.stream.aclose()


def _io_error_reply(exc: OSError, qid: str) -> Reply:
    log.error("qid=%s not queued: %s", qid, exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return NO_SPACE
    return LOCAL_ERROR
