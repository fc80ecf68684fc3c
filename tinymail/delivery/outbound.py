"""The runner's remote courier: routes each recipient from the live config, then delivers.

It reads the config through a getter so a SIGHUP reload of [transport] or
[relay] applies to the next attempt, and it is what decides "local" for the
runner too (a `[transport]` entry of "local" is local delivery).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tinymail.config import Config
from tinymail.delivery.courier import Outcome
from tinymail.delivery.remote import MessageSource, RemoteCourier
from tinymail.delivery.resolve import split_address
from tinymail.delivery.router import Route, RouteKind, route_for
from tinymail.queue.model import QueueItem


class Outbound:
    """Routes recipients and hands remote ones to a RemoteCourier."""

    def __init__(self, config: Callable[[], Config], courier: RemoteCourier):
        self._config = config
        self.courier = courier

    def route_of(self, address: str) -> Route:
        """The route for one recipient address under the current config."""
        cfg = self._config()
        _, domain = split_address(address)
        if not domain:
            return Route(RouteKind.LOCAL)
        return route_for(
            domain,
            local_domains=cfg.domains,
            transport=cfg.transport,
            smarthost=cfg.relay.smarthost,
            smarthost_auth=bool(cfg.relay.smarthost_user),
        )

    def is_local(self, address: str) -> bool:
        """True when the recipient is delivered into a local mailbox."""
        return self.route_of(address).kind is RouteKind.LOCAL

    async def deliver(self, item: QueueItem, recipients: Sequence[str]) -> dict[str, Outcome]:
        """Deliver `item` to remote `recipients`, one transaction per route."""
        source = MessageSource(item.path, item.envelope.size)
        return await self.courier.deliver_all(
            item.envelope.sender, recipients, source, self.route_of
        )
