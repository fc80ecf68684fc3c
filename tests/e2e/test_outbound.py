"""Outbound delivery end to end: smtplib -> in-process `tinymail serve` -> queue -> the remote
courier -> aiosmtpd sinks on 127.0.0.20-26, found through a loopback DNS server.

MX hosts listen on port 25 of their own loopback address, as on the Internet. Bounces go to the
local sender alice@example.test and are read back from her Maildir with Python's email package.
No test reaches a non-loopback address: every name is answered by tests/helpers/dnsserver.py.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import logging
import mailbox
import re
import smtplib
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import pytest
import trio
import trustme

from tests.conftest import add_user
from tests.helpers.dnsserver import DNSServer, Zone
from tests.helpers.sink import Sink
from tinymail.config import Config, ConfigError, load_config
from tinymail.net.context import ServerState
from tinymail.net.serve import build_state, serve
from tinymail.store.layout import mailbox_path

SENDER = "alice@example.test"
ZONE: Zone = {
    "mx.test": {"MX": ["10 mx1.mx.test."]},
    "mx1.mx.test": {"A": ["127.0.0.20"]},
    "afallback.test": {"A": ["127.0.0.21"]},  # no MX: RFC 5321 5.1 implicit MX
    "soft.test": {"MX": ["10 mx.soft.test."]},
    "mx.soft.test": {"A": ["127.0.0.22"]},
    "dead.test": {"MX": ["10 mx.dead.test."]},
    "mx.dead.test": {"A": ["127.0.0.23"]},  # nothing listens there
    "hard.test": {"MX": ["10 mx.hard.test."]},
    "mx.hard.test": {"A": ["127.0.0.24"]},
    "null.test": {"MX": ["0 ."]},  # RFC 7505 null MX
}
CONFIG = """\
hostname = "mx.example.test"
domains = ["example.test"]
data_dir = "{data_dir}"

[listen]
smtp = ["127.0.0.1:0"]
submission = []
imap = []
pop3 = []

[queue]
retry_min = "1s"
retry_max = "1s"
lifetime = "{lifetime}"
warn_after = "{warn_after}"

[dns]
nameservers = ["{dns}"]

[transport]
"example.net" = "smtp:[127.0.0.25]:2626"

[server]
allow_root = true
{extra}
"""
# One line per attempt (DESIGN.md): qid, to, relay host[ip]:port, delay, dsn, status.
ATTEMPT = re.compile(
    r"qid=(?P<qid>\w+) to=<(?P<to>[^>]+)> relay=(?P<relay>\S+) delay=\d+\.\d\d "
    r"dsn=(?P<dsn>\d\.\d+\.\d+) status=(?P<status>sent|deferred|bounced) \(.*\)"
)


class Starter(Protocol):
    """The `start` fixture: writes the config, adds alice, starts the server."""

    async def __call__(
        self,
        *,
        lifetime: str = ...,
        warn_after: str = ...,
        extra: str = ...,
        before: Callable[[Config], None] | None = ...,
    ) -> ServerState: ...


@pytest.fixture
async def dns(nursery: trio.Nursery) -> DNSServer:
    server = DNSServer(ZONE)
    await nursery.start(server.serve)
    return server


@pytest.fixture
def start(
    nursery: trio.Nursery,
    tmp_path: Path,
    dns: DNSServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> Starter:
    """`await start(lifetime=..., warn_after=..., extra=...)` -> a running server's state."""
    caplog.set_level(logging.INFO, logger="tinymail")

    async def run(
        *,
        lifetime: str = "1h",
        warn_after: str = "1h",
        extra: str = "",
        before: Callable[[Config], None] | None = None,
    ) -> ServerState:
        path = tmp_path / "tinymail.toml"
        path.write_text(
            CONFIG.format(
                data_dir=tmp_path / "data",
                lifetime=lifetime,
                warn_after=warn_after,
                dns=dns.address,
                extra=extra,
            )
        )
        add_user(path, SENDER, "alice-pw", monkeypatch)
        cfg = load_config(path)
        if before is not None:
            before(cfg)
        state: ServerState = await nursery.start(serve, cfg)
        return state

    return run


def send(state: ServerState, rcpts: list[str], subject: str = "outbound") -> None:
    port = state.bound["smtp"][0][1]
    body = f"From: {SENDER}\r\nSubject: {subject}\r\n\r\nhello\r\n".encode()
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        assert client.sendmail(SENDER, rcpts, body) == {}


async def submit(state: ServerState, *rcpts: str) -> None:
    await trio.to_thread.run_sync(send, state, list(rcpts))


async def wait_for(predicate: Callable[[], object], timeout: float = 20.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.05)


def queue_empty(state: ServerState) -> bool:
    return not state.spool.scan(sweep=False)


def inbox(state: ServerState) -> list[email.message.EmailMessage]:
    """alice's messages, parsed (oldest first by arrival in new/)."""
    path = mailbox_path(state.config.data_dir, SENDER)
    if not (path / "new").is_dir():
        return []
    box = mailbox.Maildir(path, create=False)
    raw = [box.get_bytes(key) for key in sorted(box.keys())]
    return [email.message_from_bytes(data, policy=email.policy.default) for data in raw]


def report_of(dsn: email.message.EmailMessage) -> list[email.message.Message]:
    """The per-recipient field groups of a DSN, checking its RFC 3464 structure on the way."""
    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    assert dsn["From"].addresses[0].username == "MAILER-DAEMON"
    parts = list(dsn.iter_parts())
    assert [p.get_content_type() for p in parts] == [
        "text/plain",
        "message/delivery-status",
        "text/rfc822-headers",
    ]
    payload = parts[1].get_payload()
    assert isinstance(payload, list)
    blocks = [b for b in payload if isinstance(b, email.message.Message)]
    assert len(blocks) == len(payload) and blocks[0]["Reporting-MTA"] == "dns; mx.example.test"
    return blocks[1:]


def attempts(caplog: pytest.LogCaptureFixture, to: str) -> list[re.Match[str]]:
    found = (ATTEMPT.search(r.getMessage()) for r in caplog.records)
    return [m for m in found if m is not None and m["to"] == to]


async def test_delivery_by_mx_and_by_implicit_mx(
    start: Starter, dns: DNSServer, caplog: pytest.LogCaptureFixture
) -> None:
    with Sink("127.0.0.20", 25) as mx, Sink("127.0.0.21", 25) as implicit:
        state = await start()
        await submit(state, "bob@mx.test", "carol@afallback.test")
        await wait_for(lambda: queue_empty(state))
        assert [m.rcpt_tos for m in mx.messages] == [("bob@mx.test",)]
        assert [m.rcpt_tos for m in implicit.messages] == [("carol@afallback.test",)]
        assert mx.messages[0].mail_from == SENDER
        assert b"Subject: outbound" in mx.messages[0].content
    assert ("afallback.test", "MX") in dns.queries and ("afallback.test", "A") in dns.queries
    (bob,) = attempts(caplog, "bob@mx.test")
    assert bob["relay"] == "mx1.mx.test[127.0.0.20]:25"
    assert bob["status"] == "sent" and bob["dsn"].startswith("2.")
    (carol,) = attempts(caplog, "carol@afallback.test")
    assert carol["relay"] == "afallback.test[127.0.0.21]:25" and carol["status"] == "sent"
    assert bob["qid"] == carol["qid"]
    assert inbox(state) == []  # nothing bounced


async def test_null_mx_and_5xx_bounce_into_the_local_senders_mailbox(
    start: Starter, dns: DNSServer, caplog: pytest.LogCaptureFixture
) -> None:
    replies = {"eve@hard.test": "550 5.1.1 no such user here"}
    with Sink("127.0.0.24", 25, rcpt_replies=replies) as hard:
        state = await start()
        await submit(state, "dan@null.test", "eve@hard.test", "frank@hard.test")
        await wait_for(lambda: queue_empty(state) and len(inbox(state)) == 1)
        assert [m.rcpt_tos for m in hard.messages] == [("frank@hard.test",)]
        connections = hard.connections
    (dsn,) = inbox(state)
    assert dsn["Subject"] == "Undelivered Mail Returned to Sender"
    assert dsn["To"] == SENDER
    groups = {g["Final-Recipient"]: g for g in report_of(dsn)}
    assert set(groups) == {"rfc822; dan@null.test", "rfc822; eve@hard.test"}
    eve = groups["rfc822; eve@hard.test"]
    assert (eve["Action"], eve["Status"]) == ("failed", "5.1.1")
    assert "no such user here" in eve["Diagnostic-Code"]
    dan = groups["rfc822; dan@null.test"]
    assert (dan["Action"], dan["Status"]) == ("failed", "5.1.10")
    assert ("null.test", "A") not in dns.queries  # RFC 7505: no fallback to the address
    assert connections == 1
    assert [m["status"] for m in attempts(caplog, "eve@hard.test")] == ["bounced"]
    assert [m["status"] for m in attempts(caplog, "dan@null.test")] == ["bounced"]
    assert [m["status"] for m in attempts(caplog, "frank@hard.test")] == ["sent"]
    original = list(dsn.iter_parts())[2].get_content()
    assert "Subject: outbound" in original


async def test_retry_then_success(start: Starter, caplog: pytest.LogCaptureFixture) -> None:
    replies = {"gil@soft.test": "451 4.7.1 greylisted, come back later"}
    with Sink("127.0.0.22", 25, rcpt_replies=replies) as soft:
        state = await start()
        await submit(state, "gil@soft.test")
        await wait_for(lambda: attempts(caplog, "gil@soft.test"))
        del replies["gil@soft.test"]  # the greylisting peer now accepts
        await wait_for(lambda: queue_empty(state))
        assert [m.rcpt_tos for m in soft.messages] == [("gil@soft.test",)]
    log = attempts(caplog, "gil@soft.test")
    assert (log[0]["status"], log[0]["dsn"]) == ("deferred", "4.7.1")
    assert log[-1]["status"] == "sent"
    assert inbox(state) == []  # warn_after is 1h: no delay notice


async def test_retry_until_lifetime_then_bounce_with_one_delay_notice(
    start: Starter, caplog: pytest.LogCaptureFixture
) -> None:
    state = await start(lifetime="4s", warn_after="2s")
    await submit(state, "hank@dead.test")
    await wait_for(lambda: queue_empty(state) and len(inbox(state)) == 2, timeout=30)
    await trio.sleep(2.5)  # past lifetime: no further notice may come
    delayed, failed = inbox(state)
    assert delayed["Subject"] == "Delayed Mail (still being retried)"
    (group,) = report_of(delayed)
    assert (group["Action"], group["Final-Recipient"]) == ("delayed", "rfc822; hank@dead.test")
    assert group["Will-Retry-Until"]
    assert failed["Subject"] == "Undelivered Mail Returned to Sender"
    (group,) = report_of(failed)
    assert (group["Action"], group["Status"]) == ("failed", "4.4.7")  # RFC 3463: expired
    assert "127.0.0.23" in group["Diagnostic-Code"]  # the last error is kept
    assert len(inbox(state)) == 2
    log = attempts(caplog, "hank@dead.test")
    assert len(log) >= 3 and all(m["status"] == "deferred" for m in log[:-1])
    assert log[-1]["status"] == "bounced"
    assert log[0]["relay"] == "mx.dead.test[127.0.0.23]:25"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


SMARTHOST = """
[relay]
smarthost = "127.0.0.26:587"
smarthost_user = "relayuser"
smarthost_password_file = "relay.pw"
"""


def password_file(mode: int) -> Callable[[Config], None]:
    def write(cfg: Config) -> None:
        path = cfg.data_dir / "relay.pw"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("s3cret-pw\n")
        path.chmod(mode)

    return write


async def test_smarthost_with_auth_over_starttls(
    start: Starter, ca: trustme.CA, dns: DNSServer
) -> None:
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("relay.example").configure_cert(tls)
    with Sink("127.0.0.26", 587, tls=tls, auth=("relayuser", "s3cret-pw")) as relay:
        state = await start(extra=SMARTHOST, before=password_file(0o600))
        await submit(state, "ivan@anywhere.test", "judy@mx.test")
        await wait_for(lambda: queue_empty(state))
        (message,) = relay.messages
        assert set(message.rcpt_tos) == {"ivan@anywhere.test", "judy@mx.test"}
        assert message.tls
        assert relay.logins and relay.logins[0].endswith(":relayuser")
    assert not [q for q in dns.queries if q[0] in ("anywhere.test", "mx.test")]


def test_a_world_readable_smarthost_password_refuses_to_start(tmp_path: Path) -> None:
    path = tmp_path / "tinymail.toml"
    path.write_text(
        CONFIG.format(
            data_dir=tmp_path / "data",
            lifetime="1h",
            warn_after="1h",
            dns="127.0.0.1:53",
            extra=SMARTHOST,
        )
    )
    cfg = load_config(path)
    password_file(0o644)(cfg)
    with pytest.raises(ConfigError, match="smarthost_password_file"):
        build_state(cfg)


async def test_transport_map_route(
    start: Starter, dns: DNSServer, caplog: pytest.LogCaptureFixture
) -> None:
    with Sink("127.0.0.25", 2626) as routed:
        state = await start()
        await submit(state, "kim@example.net", "lee@sub.example.net")
        await wait_for(lambda: attempts(caplog, "lee@sub.example.net") and queue_empty(state))
        assert [m.rcpt_tos for m in routed.messages] == [("kim@example.net",)]
    assert not [q for q in dns.queries if q[0] == "example.net"]
    (kim,) = attempts(caplog, "kim@example.net")
    assert (kim["relay"], kim["status"]) == ("127.0.0.25[127.0.0.25]:2626", "sent")
    # sub.example.net is not in the map (no ".example.net" entry): its own DNS says NXDOMAIN.
    (lee,) = attempts(caplog, "lee@sub.example.net")
    assert (lee["status"], lee["dsn"]) == ("bounced", "5.1.2")
