"""Pure abuse limits: auth-failure penalties, connection counts, per-request deadlines.

Rules / theory (research/reliability-security.md section 4, 2.9):
- Clients are grouped by address: an IPv4 address alone, IPv6 by its /64 (one customer's
  allocation; Dovecot uses /48), so a client cannot dodge a limit by hopping addresses.
- Auth penalty (Dovecot auth-penalty): each failed attempt within `window` doubles the delay
  before the group's next attempt is even checked: `failure_delay`, x2, x4, ... capped at
  `max_delay`. The delay comes before verification, so a fast answer never means "wrong".
  Failures older than `window` are forgotten. Repeating the same wrong credentials (a client
  with a stale password retrying) does not add to the penalty.
- Budget (fail2ban's jail, in memory): `max_failures` within `window` and the group is refused
  outright until `ban_time` after its last failure. Attempts in flight count, so parallel
  connections cannot overshoot the budget. Accounts are never locked: only the source is slowed.
- Connections: at most `per_client` at once per group (trusted networks exempt, as Postfix's
  smtpd_client_event_limit_exceptions) and `total` overall.
- A request (one command, or a whole DATA) has a deadline that starts at the timeout and only
  grows by received_bytes / min_rate, never beyond the timeout (Postfix
  smtpd_per_request_deadline + smtpd_min_data_rate): a byte a minute cannot hold a slot.
- Every clock reading is an argument (`now`), so tests need no sleeps; state is bounded.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import Enum

MAX_TRACKED = 65_536  # client groups remembered at once; the oldest go first
MAX_FINGERPRINTS = 16  # distinct wrong credentials remembered per group


def client_key(host: str) -> str:
    """The group a client address belongs to: the IPv4 address, or the IPv6 /64."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@dataclass(frozen=True, slots=True)
class PenaltyRules:
    """Auth-failure limits (defaults: Dovecot's delays, fail2ban's 10 minutes)."""

    failure_delay: float = 2.0
    max_delay: float = 15.0
    max_failures: int = 10
    window: float = 600.0
    ban_time: float = 600.0


class Verdict(Enum):
    """May this client group try to authenticate now?"""

    ALLOWED = "allowed"
    REFUSED = "refused"  # over its budget: answer a temporary failure without checking


@dataclass(slots=True)
class _Record:
    failures: list[float] = field(default_factory=list)  # times, oldest first
    fingerprints: list[bytes] = field(default_factory=list)
    in_flight: int = 0
    banned_until: float = 0.0


# Password checks running at once for one clean client address. Untrusted clients are
# bounded sooner by [limits] connections_per_ip (each connection may fail 3 times); this only
# stops a runaway, and must not refuse a trusted host opening hundreds of sessions at once.
MAX_IN_FLIGHT = 1000


class AuthPenalties:
    """Per-group failure history; call `begin`, then `failed` or `succeeded` once per attempt."""

    def __init__(self, rules: PenaltyRules | None = None) -> None:
        self.rules = rules if rules is not None else PenaltyRules()
        self._records: dict[str, _Record] = {}

    def begin(self, key: str, now: float) -> tuple[Verdict, float]:
        """Start an attempt: the verdict and how long to wait before verifying it."""
        record = self._record(key, now)
        recent = len(record.failures)
        # Checks still running count against the budget only once the client has failed
        # recently (so parallel guesses cannot overrun it), and never block a burst of
        # logins from a clean address, such as a client opening many sessions at once.
        pending = record.in_flight if recent else 0
        too_many = recent + pending >= self.rules.max_failures
        if now < record.banned_until or too_many or record.in_flight >= MAX_IN_FLIGHT:
            return Verdict.REFUSED, 0.0
        record.in_flight += 1
        return Verdict.ALLOWED, self.delay(recent)

    def failed(self, key: str, now: float, fingerprint: bytes = b"") -> None:
        """The attempt begun with `begin` failed (`fingerprint`: an HMAC of user + password)."""
        record = self._record(key, now)
        record.in_flight = max(0, record.in_flight - 1)
        if fingerprint and fingerprint in record.fingerprints:
            return  # Dovecot: the same wrong credentials again add no penalty
        if fingerprint:
            record.fingerprints = [*record.fingerprints, fingerprint][-MAX_FINGERPRINTS:]
        record.failures.append(now)
        if len(record.failures) >= self.rules.max_failures:  # budget spent: refuse for a while
            record.banned_until = now + self.rules.ban_time

    def succeeded(self, key: str, now: float) -> None:
        """The attempt begun with `begin` succeeded; past failures still count (no reset)."""
        self.abandoned(key, now)

    def abandoned(self, key: str, now: float) -> None:
        """The attempt begun with `begin` ended without an answer (shutdown, lost client)."""
        record = self._record(key, now)
        record.in_flight = max(0, record.in_flight - 1)

    def delay(self, recent_failures: int) -> float:
        """The wait before an attempt from a group with this many recent failures."""
        if recent_failures <= 0:
            return 0.0
        exponent = min(recent_failures - 1, 32)
        return float(min(self.rules.failure_delay * 2**exponent, self.rules.max_delay))

    def recent_failures(self, key: str, now: float) -> int:
        """Failures of the group still inside the window."""
        record = self._records.get(key)
        if record is None:
            return 0
        self._expire(record, now)
        return len(record.failures)

    def _record(self, key: str, now: float) -> _Record:
        record = self._records.pop(key, None)  # re-inserted: dict order = least recently used
        if record is None:
            record = _Record()
            if len(self._records) >= MAX_TRACKED:
                self._prune(now)
        else:
            self._expire(record, now)
        self._records[key] = record
        return record

    def _expire(self, record: _Record, now: float) -> None:
        cutoff = now - self.rules.window
        if record.failures and record.failures[0] <= cutoff:
            record.failures = [t for t in record.failures if t > cutoff]
            if not record.failures:
                record.fingerprints = []

    def _prune(self, now: float) -> None:
        for key in list(self._records):
            record = self._records[key]
            self._expire(record, now)
            if not record.failures and not record.in_flight and record.banned_until <= now:
                del self._records[key]
        while len(self._records) >= MAX_TRACKED:  # still full: forget the least recently used
            del self._records[next(iter(self._records))]


class Admission(Enum):
    """The answer to a new connection."""

    ADMITTED = "admitted"
    CLIENT_LIMIT = "client limit"  # too many from this client group
    TOTAL_LIMIT = "total limit"  # the server is full


class ConnectionCounts:
    """Concurrent connections per client group and overall."""

    def __init__(self, per_client: int, total: int) -> None:
        self.per_client = per_client
        self.total = total
        self._open: dict[str, int] = {}
        self._count = 0

    def admit(self, key: str, *, exempt: bool = False) -> Admission:
        """Count a new connection in, or say which limit refuses it (then nothing is counted)."""
        if self._count >= self.total:
            return Admission.TOTAL_LIMIT
        current = self._open.get(key, 0)
        if not exempt and current >= self.per_client:
            return Admission.CLIENT_LIMIT
        self._open[key] = current + 1
        self._count += 1
        return Admission.ADMITTED

    def release(self, key: str) -> None:
        """An admitted connection ended."""
        current = self._open.get(key, 0)
        if current <= 0:
            raise ValueError(f"release() without admit() for {key}")
        if current == 1:
            del self._open[key]
        else:
            self._open[key] = current - 1
        self._count -= 1

    def open_connections(self, key: str | None = None) -> int:
        """Connections open now, for one group or overall."""
        return self._count if key is None else self._open.get(key, 0)


class RequestDeadline:
    """The deadline of one request: `timeout` from its start, extended by data received."""

    def __init__(self, timeout: float, min_rate: float, now: float) -> None:
        self.timeout = timeout
        self.min_rate = min_rate
        self.deadline = now + timeout

    def received(self, nbytes: int, now: float) -> None:
        """Credit `nbytes` just received: nbytes / min_rate more seconds, capped at the timeout."""
        if self.min_rate > 0:
            self.deadline = min(now + self.timeout, self.deadline + nbytes / self.min_rate)

    def remaining(self, now: float) -> float:
        """Seconds left (0 when expired)."""
        return max(0.0, self.deadline - now)
