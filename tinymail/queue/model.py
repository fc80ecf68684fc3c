"""What the queue knows about a message: its envelope and per-recipient status."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any

from tinymail.queue.qfile import envelope_fields


class RcptStatus(enum.Enum):
    """Where one recipient's delivery stands."""

    PENDING = "pending"
    SENT = "sent"  # delivered (local store fsynced, or 2xx from the next hop)
    FAILED = "failed"  # permanent failure or expired; a DSN was queued (or not owed)


@dataclass(frozen=True, slots=True)
class Recipient:
    """One envelope recipient and where its delivery stands."""

    address: str
    status: RcptStatus = RcptStatus.PENDING
    attempts: int = 0
    dsn: str = ""  # last enhanced status, e.g. "4.4.1"
    last_error: str = ""

    @property
    def done(self) -> bool:
        """True when no further attempt is owed."""
        return self.status is not RcptStatus.PENDING


@dataclass(frozen=True, slots=True)
class Envelope:
    """Fixed at acceptance; written once into the message file's trailer."""

    qid: str
    sender: str  # "" is the null sender (bounces)
    recipients: tuple[str, ...]
    arrival: float
    size: int  # bytes of message content at the start of the file
    origin: str = ""  # e.g. "smtp client=[127.0.0.1] helo=x" or "sendmail uid=1000"
    dsn_kind: str = ""  # "bounce"/"delay" when this message is itself a DSN

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (qfile.envelope_fields: sendmail writes the same without us)."""
        return envelope_fields(
            self.qid,
            self.sender,
            list(self.recipients),
            self.arrival,
            self.size,
            self.origin,
            self.dsn_kind,
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Envelope:
        """Inverse of to_json; raises KeyError/TypeError/ValueError on bad data."""
        recipients = tuple(str(r) for r in data["recipients"])
        if not recipients:
            raise ValueError("no recipients")
        return cls(
            qid=str(data["qid"]),
            sender=str(data["sender"]),
            recipients=recipients,
            arrival=float(data["arrival"]),
            size=int(data["size"]),
            origin=str(data.get("origin", "")),
            dsn_kind=str(data.get("dsn_kind", "")),
        )


@dataclass(frozen=True, slots=True)
class QueueState:
    """What changes over a message's life; kept in its own small file, replaced atomically."""

    recipients: tuple[Recipient, ...]
    attempts: int = 0
    next_attempt: float = 0.0
    warned: bool = False
    hold: bool = False

    @classmethod
    def initial(cls, envelope: Envelope) -> QueueState:
        """Every recipient pending, due now."""
        return cls(tuple(Recipient(r) for r in envelope.recipients))

    @property
    def pending(self) -> tuple[Recipient, ...]:
        """Recipients still owed a delivery attempt."""
        return tuple(r for r in self.recipients if not r.done)

    @property
    def done(self) -> bool:
        """True when the message can leave the queue."""
        return not self.pending

    def with_recipient(self, updated: Recipient) -> QueueState:
        """A copy with one recipient's status replaced."""
        recipients = tuple(updated if r.address == updated.address else r for r in self.recipients)
        return replace(self, recipients=recipients)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "recipients": [
                {
                    "address": r.address,
                    "status": r.status.value,
                    "attempts": r.attempts,
                    "dsn": r.dsn,
                    "last_error": r.last_error,
                }
                for r in self.recipients
            ],
            "attempts": self.attempts,
            "next_attempt": self.next_attempt,
            "warned": self.warned,
            "hold": self.hold,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> QueueState:
        """Inverse of to_json."""
        return cls(
            recipients=tuple(
                Recipient(
                    address=str(r["address"]),
                    status=RcptStatus(r["status"]),
                    attempts=int(r.get("attempts", 0)),
                    dsn=str(r.get("dsn", "")),
                    last_error=str(r.get("last_error", "")),
                )
                for r in data["recipients"]
            ),
            attempts=int(data.get("attempts", 0)),
            next_attempt=float(data.get("next_attempt", 0.0)),
            warned=bool(data.get("warned", False)),
            hold=bool(data.get("hold", False)),
        )


@dataclass(frozen=True, slots=True)
class QueueItem:
    """A queued message as the runner sees it."""

    envelope: Envelope
    state: QueueState
    path: str = field(default="")  # the message file; content is bytes [0, envelope.size)

    @property
    def qid(self) -> str:
        """The queue ID."""
        return self.envelope.qid
