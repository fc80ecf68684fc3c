"""`tinymail serve`: the nursery tree, listeners, signals and graceful shutdown.

Tree (DESIGN.md "Concurrency"): root nursery = queue runner + services; the
services task owns a handlers nursery (one task per connection) and, inside it,
the accept loops. SIGTERM/SIGINT: stop accepting, give sessions a few seconds
(they get 421 when cancelled), then stop the runner. What was accepted is
already on disk. SIGHUP: reload config (what can change without rebinding),
TLS certificates; users and aliases reload by themselves when their files change.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import trio

from tinymail import heap
from tinymail import log as logsetup
from tinymail.abuse import Admission
from tinymail.config import Config, ConfigError, load_config, parse_listen
from tinymail.delivery.outbound import Outbound
from tinymail.delivery.remote import RemoteCourier, RemoteSettings, read_password_file
from tinymail.net.abuse import forget_guard, guard_of
from tinymail.net.context import AliasSource, ServerState, ServiceContext
from tinymail.net.control import hold_runner_lock, serve_control
from tinymail.net.dns import DnsPythonResolver
from tinymail.net.imap_session import handle_imap
from tinymail.net.pop3_session import handle_pop3
from tinymail.net.privdrop import check_root_policy, drop_privileges
from tinymail.net.smtp_session import handle_smtp
from tinymail.net.tls import TLSHolder, start_server_tls
from tinymail.net.trigger import serve_trigger
from tinymail.queue.groupsync import GroupSync
from tinymail.queue.runner import QueueRunner
from tinymail.queue.schedule import RetryPolicy
from tinymail.queue.spool import Spool
from tinymail.store.format import check_store_format
from tinymail.store.users import UserSource

log = logging.getLogger("tinymail.server")

SHUTDOWN_GRACE = 5.0

Handler = Callable[[trio.abc.Stream, tuple[str, int], ServiceContext], Awaitable[None]]
HANDLERS: dict[str, Handler] = {
    "smtp": handle_smtp,
    "submission": handle_smtp,
    "submissions": handle_smtp,
    "imap": handle_imap,
    "imaps": handle_imap,
    "pop3": handle_pop3,
    "pop3s": handle_pop3,
}
TLS_SERVICES = ("submissions", "imaps", "pop3s")
# Said to a client over the connection cap before closing (implicit TLS ones are just closed).
BUSY = {
    "smtp": b"421 4.7.0 Too many connections, try again later\r\n",  # RFC 5321 3.8
    "submission": b"421 4.7.0 Too many connections, try again later\r\n",
    "imap": b"* BYE [UNAVAILABLE] Too many connections, try again later\r\n",  # RFC 5530
    "pop3": b"-ERR [SYS/TEMP] Too many connections, try again later\r\n",  # RFC 3206
}


def serve_forever(cfg: Config) -> int:
    """Run the server until SIGTERM/SIGINT; returns the exit status."""
    logsetup.setup()
    heap.return_big_buffers()  # scrypt's 16 MiB per login must not stay resident
    check_root_policy(cfg)  # before binding anything
    heap.freeze_startup_heap()  # every module is imported: the first command pays no full GC
    trio.run(partial(serve, cfg, drop_root=True))
    return 0


def remote_courier(cfg: Config) -> RemoteCourier:
    """The outbound SMTP courier for `cfg`; a bad smarthost password file is a ConfigError."""
    password = ""
    if cfg.relay.smarthost_password_file:
        path = cfg.data_dir / cfg.relay.smarthost_password_file
        try:
            password = read_password_file(str(path))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"relay.smarthost_password_file: {exc}") from None
    settings = RemoteSettings(
        hostname=cfg.hostname,
        smarthost_user=cfg.relay.smarthost_user,
        smarthost_password=password,
    )
    return RemoteCourier(settings, DnsPythonResolver(cfg.dns.nameservers))


def build_state(cfg: Config) -> ServerState:
    """Create directories and the shared state of one server."""
    for path in (cfg.data_dir, cfg.mail_dir):
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    check_store_format(cfg.mail_dir, cfg.store.format)  # never mix Maildir and mbox
    spool = Spool(cfg.queue_dir).create()
    users = UserSource(cfg.users_file)
    aliases = AliasSource(cfg.aliases_file, frozenset(cfg.domains))
    group_sync = GroupSync()
    holder: dict[str, ServerState] = {}

    outbound = Outbound(lambda: holder["state"].config, remote_courier(cfg))
    runner = QueueRunner(
        spool,
        lambda: holder["state"].local_delivery(),
        hostname=cfg.hostname,
        is_local=outbound.is_local,
        retry=RetryPolicy(
            cfg.queue.retry_min, cfg.queue.retry_max, cfg.queue.lifetime, cfg.queue.warn_after
        ),
        remote=outbound,
        group_sync=group_sync,
    )
    state = ServerState(
        config=cfg,
        users=users,
        aliases=aliases,
        spool=spool,
        runner=runner,
        tls=TLSHolder.from_config(cfg.tls, cfg.data_dir),
        group_sync=group_sync,
        outbound=outbound,
    )
    holder["state"] = state
    return state


async def open_listeners(cfg: Config) -> list[tuple[str, trio.SocketListener]]:
    """Bind every configured listener; raises OSError naming the address on failure."""
    result: list[tuple[str, trio.SocketListener]] = []
    for service in HANDLERS:
        if service in TLS_SERVICES and not cfg.tls.cert and getattr(cfg.listen, service):
            raise ConfigError(f"listen.{service} needs [tls] cert and key")
        for address in getattr(cfg.listen, service):
            host, port = parse_listen(address)
            try:
                listeners = await trio.open_tcp_listeners(port, host=host)
            except OSError as exc:
                why = f"cannot listen on {address} ({service}): {exc.strerror}"
                raise OSError(exc.errno, why) from None
            result.extend((service, listener) for listener in listeners)
    return result


async def serve(
    cfg: Config,
    *,
    drop_root: bool = False,
    task_status: trio.TaskStatus[ServerState] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The whole server; `task_status.started(state)` once every listener is bound.

    With `drop_root` (the `serve` command), a root process becomes [server] user right after
    binding; in-process callers (tests) leave the process identity alone.
    """
    state = build_state(cfg)
    listeners = await open_listeners(cfg)
    if drop_root:
        drop_privileges(cfg)  # after binding (ports < 1024) and loading the TLS key
    try:
        await _serve_bound(state, listeners, task_status)
    finally:
        forget_guard(state)


async def _serve_bound(
    state: ServerState,
    listeners: list[tuple[str, trio.SocketListener]],
    task_status: trio.TaskStatus[ServerState],
) -> None:
    cfg = state.config
    async with trio.open_nursery() as root:
        await root.start(hold_runner_lock, cfg.queue_dir)  # waits for a one-shot run to end
        await root.start(serve_control, state)
        await root.start(serve_trigger, state)
        await root.start(state.outbound.courier.run)  # reaps idle outbound connections
        await root.start(state.runner.run)
        async with trio.open_nursery() as handlers:
            async with trio.open_nursery() as accepters:
                for service, listener in listeners:
                    ctx = ServiceContext(state, service)
                    accepters.start_soon(_accept_loop, listener, ctx, handlers)
                    host, port = listener.socket.getsockname()[:2]
                    state.bound.setdefault(service, []).append((host, port))
                    log.info("listening service=%s address=%s:%d", service, host, port)
                log.info("tinymail started pid=%d data_dir=%s", os.getpid(), cfg.data_dir)
                task_status.started(state)
                await _wait_for_shutdown(state)
                accepters.cancel_scope.cancel()
            state.shutting_down.set()
            handlers.cancel_scope.deadline = trio.current_time() + SHUTDOWN_GRACE
        root.cancel_scope.cancel()
    log.info("tinymail stopped")


async def _accept_loop(
    listener: trio.SocketListener, ctx: ServiceContext, handlers: trio.Nursery
) -> None:
    handler = HANDLERS[ctx.service]
    await trio.serve_listeners(
        partial(_run_session, handler, ctx), [listener], handler_nursery=handlers
    )


async def _run_session(handler: Handler, ctx: ServiceContext, stream: trio.SocketStream) -> None:
    try:
        peer = stream.socket.getpeername()
        # Research 2.9: trio.serve_listeners does not bound concurrency; the guard does.
        with guard_of(ctx.state).connection(ctx, peer[0]) as admission:
            if admission is not Admission.ADMITTED:
                busy = BUSY.get(ctx.service)
                if busy is not None:
                    with trio.move_on_after(1):
                        await stream.send_all(busy)
                return
            session_stream: trio.abc.Stream = stream
            if ctx.implicit_tls and ctx.tls is not None:
                timeout = ctx.config.limits.tls_handshake_timeout
                session_stream = await start_server_tls(stream, ctx.tls, timeout)
            await handler(session_stream, (peer[0], peer[1]), ctx)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
        log.info("service=%s session ended: %s", ctx.service, exc)
    except Exception:
        log.exception("service=%s session failed", ctx.service)
    finally:
        with trio.CancelScope(shield=True):
            await stream.aclose()


async def _wait_for_shutdown(state: ServerState) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async for signum in signals:
            if signum != signal.SIGHUP:
                log.info("signal %s: shutting down", signal.Signals(signum).name)
                return
            _reload(state)


def _reload(state: ServerState) -> None:
    try:
        new = load_config(_config_path(state.config))
    except ConfigError as exc:
        log.error("SIGHUP: config not reloaded: %s", exc)
        return
    old = state.config
    if new.listen != old.listen or new.data_dir != old.data_dir or new.store != old.store:
        log.warning("SIGHUP: listener, data_dir and store changes need a restart")
        new = dataclasses.replace(new, listen=old.listen, data_dir=old.data_dir, store=old.store)
    state.config = new
    if state.tls is not None:
        try:
            state.tls.reload()
        except ConfigError as exc:
            log.error("SIGHUP: certificates not reloaded: %s", exc)
    elif new.tls.cert:
        try:
            state.tls = TLSHolder.from_config(new.tls, new.data_dir)
        except ConfigError as exc:
            log.error("SIGHUP: TLS not enabled: %s", exc)
    log.info("SIGHUP: configuration reloaded")


def _config_path(cfg: Config) -> Path | None:
    return None if cfg.source == "embedded default" else Path(cfg.source)
