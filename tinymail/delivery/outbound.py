"""The runner's remote courier: routes each recipient from the live config, then delivers.

It reads the config through a getter so a SIGHUP reload of [transport] or
[relay] applies to the next attempt, and it is what decides "local" for the
runner too (a `[transport]` entry of "local" is local delivery). Routes are
remembered per domain for as long as the getter returns the same Config object
(a reload makes a new one), since the runner asks several times per message.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tinymail.config import Config
from tinymail.delivery.courier import Outcome
from tinymail.delivery.remote import MessageSource, RemoteCourier
from tinymail.delivery.resolve import split_address
from tinymail.delivery.router import Route, RouteKind, route_for
from tinymail.queue.model import QueueItem

ROUTE_CACHE = 4096  # domains remembered; past that the cache starts over


class Outbound:
    """Routes recipients and hands remote ones to a RemoteCourier."""

    def __init__(self, config: Callable[[], Config], courier: RemoteCourier):
        self._config = config
        self.courier = courier
        # The runner also asks from its loading threads: a race only computes a route twice.
        self._cache: tuple[Config, dict[str, Route]] | None = None

    def route_of(self, address: str) -> Route:
        """The route for one recipient address under the current config."""
        cfg = self._config()
        _, domain = split_address(address)
        if not domain:
            return Route(RouteKind.LOCAL)
        cache = self._cache
        if cache is None or cache[0] is not cfg or len(cache[1]) >= ROUTE_CACHE:
            cache = self._cache = (cfg, {})
        route = cache[1].get(domain)
        if route is None:
            route = cache[1][domain] = route_for(
                domain,
                local_domains=cfg.domains,
                transport=cfg.transport,
                smarthost=cfg.relay.smarthost,
                smarthost_auth=bool(cfg.relay.smarthost_user),
            )
        return route

    def is_local(self, address: str) -> bool:
        """True when the recipient is delivered into a local mailbox."""
        return self.route_of(address).kind is RouteKind.LOCAL

    async def deliver(
        self, item: QueueItem, recipients: Sequence[str], content: bytes | None = None
    ) -> dict[str, Outcome]:
        """Deliver `item` to remote `recipients`, one transaction per route.

        `content` is the message content when the caller has already read it.
        """
        source = MessageSource(item.path, item.envelope.size, data=content)
        return await self.courier.deliver_all(
            item.envelope.sender, recipients, source, self.route_of
        )
