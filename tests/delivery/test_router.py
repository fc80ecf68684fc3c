"""Pure routing decisions."""

from __future__ import annotations

import pytest

from tinymail.delivery.router import (
    Route,
    RouteError,
    RouteKind,
    TlsPolicy,
    parse_hostport,
    parse_transport,
    route_for,
)

TRANSPORT = (
    ("example.net", "smtp:[127.0.0.1]:2626"),
    ("lists.example.test", "local"),
    ("other.test", "smtp:mail.provider.test"),
    (".corp.test", "smtp:[gw.corp.test]"),
)


def test_local_domain_wins() -> None:
    assert route_for("Example.TEST.", local_domains=["example.test"]) == Route(RouteKind.LOCAL)


def test_transport_bracketed_host_port() -> None:
    route = route_for("EXAMPLE.net", transport=TRANSPORT, smarthost="relay.test:587")
    assert route == Route(RouteKind.TRANSPORT_HOST, "127.0.0.1", 2626)


def test_transport_local() -> None:
    assert route_for("lists.example.test", transport=TRANSPORT).kind is RouteKind.LOCAL


def test_transport_mx_of_another_name() -> None:
    assert route_for("other.test", transport=TRANSPORT) == Route(
        RouteKind.TRANSPORT_MX, "mail.provider.test", 25
    )


def test_transport_parent_domain_entry_matches_subdomains_only() -> None:
    assert route_for("a.b.corp.test", transport=TRANSPORT) == Route(
        RouteKind.TRANSPORT_HOST, "gw.corp.test", 25
    )
    assert route_for("corp.test", transport=TRANSPORT) == Route(RouteKind.MX, "corp.test")


def test_transport_tls_policy_is_applied() -> None:
    route = route_for("example.net", transport=TRANSPORT, transport_tls=TlsPolicy.VERIFY)
    assert route.tls is TlsPolicy.VERIFY


def test_smarthost() -> None:
    route = route_for("anywhere.test", smarthost="[Relay.Test]:587", smarthost_auth=True)
    assert route == Route(RouteKind.SMARTHOST, "relay.test", 587, TlsPolicy.REQUIRE, auth=True)
    plain = route_for("anywhere.test", smarthost="relay.test")
    assert plain == Route(RouteKind.SMARTHOST, "relay.test", 25, TlsPolicy.OPPORTUNISTIC)
    verified = route_for("x.test", smarthost="relay.test:25", smarthost_tls=TlsPolicy.VERIFY)
    assert verified.tls is TlsPolicy.VERIFY


def test_default_is_mx_of_the_domain() -> None:
    assert route_for("Remote.Test.", smarthost="") == Route(RouteKind.MX, "remote.test")


def test_routes_are_hashable_and_group_domains() -> None:
    routes = {route_for(d, smarthost="relay.test:25") for d in ("a.test", "b.test", "c.test")}
    assert len(routes) == 1


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("host", ("host", 25, False)),
        ("host:2525", ("host", 2525, False)),
        ("[host]", ("host", 25, True)),
        ("[::1]:2526", ("::1", 2526, True)),
        ("[127.0.0.1]:25", ("127.0.0.1", 25, True)),
    ],
)
def test_parse_hostport(spec: str, expected: tuple[str, int, bool]) -> None:
    assert parse_hostport(spec) == expected


@pytest.mark.parametrize("spec", ["", "[host", "[]:25", "host:port", "host:0", "[h]x", "h:99999"])
def test_parse_hostport_rejects(spec: str) -> None:
    with pytest.raises(RouteError):
        parse_hostport(spec)


@pytest.mark.parametrize("value", ["lmtp:[x]", "smtp:", "relay"])
def test_parse_transport_rejects(value: str) -> None:
    with pytest.raises(RouteError):
        parse_transport(value)


def test_describe() -> None:
    assert Route(RouteKind.MX, "a.test").describe() == "mx:a.test"
    route = Route(RouteKind.TRANSPORT_HOST, "127.0.0.1", 2626)
    assert route.describe() == "transport-host:[127.0.0.1]:2626"
    assert Route(RouteKind.TRANSPORT_MX, "b.test", 2525).describe() == "transport-mx:b.test:2525"
    assert Route(RouteKind.LOCAL).describe() == "local"
