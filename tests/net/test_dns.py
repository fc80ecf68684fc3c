"""DnsPythonResolver against a loopback DNS server; order_mx and nameserver parsing."""

from __future__ import annotations

import random
from collections import Counter

import pytest
import trio

from tests.helpers.dnsserver import DNSServer, Fault, Zone
from tinymail.net.dns import (
    DnsPythonResolver,
    DomainNotFound,
    NullMX,
    TemporaryDNSError,
    order_mx,
    parse_nameserver,
)

ZONE: Zone = {
    "example.test": {
        "MX": ["20 mx3.example.test.", "10 mx1.example.test.", "10 mx2.example.test."],
        "A": ["127.0.0.9"],
    },
    "mx1.example.test": {"A": ["127.0.0.2"], "AAAA": ["::1"]},
    "mx2.example.test": {"A": ["127.0.0.3"]},
    "v6only.test": {"AAAA": ["::1"]},
    "nomx.test": {"A": ["127.0.0.4"]},
    "null.test": {"MX": ["0 ."]},
    "broken.test": Fault.SERVFAIL,
    "gone.test": Fault.NXDOMAIN,
    "slow.test": Fault.DROP,
    "halfbroken.test": {"A": ["127.0.0.5"]},
}


async def resolver_for(nursery: trio.Nursery) -> tuple[DNSServer, DnsPythonResolver]:
    server = DNSServer(ZONE)
    address = await nursery.start(server.serve)
    return server, DnsPythonResolver((address,), timeout=0.3, lifetime=0.6, rng=random.Random(1))


async def test_mx_sorted_by_preference(nursery: trio.Nursery) -> None:
    server, resolver = await resolver_for(nursery)
    hosts = await resolver.mx("EXAMPLE.test")
    assert isinstance(hosts, list)
    assert [pref for pref, _ in hosts] == [10, 10, 20]
    assert {h for _, h in hosts[:2]} == {"mx1.example.test", "mx2.example.test"}
    assert hosts[2] == (20, "mx3.example.test")
    assert ("example.test", "MX") in server.queries


async def test_no_mx_is_empty_list(nursery: trio.Nursery) -> None:
    _, resolver = await resolver_for(nursery)
    assert await resolver.mx("nomx.test") == []


async def test_null_mx(nursery: trio.Nursery) -> None:
    _, resolver = await resolver_for(nursery)
    assert await resolver.mx("null.test") == NullMX()


async def test_nxdomain_is_permanent(nursery: trio.Nursery) -> None:
    _, resolver = await resolver_for(nursery)
    with pytest.raises(DomainNotFound) as info:
        await resolver.mx("gone.test")
    assert info.value.permanent
    with pytest.raises(DomainNotFound):
        await resolver.addresses("unlisted.test")


async def test_servfail_and_timeout_are_temporary(nursery: trio.Nursery) -> None:
    _, resolver = await resolver_for(nursery)
    with pytest.raises(TemporaryDNSError) as info:
        await resolver.mx("broken.test")
    assert not info.value.permanent
    with trio.fail_after(5):
        with pytest.raises(TemporaryDNSError):
            await resolver.mx("slow.test")


async def test_addresses_v6_first(nursery: trio.Nursery) -> None:
    _, resolver = await resolver_for(nursery)
    assert await resolver.addresses("mx1.example.test") == ["::1", "127.0.0.2"]
    assert await resolver.addresses("mx2.example.test") == ["127.0.0.3"]
    assert await resolver.addresses("v6only.test") == ["::1"]
    assert await resolver.addresses("null.test") == []


def test_order_mx_shuffles_equal_preferences_only() -> None:
    records = [(10, "a"), (5, "z"), (10, "b"), (10, "c"), (20, "last")]
    firsts: Counter[str] = Counter()
    rng = random.Random(7)
    for _ in range(300):
        ordered = order_mx(records, rng)
        assert isinstance(ordered, list)
        assert ordered[0] == (5, "z")
        assert ordered[-1] == (20, "last")
        firsts[ordered[1][1]] += 1
    assert set(firsts) == {"a", "b", "c"}
    assert min(firsts.values()) > 50  # roughly uniform over 300 draws


def test_order_mx_null() -> None:
    assert order_mx([(0, "")], random.Random()) == NullMX()


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("127.0.0.1", ("127.0.0.1", 53)),
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("::1", ("::1", 53)),
        ("[::1]:5300", ("::1", 5300)),
        ("[::1]", ("::1", 53)),
    ],
)
def test_parse_nameserver(spec: str, expected: tuple[str, int]) -> None:
    assert parse_nameserver(spec) == expected


async def test_zone_from_text(nursery: trio.Nursery) -> None:
    server = DNSServer.from_text(
        """
        # comment
        text.test        MX   10 mx.text.test.
        text.test        MX   20 mx2.text.test.
        mx.text.test     A    127.0.0.7
        bad.text.test    SERVFAIL
        """
    )
    address = await nursery.start(server.serve)
    resolver = DnsPythonResolver((address,), timeout=0.3, lifetime=0.6)
    assert await resolver.mx("text.test") == [(10, "mx.text.test"), (20, "mx2.text.test")]
    assert await resolver.addresses("mx.text.test") == ["127.0.0.7"]
    with pytest.raises(TemporaryDNSError):
        await resolver.addresses("bad.text.test")
