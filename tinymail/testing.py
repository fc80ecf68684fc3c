"""Small fakes for the seams (DESIGN rule 4): pass them in, never monkeypatch.

- FakeResolver: a map-driven `Resolver` (after mox's dns/mock.go). MX entries are lists of
  (preference, host) returned in that order, or NULL_MX; any name may instead map to an
  exception instance to raise (DomainNotFound, TemporaryDNSError). A name absent from `mx_records`
  has no MX records (the caller falls back to its addresses); absent from `address_records`
  means no address.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tinymail.net.dns import DNSError, MXList, NullMX

NULL_MX = NullMX()


@dataclass
class FakeResolver:
    """`Resolver` from dicts; `queries` records ("MX"|"ADDR", name) in call order."""

    mx_records: Mapping[str, MXList | NullMX | DNSError] = field(default_factory=dict)
    address_records: Mapping[str, Sequence[str] | DNSError] = field(default_factory=dict)
    queries: list[tuple[str, str]] = field(default_factory=list)

    async def mx(self, domain: str) -> MXList | NullMX:
        """The scripted MX answer for `domain`."""
        self.queries.append(("MX", domain))
        answer = self.mx_records.get(domain.lower(), [])
        if isinstance(answer, DNSError):
            raise answer
        return answer if isinstance(answer, NullMX) else list(answer)

    async def addresses(self, host: str) -> list[str]:
        """The scripted addresses for `host`."""
        self.queries.append(("ADDR", host))
        answer = self.address_records.get(host.lower(), [])
        if isinstance(answer, DNSError):
            raise answer
        return list(answer)
