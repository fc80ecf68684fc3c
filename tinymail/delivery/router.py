"""Pure routing: which next hop a recipient domain goes to.

Rules (issue 4, SPEC [relay]/[transport])
- Local domains are LOCAL.
- Then the [transport] map, exact domain first, then ".parent" entries for subdomains (as in
  Postfix transport(5)):  "local" | "smtp:[host]:port" (that host, no MX lookup) |
  "smtp:host[:port]" (the MX hosts of `host`, RFC 5321 5.1 applied to another name).
- Then the smarthost if set ("host:port" or "[host]:port": that host, no MX lookup).
- Else MX: the MX hosts of the recipient's domain.
- A Route is hashable: the remote courier pools connections and caps concurrency per Route.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Sequence
from dataclasses import dataclass

SMTP_PORT = 25


class RouteKind(enum.Enum):
    """How the next hop is found."""

    LOCAL = "local"
    MX = "mx"  # the recipient domain's own MX hosts; only here may DNS answers bounce mail
    TRANSPORT_HOST = "transport-host"  # transport smtp:[host]:port: that host's addresses
    TRANSPORT_MX = "transport-mx"  # transport smtp:host[:port]: the MX hosts of another name
    SMARTHOST = "smarthost"  # [relay] smarthost: that host's addresses, AUTH when configured


class TlsPolicy(enum.Enum):
    """RFC 7435 opportunistic by default; stricter per destination."""

    OPPORTUNISTIC = "may"  # STARTTLS when offered, certificate not checked, plaintext fallback
    REQUIRE = "encrypt"  # STARTTLS must succeed (certificate not checked)
    VERIFY = "verify"  # STARTTLS with a certificate valid for the host name


@dataclass(frozen=True, slots=True)
class Route:
    """A next hop: `host` is a name to look up MX for (*MX kinds) or a host name or IP."""

    kind: RouteKind
    host: str = ""
    port: int = SMTP_PORT
    tls: TlsPolicy = TlsPolicy.OPPORTUNISTIC
    auth: bool = False  # smarthost AUTH with the configured credentials

    def describe(self) -> str:
        """For logs: "mx:example.net", "transport-host:[127.0.0.1]:2626", "smarthost:[h]:587"."""
        if self.kind is RouteKind.LOCAL:
            return "local"
        if self.kind in (RouteKind.MX, RouteKind.TRANSPORT_MX):
            suffix = f":{self.port}" if self.port != SMTP_PORT else ""
            return f"{self.kind.value}:{self.host}{suffix}"
        return f"{self.kind.value}:[{self.host}]:{self.port}"


class RouteError(ValueError):
    """A route string that does not parse (config validation should have caught it)."""


def parse_hostport(spec: str, default_port: int = SMTP_PORT) -> tuple[str, int, bool]:
    """ "[host]:port", "host:port", "host", "[v6addr]" -> (host, port, bracketed)."""
    if spec.startswith("["):
        host, sep, rest = spec[1:].partition("]")
        if not sep or not host or (rest and not rest.startswith(":")):
            raise RouteError(f"bad host {spec!r}")
        port_text, bracketed = rest[1:], True
    elif spec.count(":") == 1:
        host, port_text = spec.split(":")
        bracketed = False
    else:
        host, port_text, bracketed = spec, "", False
    if not host or (port_text and not port_text.isdigit()):
        raise RouteError(f"bad host {spec!r}")
    port = int(port_text) if port_text else default_port
    if not 0 < port < 65536:
        raise RouteError(f"bad port in {spec!r}")
    return host.lower().rstrip("."), port, bracketed


def parse_transport(value: str, tls: TlsPolicy = TlsPolicy.OPPORTUNISTIC) -> Route:
    """One [transport] value: "local", "smtp:[host]:port" or "smtp:host[:port]"."""
    if value == "local":
        return Route(RouteKind.LOCAL)
    if not value.startswith("smtp:"):
        raise RouteError(f"bad route {value!r}")
    host, port, bracketed = parse_hostport(value[5:])
    # Postfix transport(5): brackets suppress the MX lookup.
    kind = RouteKind.TRANSPORT_HOST if bracketed else RouteKind.TRANSPORT_MX
    return Route(kind, host, port, tls)


def _transport_entry(domain: str, transport: Sequence[tuple[str, str]]) -> str | None:
    table = {key.lower().rstrip("."): value for key, value in transport}
    if domain in table:
        return table[domain]
    labels = domain.split(".")
    for i in range(1, len(labels)):
        parent = "." + ".".join(labels[i:])
        if parent in table:
            return table[parent]
    return None


def route_for(
    domain: str,
    *,
    local_domains: Collection[str] = (),
    transport: Sequence[tuple[str, str]] = (),
    smarthost: str = "",
    smarthost_auth: bool = False,
    smarthost_tls: TlsPolicy | None = None,
    transport_tls: TlsPolicy = TlsPolicy.OPPORTUNISTIC,
) -> Route:
    """The route for a recipient domain (see the module rules).

    A smarthost with AUTH defaults to TlsPolicy.REQUIRE: credentials never go out in the clear,
    so a smarthost without STARTTLS defers instead of leaking the password.
    """
    domain = domain.lower().rstrip(".")
    if domain in {d.lower().rstrip(".") for d in local_domains}:
        return Route(RouteKind.LOCAL)
    entry = _transport_entry(domain, transport)
    if entry is not None:
        return parse_transport(entry, transport_tls)
    if smarthost:
        host, port, _ = parse_hostport(smarthost)
        default = TlsPolicy.REQUIRE if smarthost_auth else TlsPolicy.OPPORTUNISTIC
        return Route(RouteKind.SMARTHOST, host, port, smarthost_tls or default, smarthost_auth)
    return Route(RouteKind.MX, domain)
