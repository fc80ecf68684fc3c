"""RFC 3464 delivery status notifications: "failed" bounces and "delayed" warnings.

Rules
- A DSN is multipart/report; report-type=delivery-status (RFC 3462/6522) with three parts: a
  human-readable explanation, the message/delivery-status fields, and the original message's
  header (text/rfc822-headers), never its body: the sender has the body, and a bounce should
  not carry a second copy of spam back-scatter.
- It is sent from MAILER-DAEMON@hostname with a null envelope sender (RFC 5321 4.5.5), so a DSN
  can never cause another DSN. A message whose own sender is null gets no DSN: `build_dsn`
  returns None (RFC 3464 2 / RFC 5321 6.1: never bounce a bounce).
- Output uses LF line endings, like every message in the spool.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime, make_msgid

# The header part keeps what a sender needs to recognise the message, bounded against abuse.
MAX_ORIGINAL_HEADER = 64 * 1024


class DsnKind(enum.Enum):
    """Which report: a final failure or a delay warning."""

    FAILED = "failed"
    DELAYED = "delayed"


@dataclass(frozen=True, slots=True)
class RecipientStatus:
    """One recipient's line of the report (RFC 3464 2.3)."""

    recipient: str
    status: str  # RFC 3463 code, "5.1.1"
    diagnostic: str = ""  # the remote reply or the local reason
    remote_mta: str = ""  # host name of the MTA that answered
    original_recipient: str = ""


@dataclass(frozen=True, slots=True)
class Dsn:
    """A DSN ready to queue: null envelope sender, one recipient, LF-ended content."""

    sender: str
    recipient: str
    content: bytes


def _header_block(original: bytes) -> str:
    """The original header section, cut at the first blank line and bounded in size."""
    text = original.replace(b"\r\n", b"\n")
    head, _, _ = text.partition(b"\n\n")
    return head[:MAX_ORIGINAL_HEADER].decode("utf-8", "replace") + "\n"


def _explanation(kind: DsnKind, hostname: str, recipients: Sequence[RecipientStatus]) -> str:
    if kind is DsnKind.FAILED:
        intro = (
            f"This is the mail system at host {hostname}.\n\n"
            "Your message could not be delivered to one or more recipients.\n"
            "It has been given up on permanently.\n"
        )
    else:
        intro = (
            f"This is the mail system at host {hostname}.\n\n"
            "Your message has not been delivered yet to one or more recipients.\n"
            "The mail system will keep trying; you do not need to resend it.\n"
        )
    lines = [
        f"  <{_one_line(r.recipient)}>: {_one_line(r.diagnostic or r.status)}" for r in recipients
    ]
    return intro + "\n" + "\n".join(lines) + "\n"


def _status_fields(
    kind: DsnKind,
    hostname: str,
    qid: str,
    arrival: datetime,
    recipients: Sequence[RecipientStatus],
    retry_until: datetime | None,
) -> str:
    # RFC 3464 2.2: per-message fields, then one blank-line separated group per recipient.
    groups = [
        f"Reporting-MTA: dns; {hostname}\n"
        f"X-Tinymail-Queue-ID: {qid}\n"
        f"Arrival-Date: {format_datetime(arrival)}\n"
    ]
    for r in recipients:
        fields = ""
        if r.original_recipient:
            fields += f"Original-Recipient: rfc822; {_one_line(r.original_recipient)}\n"
        fields += f"Final-Recipient: rfc822; {_one_line(r.recipient)}\n"  # RFC 3464 2.3.2
        fields += f"Action: {kind.value}\n"  # RFC 3464 2.3.3
        fields += f"Status: {r.status}\n"  # RFC 3464 2.3.4
        if r.remote_mta:
            fields += f"Remote-MTA: dns; {_one_line(r.remote_mta)}\n"  # RFC 3464 2.3.5
        if r.diagnostic:
            fields += f"Diagnostic-Code: smtp; {_one_line(r.diagnostic)}\n"  # RFC 3464 2.3.6
        if kind is DsnKind.DELAYED and retry_until is not None:
            fields += f"Will-Retry-Until: {format_datetime(retry_until)}\n"  # RFC 3464 2.3.9
        groups.append(fields)
    return "\n".join(groups)


def _one_line(text: str) -> str:
    """Diagnostics come from remote servers: no line breaks may reach our header fields."""
    return " ".join(text.split())


def build_dsn(
    *,
    kind: DsnKind,
    hostname: str,
    qid: str,
    sender: str,
    original: bytes,
    recipients: Sequence[RecipientStatus],
    arrival: datetime,
    now: datetime,
    retry_until: datetime | None = None,
) -> Dsn | None:
    """Build the DSN for `sender` about `recipients`; None when the sender is null.

    `original` is the original message (or at least its header section); `arrival`, `now` and
    `retry_until` are aware datetimes.
    """
    if not sender or not recipients:
        return None  # RFC 5321 6.1: a message with a null reverse-path is never bounced
    subject = (
        "Undelivered Mail Returned to Sender"
        if kind is DsnKind.FAILED
        else "Delayed Mail (still being retried)"
    )
    boundary = f"=_{qid}_{secrets.token_hex(8)}"  # random: cannot occur in the original
    # Hand-built MIME: the email package cannot generate message/delivery-status from text.
    parts = [
        f"From: Mail Delivery System <MAILER-DAEMON@{hostname}>\n"
        f"To: <{_one_line(sender)}>\n"
        f"Subject: {subject}\n"
        f"Date: {format_datetime(now)}\n"
        f"Message-ID: {make_msgid(idstring=qid, domain=hostname)}\n"
        "Auto-Submitted: auto-replied\n"  # RFC 3834 5
        "MIME-Version: 1.0\n"
        # RFC 6522 3: the report type names the machine-readable second part.
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\n'
        "\n"
        "This is a MIME-encapsulated message.\n",
        "Content-Type: text/plain; charset=utf-8\n"
        "Content-Transfer-Encoding: 8bit\n"
        "\n" + _explanation(kind, hostname, recipients),
        "Content-Type: message/delivery-status\n"
        "\n" + _status_fields(kind, hostname, qid, arrival, recipients, retry_until),
        "Content-Type: text/rfc822-headers\n\n" + _header_block(original),
    ]
    content = f"\n--{boundary}\n".join(parts) + f"\n--{boundary}--\n"
    return Dsn(sender="", recipient=sender, content=content.encode("utf-8"))
