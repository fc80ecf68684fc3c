"""DNS for outbound delivery: the Resolver seam and its dnspython implementation under trio.

Rules
- `mx()` returns the MX hosts in the order to try them: ascending preference, random order among
  equal preferences (RFC 5321 5.1 "MUST be randomized" to spread load). An empty list means the
  domain exists but has no MX records: the caller falls back to its A/AAAA (implicit MX).
- A null MX ("MX 0 .", RFC 7505 3) is a distinct result, `NullMX`, so the caller bounces at once.
- NXDOMAIN is permanent (`DomainNotFound`); SERVFAIL, REFUSED, timeouts and unreachable
  nameservers are temporary (`TemporaryDNSError`): a DNS outage must never bounce mail.
- `addresses()` returns IPv6 then IPv4 addresses (RFC 6724-style preference for v6 first).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Protocol

import dns.asyncbackend
import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.rdata
import dns.rdatatype
import dns.resolver
from dns.rdtypes.ANY.MX import MX


class DNSError(Exception):
    """Base of the typed DNS failures; `permanent` tells bounce from retry."""

    permanent = False


class DomainNotFound(DNSError):
    """NXDOMAIN: the name does not exist (permanent)."""

    permanent = True


class TemporaryDNSError(DNSError):
    """SERVFAIL, timeout or no reachable nameserver: try again later."""


@dataclass(frozen=True, slots=True)
class NullMX:
    """RFC 7505: the domain publishes "MX 0 ." and accepts no mail."""


MXList = list[tuple[int, str]]


class Resolver(Protocol):
    """What delivery needs from DNS."""

    async def mx(self, domain: str) -> MXList | NullMX:
        """MX hosts as (preference, host) in the order to try; [] when there are none."""
        ...

    async def addresses(self, host: str) -> list[str]:
        """IPv6 then IPv4 addresses of a host; [] when it has none."""
        ...


def order_mx(records: list[tuple[int, str]], rng: random.Random) -> MXList | NullMX:
    """Sort by preference, shuffling equal preferences; detect a null MX (RFC 7505 3)."""
    if any(host in ("", ".") for _, host in records):
        # RFC 7505 3: a null MX is the only record; treat any "." target as the domain opting out.
        return NullMX()
    shuffled = list(records)
    rng.shuffle(shuffled)
    return sorted(shuffled, key=lambda rec: rec[0])  # stable sort keeps the shuffle among equals


def parse_nameserver(spec: str) -> tuple[str, int]:
    """ "ip", "ip:port", "[v6]:port" or a bare IPv6 address -> (ip, port)."""
    if spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        port = rest.removeprefix(":")
        return host, int(port) if port else 53
    if spec.count(":") == 1:
        host, port = spec.split(":")
        return host, int(port)
    return spec, 53


class DnsPythonResolver:
    """`Resolver` on dnspython's async resolver with its trio backend."""

    def __init__(
        self,
        nameservers: tuple[str, ...] = (),
        *,
        timeout: float = 5.0,
        lifetime: float = 15.0,
        rng: random.Random | None = None,
    ) -> None:
        """Use the given "ip[:port]" nameservers, or the system's (/etc/resolv.conf) if none."""
        try:
            self._resolver = dns.asyncresolver.Resolver(configure=not nameservers)
        except dns.resolver.NoResolverConfiguration:
            # No usable /etc/resolv.conf: a local caching resolver is the only sane guess.
            self._resolver = dns.asyncresolver.Resolver(configure=False)
            nameservers = ("127.0.0.1",)
        if nameservers:
            self._resolver.nameservers = [
                dns.nameserver.Do53Nameserver(*parse_nameserver(spec)) for spec in nameservers
            ]
        self._resolver.timeout = timeout
        self._resolver.lifetime = lifetime
        self._backend = dns.asyncbackend.get_backend("trio")
        self._rng = rng or random.Random()

    async def mx(self, domain: str) -> MXList | NullMX:
        """MX lookup; NODATA gives [] (implicit MX, RFC 5321 5.1)."""
        answer = await self._query(domain, "MX")
        records: list[tuple[int, str]] = []
        for rdata in answer:
            assert isinstance(rdata, MX)
            records.append((rdata.preference, rdata.exchange.to_text(omit_final_dot=True).lower()))
        return order_mx(records, self._rng)

    async def addresses(self, host: str) -> list[str]:
        """AAAA then A; a failure of one family is ignored when the other answers."""
        found: list[str] = []
        failure: DNSError | None = None
        for rdtype in ("AAAA", "A"):
            try:
                found += [rdata.to_text() for rdata in await self._query(host, rdtype)]
            except DNSError as exc:
                failure = exc
        if not found and failure is not None:
            raise failure
        return found

    async def _query(self, name: str, rdtype: str) -> list[dns.rdata.Rdata]:
        try:
            answer = await self._resolver.resolve(
                name, rdtype, raise_on_no_answer=False, search=False, backend=self._backend
            )
        except dns.resolver.NXDOMAIN as exc:
            raise DomainNotFound(f"{name}: no such domain") from exc
        except (dns.resolver.NoNameservers, dns.exception.Timeout) as exc:
            raise TemporaryDNSError(f"{name} {rdtype}: {exc}") from exc
        except dns.exception.DNSException as exc:
            # Anything else (malformed answer, YXDOMAIN...) is not proof the domain is gone.
            raise TemporaryDNSError(f"{name} {rdtype}: {exc}") from exc
        return list(answer.rrset) if answer.rrset is not None else []
