"""RemoteCourier against real loopback peers: aiosmtpd sinks on 127.0.0.x:25 found through a
loopback DNS server. No test reaches a non-loopback address."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme

from tests.helpers.dnsserver import DNSServer, Fault, Zone
from tests.helpers.sink import Sink
from tinymail.delivery.courier import Outcome, Status
from tinymail.delivery.remote import (
    MessageSource,
    RemoteCourier,
    RemoteSettings,
    read_password_file,
)
from tinymail.delivery.router import Route, RouteKind, TlsPolicy, route_for
from tinymail.net.dns import DnsPythonResolver, DomainNotFound, TemporaryDNSError
from tinymail.net.smtp_client import Timeouts
from tinymail.testing import NULL_MX, FakeResolver

ZONE: Zone = {
    "remote.test": {"MX": ["10 mx1.remote.test."]},
    "mx1.remote.test": {"A": ["127.0.0.2"]},
    "backup.test": {"MX": ["10 dead.backup.test.", "20 live.backup.test."]},
    "dead.backup.test": {"A": ["127.0.0.9"]},  # nothing listens there
    "live.backup.test": {"A": ["127.0.0.3"]},
    "implicit.test": {"A": ["127.0.0.3"]},
    "null.test": {"MX": ["0 ."]},
    "noaddr.test": {"TXT": ['"no mail here"']},
    "broken.test": Fault.SERVFAIL,
    "gone.test": Fault.NXDOMAIN,
    "relay.test": {"A": ["127.0.0.4"]},
    "inject.test": {"A": ["127.0.0.5"]},
}
FAST = Timeouts(connect=2, greeting=3, command=3, mail=3, rcpt=3, data_init=3, data_block=3)
BODY = b"From: a@example.test\nSubject: hi\n\n.leading dot\nbare\rcr\nlast line\n"
WIRE = b"From: a@example.test\r\nSubject: hi\r\n\r\n.leading dot\r\nbare cr\r\nlast line\r\n"


@pytest.fixture
async def resolver(nursery: trio.Nursery) -> DnsPythonResolver:
    server = DNSServer(ZONE)
    address = await nursery.start(server.serve)
    return DnsPythonResolver((address,), timeout=0.5, lifetime=1.0)


@pytest.fixture
def message(tmp_path: Path) -> MessageSource:
    path = tmp_path / "msg"
    path.write_bytes(b"ENVELOPE-PREFIX\n" + BODY + b"TRAILER")
    return MessageSource(str(path), size=len(BODY), offset=len(b"ENVELOPE-PREFIX\n"))


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_tls(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(ctx)
    return ctx


def courier(
    resolver: DnsPythonResolver,
    *,
    timeouts: Timeouts = FAST,
    max_per_destination: int = 4,
    smarthost_user: str = "",
    smarthost_password: str = "",
    verify_context: ssl.SSLContext | None = None,
) -> RemoteCourier:
    settings = RemoteSettings(
        hostname="client.example.test",
        timeouts=timeouts,
        max_per_destination=max_per_destination,
        smarthost_user=smarthost_user,
        smarthost_password=smarthost_password,
        verify_context=verify_context,
    )
    return RemoteCourier(settings, resolver)


def mx(domain: str) -> Route:
    return route_for(domain)


async def test_delivery_by_mx_with_per_recipient_results(
    resolver: DnsPythonResolver, message: MessageSource
) -> None:
    rejects = {"bad@remote.test": "550 5.1.1 no such user", "later@remote.test": "451 4.7.1 grey"}
    with Sink("127.0.0.2", rcpt_replies=rejects, size_limit=10_000) as sink:
        rcpts = ["ok@remote.test", "bad@remote.test", "later@remote.test"]
        c = courier(resolver)
        outcomes = await c.deliver(mx("remote.test"), "a@example.test", rcpts, message)
        await c.aclose()
    relay = "mx1.remote.test[127.0.0.2]:25"
    assert outcomes["ok@remote.test"] == Outcome(Status.OK, "2.0.0", "250 2.0.0 OK queued", relay)
    assert outcomes["bad@remote.test"] == Outcome(
        Status.PERM, "5.1.1", "550 5.1.1 no such user", relay
    )
    assert outcomes["later@remote.test"].status is Status.TEMP
    assert outcomes["later@remote.test"].dsn == "4.7.1"
    [got] = sink.messages
    assert got.mail_from == "a@example.test"
    assert got.rcpt_tos == ("ok@remote.test",)
    # CRLF, dot-stuffing undone by the server, the stray CR neutralised.
    assert got.content == WIRE
    assert f"SIZE={len(WIRE)}" in got.mail_options


async def test_fallback_to_address_without_mx(
    resolver: DnsPythonResolver, message: MessageSource
) -> None:
    with Sink("127.0.0.3") as sink:
        outcomes = await courier(resolver).deliver(
            mx("implicit.test"), "a@example.test", ["x@implicit.test"], message
        )
    assert outcomes["x@implicit.test"].status is Status.OK
    assert outcomes["x@implicit.test"].relay == "implicit.test[127.0.0.3]:25"
    assert len(sink.messages) == 1


async def test_next_mx_when_the_first_refuses_connections(
    resolver: DnsPythonResolver, message: MessageSource
) -> None:
    with Sink("127.0.0.3") as sink:
        outcomes = await courier(resolver).deliver(
            mx("backup.test"), "a@example.test", ["x@backup.test"], message
        )
    assert outcomes["x@backup.test"].status is Status.OK
    assert outcomes["x@backup.test"].relay == "live.backup.test[127.0.0.3]:25"
    assert len(sink.messages) == 1


@pytest.mark.parametrize(
    ("domain", "status", "dsn"),
    [
        ("null.test", Status.PERM, "5.1.10"),
        ("gone.test", Status.PERM, "5.1.2"),
        ("broken.test", Status.TEMP, "4.4.3"),
        ("noaddr.test", Status.PERM, "5.4.4"),
    ],
)
async def test_dns_outcomes(
    resolver: DnsPythonResolver, message: MessageSource, domain: str, status: Status, dsn: str
) -> None:
    rcpt = f"x@{domain}"
    outcomes = await courier(resolver).deliver(mx(domain), "a@example.test", [rcpt], message)
    assert (outcomes[rcpt].status, outcomes[rcpt].dsn) == (status, dsn)


async def test_dns_trouble_for_a_smarthost_is_temporary(
    resolver: DnsPythonResolver, message: MessageSource
) -> None:
    route = route_for("remote.test", smarthost="gone.test:25")
    outcomes = await courier(resolver).deliver(route, "a@example.test", ["x@remote.test"], message)
    assert outcomes["x@remote.test"].status is Status.TEMP


async def test_all_hosts_down_is_temporary(
    resolver: DnsPythonResolver, message: MessageSource
) -> None:
    route = Route(RouteKind.TRANSPORT_HOST, "127.0.0.9", 2526)
    outcomes = await courier(resolver).deliver(route, "a@example.test", ["x@r.test"], message)
    assert outcomes["x@r.test"].status is Status.TEMP
    assert outcomes["x@r.test"].dsn == "4.4.1"


@pytest.mark.parametrize(
    ("behaviour", "dsn"),
    [
        ({"data_reply": "451 4.3.0 try later"}, "4.3.0"),
        ({"mail_reply": "452 4.3.1 full"}, "4.3.1"),
        ({"drop_after_data": True}, "4.4.2"),
        ({"stall_mail": 5.0}, "4.4.2"),
    ],
)
async def test_temporary_failures(
    resolver: DnsPythonResolver, message: MessageSource, behaviour: dict[str, Any], dsn: str
) -> None:
    fast = Timeouts(connect=2, greeting=2, command=2, mail=0.5, rcpt=0.5, data_init=2)
    with Sink("127.0.0.2", **behaviour):
        c = courier(resolver, timeouts=fast)
        with trio.fail_after(10):
            outcomes = await c.deliver(mx("remote.test"), "a@x.test", ["y@remote.test"], message)
        await c.aclose()
    assert outcomes["y@remote.test"].status is Status.TEMP
    assert outcomes["y@remote.test"].dsn == dsn


async def test_permanent_data_reply_bounces(
    resolver: DnsPythonResolver, message: MessageSource
) -> None:
    with Sink("127.0.0.2", data_reply="554 5.7.1 spam"):
        outcomes = await courier(resolver).deliver(
            mx("remote.test"), "a@x.test", ["y@remote.test", "z@remote.test"], message
        )
    assert {o.dsn for o in outcomes.values()} == {"5.7.1"}
    assert {o.status for o in outcomes.values()} == {Status.PERM}


async def test_size_limit_is_never_exceeded(
    resolver: DnsPythonResolver, message: MessageSource
) -> None:
    with Sink("127.0.0.2", size_limit=20) as sink:
        outcomes = await courier(resolver).deliver(
            mx("remote.test"), "a@x.test", ["y@remote.test"], message
        )
    assert (outcomes["y@remote.test"].status, outcomes["y@remote.test"].dsn) == (
        Status.PERM,
        "5.3.4",
    )
    assert sink.messages == []


async def test_smtputf8_needed_but_not_offered(
    resolver: DnsPythonResolver, message: MessageSource
) -> None:
    with Sink("127.0.0.2", smtputf8=False) as sink:
        outcomes = await courier(resolver).deliver(
            mx("remote.test"), "a@x.test", ["jörg@remote.test"], message
        )
    assert outcomes["jörg@remote.test"].dsn == "5.6.7"
    assert sink.messages == []


async def test_helo_fallback(resolver: DnsPythonResolver, message: MessageSource) -> None:
    with Sink("127.0.0.2", refuse_ehlo=True) as sink:
        outcomes = await courier(resolver).deliver(
            mx("remote.test"), "a@x.test", ["y@remote.test"], message
        )
    assert outcomes["y@remote.test"].status is Status.OK
    assert sink.messages[0].mail_options == ()  # no ESMTP parameters after HELO


async def test_opportunistic_starttls(
    resolver: DnsPythonResolver, message: MessageSource, ca: trustme.CA
) -> None:
    # The certificate names another host: opportunistic TLS does not care (RFC 7435).
    with Sink("127.0.0.2", tls=server_tls(ca, "unrelated.test")) as sink:
        outcomes = await courier(resolver).deliver(
            mx("remote.test"), "a@x.test", ["y@remote.test"], message
        )
    assert outcomes["y@remote.test"].status is Status.OK
    assert sink.messages[0].tls


async def test_required_tls_not_offered_defers(
    resolver: DnsPythonResolver, message: MessageSource
) -> None:
    route = Route(RouteKind.TRANSPORT_HOST, "relay.test", 2526, TlsPolicy.REQUIRE)
    with Sink("127.0.0.4", 2526) as sink:
        outcomes = await courier(resolver).deliver(route, "a@x.test", ["y@r.test"], message)
    assert (outcomes["y@r.test"].status, outcomes["y@r.test"].dsn) == (Status.TEMP, "4.7.4")
    assert sink.messages == []


async def test_verified_tls(
    resolver: DnsPythonResolver, message: MessageSource, ca: trustme.CA
) -> None:
    route = Route(RouteKind.TRANSPORT_HOST, "relay.test", 2526, TlsPolicy.VERIFY)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    with Sink("127.0.0.4", 2526, tls=server_tls(ca, "relay.test")) as sink:
        outcomes = await courier(resolver, verify_context=client_ctx).deliver(
            route, "a@x.test", ["y@r.test"], message
        )
    assert outcomes["y@r.test"].status is Status.OK
    assert sink.messages[0].tls
    # Wrong name on the certificate: deferred, and no plaintext fallback.
    with Sink("127.0.0.4", 2526, tls=server_tls(ca, "other.test")) as sink:
        outcomes = await courier(resolver, verify_context=client_ctx).deliver(
            route, "a@x.test", ["y@r.test"], message
        )
    assert (outcomes["y@r.test"].status, outcomes["y@r.test"].dsn) == (Status.TEMP, "4.7.5")
    assert sink.messages == []


@pytest.mark.parametrize(("exclude", "login"), [((), "PLAIN:user"), (("PLAIN",), "LOGIN:user")])
async def test_smarthost_auth_over_starttls(
    resolver: DnsPythonResolver,
    message: MessageSource,
    ca: trustme.CA,
    exclude: tuple[str, ...],
    login: str,
) -> None:
    route = route_for("remote.test", smarthost="relay.test:2587", smarthost_auth=True)
    assert route.tls is TlsPolicy.REQUIRE
    tls = server_tls(ca, "relay.test")
    with Sink("127.0.0.4", 2587, tls=tls, auth=("user", "s3cret"), exclude_auth=exclude) as sink:
        c = courier(resolver, smarthost_user="user", smarthost_password="s3cret")
        outcomes = await c.deliver(route, "a@x.test", ["y@remote.test"], message)
        await c.aclose()
    assert outcomes["y@remote.test"].status is Status.OK
    assert sink.logins == [login]
    assert sink.messages[0].tls


async def test_smarthost_auth_never_in_cleartext(
    resolver: DnsPythonResolver, message: MessageSource
) -> None:
    route = route_for(
        "remote.test",
        smarthost="relay.test:2587",
        smarthost_auth=True,
        smarthost_tls=TlsPolicy.OPPORTUNISTIC,
    )
    with Sink("127.0.0.4", 2587, auth=("user", "s3cret")) as sink:
        c = courier(resolver, smarthost_user="user", smarthost_password="s3cret")
        outcomes = await c.deliver(route, "a@x.test", ["y@remote.test"], message)
    assert (outcomes["y@remote.test"].status, outcomes["y@remote.test"].dsn) == (
        Status.TEMP,
        "4.7.0",
    )
    assert sink.logins == []
    assert sink.messages == []


async def test_connection_reuse_and_concurrency_cap(
    resolver: DnsPythonResolver, message: MessageSource
) -> None:
    with Sink("127.0.0.2") as sink:
        c = courier(resolver, max_per_destination=2)
        for i in range(4):
            out = await c.deliver(mx("remote.test"), "a@x.test", [f"s{i}@remote.test"], message)
            assert out[f"s{i}@remote.test"].status is Status.OK
        assert sink.connections == 1
        results: list[dict[str, Outcome]] = []

        async def one(i: int) -> None:
            results.append(
                await c.deliver(mx("remote.test"), "a@x.test", [f"p{i}@remote.test"], message)
            )

        async with trio.open_nursery() as nursery:
            for i in range(8):
                nursery.start_soon(one, i)
        await c.aclose()
        assert sink.connections <= 2
        assert c.connections_opened == sink.connections
    assert len(sink.messages) == 12
    assert all(o.status is Status.OK for r in results for o in r.values())


async def test_deliver_all_groups_by_route(
    resolver: DnsPythonResolver, message: MessageSource
) -> None:
    with Sink("127.0.0.2") as first, Sink("127.0.0.3") as second:
        c = courier(resolver)
        outcomes = await c.deliver_all(
            "a@x.test",
            ["a@remote.test", "b@implicit.test", "c@remote.test"],
            message,
            lambda rcpt: route_for(rcpt.rpartition("@")[2]),
        )
        await c.aclose()
    assert {o.status for o in outcomes.values()} == {Status.OK}
    assert [m.rcpt_tos for m in first.messages] == [("a@remote.test", "c@remote.test")]
    assert [m.rcpt_tos for m in second.messages] == [("b@implicit.test",)]


def test_password_file_must_not_be_world_readable(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_text("s3cret\n")
    path.chmod(0o600)
    assert read_password_file(str(path)) == "s3cret"
    path.chmod(0o644)
    with pytest.raises(PermissionError):
        read_password_file(str(path))


async def test_opportunistic_tls_failure_falls_back_to_plaintext(
    resolver: DnsPythonResolver, message: MessageSource
) -> None:
    no_cert = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)  # every handshake fails
    with Sink("127.0.0.2", tls=no_cert) as sink:
        outcomes = await courier(resolver).deliver(
            mx("remote.test"), "a@x.test", ["y@remote.test"], message
        )
    assert outcomes["y@remote.test"].status is Status.OK
    assert not sink.messages[0].tls
    assert sink.connections == 2


async def test_421_after_rcpt_defers_everyone(
    resolver: DnsPythonResolver, message: MessageSource
) -> None:
    rcpts = ["a@remote.test", "b@remote.test", "c@remote.test"]
    with Sink("127.0.0.2", rcpt_replies={"b@remote.test": "421 4.3.2 going down"}) as sink:
        c = courier(resolver)
        outcomes = await c.deliver(mx("remote.test"), "s@x.test", rcpts, message)
        await c.aclose()
    assert {r: o.status for r, o in outcomes.items()} == dict.fromkeys(rcpts, Status.TEMP)
    assert outcomes["a@remote.test"].dsn == "4.3.2"
    assert sink.messages == []


async def test_idle_connections_are_closed(
    resolver: DnsPythonResolver, message: MessageSource
) -> None:
    settings = RemoteSettings(hostname="client.test", timeouts=FAST, idle_timeout=0.2)
    c = RemoteCourier(settings, resolver)
    with Sink("127.0.0.2") as sink:
        async with trio.open_nursery() as nursery:
            await nursery.start(c.run)
            await c.deliver(mx("remote.test"), "a@x.test", ["y@remote.test"], message)
            assert sink.open_connections == 1
            for _ in range(100):  # bounded wait for the reaper
                await trio.sleep(0.05)
                if sink.open_connections == 0:
                    break
            assert sink.open_connections == 0
            nursery.cancel_scope.cancel()


def test_timeouts_scale() -> None:
    scaled = Timeouts().scaled(0.01)
    assert scaled.greeting == pytest.approx(3.0)
    assert scaled.data_end == pytest.approx(6.0)


class LineStream:
    """Server side of a scripted fake MX: CRLF lines in, raw bytes out."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buffer = b""

    async def line(self) -> str:
        while b"\r\n" not in self.buffer:
            data = await self.stream.receive_some(4096)
            assert data, "client closed early"
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line.decode()


async def fake_mx_with_injection(
    tls: ssl.SSLContext,
    commands: list[str],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """research 2.2 T4: plaintext "replies" pipelined after the 220 to STARTTLS."""
    [listener] = await trio.open_tcp_listeners(25, host="127.0.0.5")
    task_status.started()
    async with listener, await listener.accept() as raw:
        conn = LineStream(raw)
        await raw.send_all(b"220 fake ESMTP\r\n")
        commands.append(await conn.line())
        await raw.send_all(b"250-fake\r\n250 STARTTLS\r\n")
        commands.append(await conn.line())
        await raw.send_all(b"220 ready\r\n250-INJECTED\r\n250 AUTH PLAIN\r\n")
        secure = trio.SSLStream(raw, tls, server_side=True)
        await secure.do_handshake()
        conn = LineStream(secure)
        answers = {"EHLO": "250 fake-tls", "MAIL": "250 mail ok", "RCPT": "250 rcpt ok"}
        while (line := await conn.line()) != "QUIT":
            commands.append(line.split(" ")[0])
            if line == "DATA":
                await secure.send_all(b"354 go\r\n")
                while await conn.line() != ".":
                    pass
                await secure.send_all(b"250 2.0.0 real final\r\n")
            else:
                await secure.send_all(answers[line.split(" ")[0]].encode() + b"\r\n")
        await secure.send_all(b"221 bye\r\n")


async def test_starttls_discards_injected_plaintext(
    resolver: DnsPythonResolver, message: MessageSource, ca: trustme.CA, nursery: trio.Nursery
) -> None:
    commands: list[str] = []
    await nursery.start(fake_mx_with_injection, server_tls(ca, "inject.test"), commands)
    c = courier(resolver)
    with trio.fail_after(10):
        outcomes = await c.deliver(mx("inject.test"), "a@x.test", ["y@inject.test"], message)
        await c.aclose()
    assert outcomes["y@inject.test"].status is Status.OK
    assert outcomes["y@inject.test"].reply == "250 2.0.0 real final"
    assert commands == [
        "EHLO client.example.test",
        "STARTTLS",
        "EHLO",
        "MAIL",
        "RCPT",
        "DATA",
    ]


async def test_ipv6_then_ipv4_and_dns_failure_of_one_mx(message: MessageSource) -> None:
    """With the FakeResolver: a first MX whose name fails to resolve, then a host whose IPv6
    address refuses connections: delivery goes on to its IPv4 address."""
    resolver = FakeResolver(
        mx_records={"dual.test": [(5, "unresolvable.dual.test"), (10, "mx.dual.test")]},
        address_records={
            "unresolvable.dual.test": TemporaryDNSError("SERVFAIL"),
            "mx.dual.test": ["::1", "127.0.0.3"],
        },
    )
    settings = RemoteSettings(hostname="client.test", timeouts=FAST)
    with Sink("127.0.0.3") as sink:
        c = RemoteCourier(settings, resolver)
        outcomes = await c.deliver(mx("dual.test"), "a@x.test", ["y@dual.test"], message)
        await c.aclose()
    assert outcomes["y@dual.test"].status is Status.OK
    assert outcomes["y@dual.test"].relay == "mx.dual.test[127.0.0.3]:25"
    assert resolver.queries == [
        ("MX", "dual.test"),
        ("ADDR", "unresolvable.dual.test"),
        ("ADDR", "mx.dual.test"),
    ]
    assert len(sink.messages) == 1


async def test_transport_mx_of_another_name_never_bounces_on_dns(message: MessageSource) -> None:
    resolver = FakeResolver(mx_records={"provider.test": DomainNotFound("NXDOMAIN")})
    route = route_for("x.test", transport=(("x.test", "smtp:provider.test"),))
    assert route.kind is RouteKind.TRANSPORT_MX
    c = RemoteCourier(RemoteSettings(hostname="client.test", timeouts=FAST), resolver)
    outcomes = await c.deliver(route, "a@x.test", ["y@x.test"], message)
    assert (outcomes["y@x.test"].status, outcomes["y@x.test"].dsn) == (Status.TEMP, "4.4.3")
    null = FakeResolver(mx_records={"null.test": NULL_MX})
    c = RemoteCourier(RemoteSettings(hostname="client.test", timeouts=FAST), null)
    outcomes = await c.deliver(mx("null.test"), "a@x.test", ["y@null.test"], message)
    assert outcomes["y@null.test"].dsn == "5.1.10"


@pytest.mark.parametrize(
    ("smtputf8", "options"),
    [(True, ("BODY=8BITMIME", "SMTPUTF8")), (False, ("BODY=8BITMIME",))],
)
async def test_eight_bit_and_utf8_header(
    resolver: DnsPythonResolver, tmp_path: Path, smtputf8: bool, options: tuple[str, ...]
) -> None:
    body = "Subject: grüße\n\nbody ü\n".encode()
    path = tmp_path / "utf8"
    path.write_bytes(body)
    with Sink("127.0.0.2", smtputf8=smtputf8) as sink:
        outcomes = await courier(resolver).deliver(
            mx("remote.test"), "a@x.test", ["y@remote.test"], MessageSource(str(path), len(body))
        )
    assert outcomes["y@remote.test"].status is Status.OK
    [got] = sink.messages
    assert got.mail_options == options
    assert got.content == body.replace(b"\n", b"\r\n")


async def test_local_route_is_refused(resolver: DnsPythonResolver, message: MessageSource) -> None:
    with pytest.raises(ValueError):
        await courier(resolver).deliver(Route(RouteKind.LOCAL), "a@x.test", ["y@x.test"], message)


async def test_smarthost_wrong_password_defers(
    resolver: DnsPythonResolver, message: MessageSource, ca: trustme.CA
) -> None:
    route = route_for("remote.test", smarthost="relay.test:2587", smarthost_auth=True)
    tls = server_tls(ca, "relay.test")
    with Sink("127.0.0.4", 2587, tls=tls, auth=("user", "s3cret")) as sink:
        c = courier(resolver, smarthost_user="user", smarthost_password="wrong")
        outcomes = await c.deliver(route, "a@x.test", ["y@remote.test"], message)
    outcome = outcomes["y@remote.test"]
    assert outcome.status is Status.TEMP
    assert outcome.dsn.startswith("4.")
    assert "535" in outcome.reply
    assert sink.messages == []
