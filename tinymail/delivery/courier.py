"""The Courier seam: local and remote delivery both report an Outcome per recipient."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Status(enum.Enum):
    OK = "ok"
    TEMP = "temp"  # try again later
    PERM = "perm"  # give up now and bounce


@dataclass(frozen=True, slots=True)
class Outcome:
    status: Status
    dsn: str  # enhanced status code, e.g. "2.0.0", "4.3.0", "5.1.1"
    reply: str  # the remote reply or the local reason
    relay: str = ""  # "host[ip]:port", or "local"

    @property
    def log_status(self) -> str:
        """Postfix-style status word for the delivery log line."""
        return {Status.OK: "sent", Status.TEMP: "deferred", Status.PERM: "bounced"}[self.status]
