"""The trio side of the abuse limits: one authentication path and one log format for all.

SMTP, IMAP and POP3 adapters verify credentials only through `AbuseGuard.authenticate`, so the
penalty, the budget, the users-file lookup and the log line are the same for every protocol.
The log lines are the contract of contrib/fail2ban/filter.d/tinymail.conf:

    auth failed: service=imap client=[192.0.2.7] user=<bob@example.test>
    auth refused: service=smtp client=[192.0.2.7] user=<bob@example.test> reason=too-many-failures

The user name is printed through `log_safe`, so a name chosen by an attacker can never forge a
second `client=[...]` for fail2ban to ban.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum

import trio

from tinymail.abuse import (
    Admission,
    AuthPenalties,
    ConnectionCounts,
    PenaltyRules,
    RequestDeadline,
    Verdict,
    client_key,
)
from tinymail.config import Config
from tinymail.net.context import ServerState, ServiceContext, networks

log = logging.getLogger("tinymail.auth")

_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_@+=")
MAX_LOGGED_NAME = 100


def log_safe(text: str) -> str:
    """`text` with anything outside [A-Za-z0-9.-_@+=] as `?`, cut to 100 characters."""
    return "".join(c if c in _SAFE else "?" for c in text[:MAX_LOGGED_NAME])


class AuthStatus(Enum):
    """How an authentication attempt ended."""

    OK = "ok"
    FAILED = "failed"  # wrong user or password: SMTP 535 5.7.8, IMAP NO [AUTHENTICATIONFAILED]
    REFUSED = (
        "refused"  # the client is over its failure budget: SMTP 454 4.7.0, IMAP NO [UNAVAILABLE]
    )


@dataclass(frozen=True, slots=True)
class AuthResult:
    """The outcome of `AbuseGuard.authenticate`; `owner` is the users-file entry on success."""

    status: AuthStatus
    owner: str | None = None


def _rules(cfg: Config) -> PenaltyRules:
    a = cfg.auth
    return PenaltyRules(a.failure_delay, a.max_delay, a.max_failures, a.failure_window, a.ban_time)


class AbuseGuard:
    """Per-server abuse state: auth penalties and connection counts (in memory, like anvil)."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.penalties = AuthPenalties(_rules(state.config))
        limits = state.config.limits
        self.connections = ConnectionCounts(limits.connections_per_ip, limits.connections)
        self._fingerprint_key = secrets.token_bytes(16)

    def _refresh(self) -> None:
        # SIGHUP may have changed [auth] or [limits]; the counts themselves carry over.
        cfg = self.state.config
        self.penalties.rules = _rules(cfg)
        self.connections.per_client = cfg.limits.connections_per_ip
        self.connections.total = cfg.limits.connections

    async def authenticate(
        self, service: str, host: str, authcid: str, password: str
    ) -> AuthResult:
        """Verify credentials against the users file, with the client's penalty applied first.

        Logs every failure and refusal in the fixed format above. Blocking work (the password
        hash) runs in a worker thread.
        """
        self._refresh()
        key = client_key(host)
        verdict, delay = self.penalties.begin(key, trio.current_time())
        user = log_safe(authcid)
        if verdict is Verdict.REFUSED:
            log.warning(
                "auth refused: service=%s client=[%s] user=<%s> reason=too-many-failures",
                service,
                host,
                user,
            )
            return AuthResult(AuthStatus.REFUSED)
        owner: str | None = None
        try:
            await trio.sleep(delay)  # before verifying: a quick answer never means "wrong"
            db = self.state.users.current()
            owner = await trio.to_thread.run_sync(db.verify, authcid, password)
        except BaseException:
            self.penalties.abandoned(key, trio.current_time())
            raise
        if owner is None:
            mark = hmac.new(self._fingerprint_key, f"{authcid}\0{password}".encode(), "sha256")
            self.penalties.failed(key, trio.current_time(), mark.digest())
            log.warning("auth failed: service=%s client=[%s] user=<%s>", service, host, user)
            return AuthResult(AuthStatus.FAILED)
        self.penalties.succeeded(key, trio.current_time())
        log.info("auth ok: service=%s client=[%s] user=<%s>", service, host, log_safe(owner))
        return AuthResult(AuthStatus.OK, owner)

    @contextlib.contextmanager
    def connection(self, ctx: ServiceContext, host: str) -> Iterator[Admission]:
        """Count one connection for its lifetime; yields whether it may be served."""
        self._refresh()
        key = client_key(host)
        admission = self.connections.admit(key, exempt=ctx.is_trusted(host))
        if admission is not Admission.ADMITTED:
            log.warning(
                "connection refused: service=%s client=[%s] reason=%s",
                ctx.service,
                host,
                admission.value.replace(" ", "-"),
            )
            yield admission
            return
        try:
            yield admission
        finally:
            self.connections.release(key)

    def request_deadline(self, timeout: float) -> RequestDeadline:
        """A deadline for one request (command or DATA) from now, with [limits] min_data_rate."""
        rate = self.state.config.limits.min_data_rate
        return RequestDeadline(timeout, float(rate), trio.current_time())


def plaintext_auth_allowed(ctx: ServiceContext, host: str) -> bool:
    """True when `host` is in [auth] plaintext_networks (AUTH without TLS is allowed)."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in networks(ctx.config.auth.plaintext_networks))


# ServerState has no slot for this yet; until it grows an `abuse` field, one guard per running
# server is kept here (serve() calls forget_guard when it stops).
_GUARDS: dict[int, tuple[ServerState, AbuseGuard]] = {}


def guard_of(state: ServerState) -> AbuseGuard:
    """The abuse guard of a running server (created on first use)."""
    entry = _GUARDS.get(id(state))
    if entry is None or entry[0] is not state:
        entry = (state, AbuseGuard(state))
        _GUARDS[id(state)] = entry
    return entry[1]


def forget_guard(state: ServerState) -> None:
    """Drop the guard of a server that stopped."""
    entry = _GUARDS.get(id(state))
    if entry is not None and entry[0] is state:
        del _GUARDS[id(state)]
