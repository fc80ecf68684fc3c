"""RFC 3464 DSNs, checked by parsing them back with Python's email package."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage, Message

from tinymail.mail.dsn import DsnKind, RecipientStatus, build_dsn

ARRIVAL = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
NOW = ARRIVAL + timedelta(hours=5)
ORIGINAL = (
    b"From: Alice <alice@example.test>\r\nTo: bob@remote.test\r\nSubject: lunch?\r\n"
    b"Message-ID: <m1@example.test>\r\n\r\nSECRET BODY\r\n"
)
RECIPIENTS = [
    RecipientStatus(
        "bob@remote.test", "5.1.1", "550 5.1.1 <bob@remote.test>: no such user", "mx.remote.test"
    ),
    RecipientStatus("carol@remote.test", "5.4.4", "Host or domain name not found"),
]


def parse(content: bytes) -> EmailMessage:
    msg = email.message_from_bytes(content, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def status_groups(part: Message) -> list[Message]:
    """The delivery-status part as the email package exposes it: one Message per block."""
    payload = part.get_payload()
    assert isinstance(payload, list)
    groups = [group for group in payload if isinstance(group, Message)]
    assert len(groups) == len(payload)
    return groups


def test_failed_dsn_structure() -> None:
    dsn = build_dsn(
        kind=DsnKind.FAILED,
        hostname="mx.example.test",
        qid="Q123",
        sender="alice@example.test",
        original=ORIGINAL,
        recipients=RECIPIENTS,
        arrival=ARRIVAL,
        now=NOW,
    )
    assert dsn is not None
    assert dsn.sender == ""
    assert dsn.recipient == "alice@example.test"
    assert b"\r" not in dsn.content
    msg = parse(dsn.content)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert msg["From"].addresses[0].addr_spec == "MAILER-DAEMON@mx.example.test"
    assert msg["To"].addresses[0].addr_spec == "alice@example.test"
    assert msg["Auto-Submitted"] == "auto-replied"
    text, status, headers = msg.iter_parts()
    assert text.get_content_type() == "text/plain"
    assert "bob@remote.test" in text.get_content()
    assert status.get_content_type() == "message/delivery-status"
    per_message, bob, carol = status_groups(status)
    assert per_message["Reporting-MTA"] == "dns; mx.example.test"
    assert per_message["Arrival-Date"] == "Fri, 02 Jan 2026 03:04:05 +0000"
    assert bob["Final-Recipient"] == "rfc822; bob@remote.test"
    assert bob["Action"] == "failed"
    assert bob["Status"] == "5.1.1"
    assert bob["Remote-MTA"] == "dns; mx.remote.test"
    assert bob["Diagnostic-Code"] == "smtp; 550 5.1.1 <bob@remote.test>: no such user"
    assert carol["Status"] == "5.4.4"
    assert carol["Remote-MTA"] is None
    assert headers.get_content_type() == "text/rfc822-headers"
    original_headers = headers.get_payload()
    assert isinstance(original_headers, str)
    assert "Subject: lunch?" in original_headers
    assert "Message-ID: <m1@example.test>" in original_headers
    assert "SECRET BODY" not in dsn.content.decode()


def test_delayed_dsn_has_will_retry_until() -> None:
    dsn = build_dsn(
        kind=DsnKind.DELAYED,
        hostname="mx.example.test",
        qid="Q9",
        sender="alice@example.test",
        original=ORIGINAL,
        recipients=[RecipientStatus("bob@remote.test", "4.4.1", "connection refused")],
        arrival=ARRIVAL,
        now=NOW,
        retry_until=ARRIVAL + timedelta(days=5),
    )
    assert dsn is not None
    msg = parse(dsn.content)
    assert "Delayed" in msg["Subject"]
    _, status, _ = msg.iter_parts()
    _, bob = status_groups(status)
    assert bob["Action"] == "delayed"
    assert bob["Status"] == "4.4.1"
    assert bob["Will-Retry-Until"] == "Wed, 07 Jan 2026 03:04:05 +0000"


def test_null_sender_is_never_bounced() -> None:
    assert (
        build_dsn(
            kind=DsnKind.FAILED,
            hostname="h",
            qid="Q",
            sender="",
            original=ORIGINAL,
            recipients=RECIPIENTS,
            arrival=ARRIVAL,
            now=NOW,
        )
        is None
    )


def test_hostile_diagnostic_cannot_inject_fields() -> None:
    dsn = build_dsn(
        kind=DsnKind.FAILED,
        hostname="h.test",
        qid="Q",
        sender="a@x.test",
        original=b"Subject: s\n\nbody\n",
        recipients=[RecipientStatus("b@y.test", "5.0.0", "550 no\r\nAction: delivered\nX: y")],
        arrival=ARRIVAL,
        now=NOW,
    )
    assert dsn is not None
    _, status, _ = parse(dsn.content).iter_parts()
    _, rcpt = status_groups(status)
    assert rcpt.get_all("Action") == ["failed"]
    assert rcpt["Diagnostic-Code"] == "smtp; 550 no Action: delivered X: y"


def test_original_without_body_and_huge_header_is_bounded() -> None:
    big = b"X-Pad: " + b"a" * 200_000 + b"\n"
    dsn = build_dsn(
        kind=DsnKind.FAILED,
        hostname="h.test",
        qid="Q",
        sender="a@x.test",
        original=big,
        recipients=[RecipientStatus("b@y.test", "5.0.0")],
        arrival=ARRIVAL,
        now=NOW,
    )
    assert dsn is not None
    assert len(dsn.content) < 80_000
    assert parse(dsn.content).get_content_type() == "multipart/report"
