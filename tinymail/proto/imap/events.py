"""States, events and settings of the IMAP server core (RFC 3501 section 3)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class State(enum.Enum):
    """Connection states of RFC 3501 section 3."""

    NOT_AUTHENTICATED = enum.auto()
    AUTHENTICATED = enum.auto()
    SELECTED = enum.auto()
    LOGOUT = enum.auto()


class Signal(enum.Enum):
    """Events that carry no data."""

    NEED_DATA = enum.auto()
    CLOSED = enum.auto()
    MORE = enum.auto()  # next_light_event handled one command: input is left


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """Verify these credentials and call auth_result()."""

    username: str
    password: str = field(repr=False)  # never in logs or tracebacks
    mechanism: str = "LOGIN"


@dataclass(frozen=True, slots=True)
class StartTLSRequest:
    """Start TLS on the stream now, then call tls_started()."""


@dataclass(frozen=True, slots=True)
class CompressRequest:
    """Send what is queued, then deflate both directions (RFC 4978); call compress_started()."""


Event = Signal | AuthRequest | StartTLSRequest | CompressRequest


@dataclass(frozen=True, slots=True)
class Settings:
    """What the adapter knows about this connection."""

    hostname: str = "localhost"
    starttls_available: bool = False  # [tls] configured and the stream is not TLS yet
    tls_active: bool = False
    plaintext_auth: bool = True  # loopback peer (or TLS): LOGIN/AUTHENTICATE allowed
    append_limit: int = 64 * 1024 * 1024
    compress_available: bool = False  # the adapter can wrap its stream in DEFLATE
