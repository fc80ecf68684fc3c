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

from tinymail import log as logsetup
from tinymail.config import Config, ConfigError, load_config, parse_listen
from tinymail.delivery.local import LocalDelivery
from tinymail.net.context import AliasSource, ServerState, ServiceContext
from tinymail.net.smtp_session import handle_smtp
from tinymail.net.tls import TLSHolder
from tinymail.queue.groupsync import GroupSync
from tinymail.queue.runner import QueueRunner, RetryPolicy
from tinymail.queue.spool import Spool
from tinymail.store.users import UserSource

log = logging.getLogger("tinymail.server")

SHUTDOWN_GRACE = 5.0

Handler = Callable[[trio.abc.Stream, tuple[str, int], ServiceContext], Awaitable[None]]
HANDLERS: dict[str, Handler] = {
    "smtp": handle_smtp,
    "submission": handle_smtp,
    "submissions": handle_smtp,
}
TLS_SERVICES = ("submissions", "imaps", "pop3s")


def serve_forever(cfg: Config) -> int:
    """Run the server until SIGTERM/SIGINT; returns the exit status."""
    logsetup.setup()
    trio.run(serve, cfg)
    return 0


def build_state(cfg: Config) -> ServerState:
    """Create directories and the shared state of one server."""
    for path in (cfg.data_dir, cfg.mail_dir):
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    spool = Spool(cfg.queue_dir).create()
    users = UserSource(cfg.users_file)
    aliases = AliasSource(cfg.aliases_file, frozenset(cfg.domains))
    group_sync = GroupSync()
    holder: dict[str, ServerState] = {}

    def local() -> LocalDelivery:
        state = holder["state"]
        return LocalDelivery(
            data_dir=state.config.data_dir,
            users=state.users.current(),
            aliases=state.aliases.current(),
            local_domains=state.config.domains,
        )

    runner = QueueRunner(
        spool,
        local,
        is_local_domain=lambda d: holder["state"].config.is_local_domain(d),
        retry=RetryPolicy(cfg.queue.retry_min, cfg.queue.retry_max, cfg.queue.lifetime),
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
    cfg: Config, *, task_status: trio.TaskStatus[ServerState] = trio.TASK_STATUS_IGNORED
) -> None:
    """The whole server; `task_status.started(state)` once every listener is bound."""
    state = build_state(cfg)
    listeners = await open_listeners(cfg)
    async with trio.open_nursery() as root:
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
        session_stream: trio.abc.Stream = stream
        if ctx.implicit_tls and ctx.tls is not None:
            session_stream = trio.SSLStream(stream, ctx.tls.context, server_side=True)
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
    if new.listen != state.config.listen or new.data_dir != state.config.data_dir:
        log.warning("SIGHUP: listener and data_dir changes need a restart")
        new = dataclasses.replace(new, listen=state.config.listen, data_dir=state.config.data_dir)
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
