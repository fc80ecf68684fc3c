"""What every session handler gets: the server's shared state and its own service."""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from tinymail.config import Config
from tinymail.delivery.local import LocalDelivery
from tinymail.delivery.outbound import Outbound
from tinymail.net.direct import MailboxWriter
from tinymail.net.tls import TLSHolder
from tinymail.queue.groupsync import GroupSync
from tinymail.queue.runner import QueueRunner
from tinymail.queue.spool import Spool
from tinymail.store.aliases import Aliases, AliasesError
from tinymail.store.users import UserSource
from tinymail.store.watched import WatchedFile

if TYPE_CHECKING:
    from tinymail.net.abuse import AuthResult


class AliasSource(WatchedFile[Aliases]):
    """The aliases file as the server sees it: re-read when it changes (newaliases, SIGHUP)."""

    def __init__(self, path: Path, local_domains: frozenset[str]):
        def load(p: Path) -> Aliases:
            return Aliases.load(p, local_domains)

        super().__init__(path, load, Aliases({}, local_domains), (AliasesError,), "aliases file")
        self.local_domains = local_domains


@functools.lru_cache(maxsize=32)
def networks(specs: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Parsed networks of a config list (cached: checked on every connection)."""
    return tuple(ipaddress.ip_network(n, strict=False) for n in specs)


@dataclass(slots=True)
class ServerState:
    """Shared by every service of one `tinymail serve`."""

    config: Config
    users: UserSource
    aliases: AliasSource
    spool: Spool
    runner: QueueRunner
    tls: TLSHolder | None
    group_sync: GroupSync
    outbound: Outbound
    shutting_down: trio.Event = field(default_factory=trio.Event)
    mailbox_writer: MailboxWriter = field(default_factory=MailboxWriter)  # net/direct.py
    bound: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # service -> addresses

    def local_delivery(self) -> LocalDelivery:
        """Local delivery with the current config, users and aliases."""
        return LocalDelivery(
            data_dir=self.config.data_dir,
            users=self.users.current(),
            aliases=self.aliases.current(),
            local_domains=self.config.domains,
            store_format=self.config.store.format,
        )


@dataclass(frozen=True, slots=True)
class ServiceContext:
    """One listener's view: the shared state plus which service it is."""

    state: ServerState
    service: str  # "smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s"

    @property
    def config(self) -> Config:
        """The running config."""
        return self.state.config

    @property
    def users(self) -> UserSource:
        """The users file, reloaded on change."""
        return self.state.users

    @property
    def tls(self) -> TLSHolder | None:
        """The server TLS context holder, if [tls] is configured."""
        return self.state.tls

    @property
    def implicit_tls(self) -> bool:
        """True for submissions, imaps and pop3s."""
        return self.service in ("submissions", "imaps", "pop3s")

    def is_loopback(self, peer: tuple[str, int] | str) -> bool:
        """True when the peer address is a loopback address."""
        host = peer[0] if isinstance(peer, tuple) else peer
        try:
            return ipaddress.ip_address(host.split("%")[0]).is_loopback
        except ValueError:
            return False

    def plaintext_auth_allowed(self, host: str) -> bool:
        """True when `host` may authenticate without TLS ([auth] plaintext_networks)."""
        from tinymail.net.abuse import plaintext_auth_allowed  # the guard imports this module

        return plaintext_auth_allowed(self, host)

    async def login(self, host: str, authcid: str, password: str) -> AuthResult:
        """Check credentials through the server's one login path (penalties, budget, log)."""
        from tinymail.net.abuse import guard_of

        return await guard_of(self.state).authenticate(self.service, host, authcid, password)

    def is_trusted(self, peer: tuple[str, int] | str) -> bool:
        """True when the peer is in [relay] trusted_networks."""
        host = peer[0] if isinstance(peer, tuple) else peer
        return _in_networks(host, self.config.relay.trusted_networks)


@functools.lru_cache(maxsize=1024)
def _in_networks(host: str, specs: tuple[str, ...]) -> bool:
    """True when `host` (an address, maybe with a %zone) is in one of the networks `specs`.

    Cached: asked on every connection, mostly for the same few clients.
    """
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return any(ip in net for net in networks(specs))
