"""SASL decoding shared by SMTP AUTH, IMAP AUTHENTICATE and POP3 AUTH (pure functions).

Rules:
- Responses travel base64-encoded (RFC 4954 §4, RFC 9051 §6.2.2, RFC 5034 §4). A response of
  exactly ``*`` cancels the exchange; ``=`` is an empty initial response (RFC 4954 §4).
- PLAIN (RFC 4616 §2): ``[authzid] NUL authcid NUL passwd``, all UTF-8, exactly three pieces.
- LOGIN (draft-murchison-sasl-login): the server prompts ``Username:`` then ``Password:``, each
  answer is one base64 line.
- Nothing here knows about a protocol's reply codes: failures are typed exceptions that each
  core maps to its own answer.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Final

#: LOGIN prompts, already base64-encoded as sent after "334 " / "+ ".
LOGIN_USERNAME_PROMPT: Final = base64.b64encode(b"Username:").decode("ascii")
LOGIN_PASSWORD_PROMPT: Final = base64.b64encode(b"Password:").decode("ascii")

#: Dovecot's LOGIN_MAX_AUTH_BUF_SIZE: a longer response is refused before decoding.
MAX_RESPONSE: Final = 8192


class SaslError(ValueError):
    """A response that cannot be decoded (bad base64, wrong PLAIN shape, not UTF-8)."""


class SaslBase64Error(SaslError):
    """The response is not valid base64 (SMTP: 501 5.5.2)."""


class SaslCancelled(SaslError):
    """The client sent ``*`` to abort the exchange (RFC 4954 §4: 501)."""


class SaslAuthzidMismatch(SaslError):
    """PLAIN asked to act as another identity; refused (research 2.5 A2: SMTP 535 5.7.8)."""


def decode_response(line: bytes) -> bytes:
    """Decode one client response line (without CRLF) into raw bytes.

    Raises ``SaslCancelled`` for ``*`` and ``SaslBase64Error`` for anything that is not strict
    base64 (padding required, no whitespace) or longer than ``MAX_RESPONSE``.
    """
    if line == b"*":
        raise SaslCancelled("authentication cancelled by the client")
    if line == b"=":  # RFC 4954 §4: "=" stands for an empty initial response
        return b""
    if len(line) > MAX_RESPONSE:
        raise SaslBase64Error("response too long")
    try:
        return base64.b64decode(line, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SaslBase64Error("invalid base64") from exc


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SaslError("credentials are not UTF-8") from exc


def decode_plain(raw: bytes) -> tuple[str, str, str]:
    """Split a decoded PLAIN message into ``(authzid, authcid, password)`` (RFC 4616 §2).

    Raises ``SaslError`` unless there are exactly three NUL-separated pieces, valid UTF-8, with a
    non-empty authcid and password.
    """
    pieces = raw.split(b"\x00")
    if len(pieces) != 3:
        raise SaslError("PLAIN response must have three NUL-separated pieces")
    authzid, authcid, password = (_text(piece) for piece in pieces)
    if not authcid or not password:
        raise SaslError("PLAIN authcid and password must not be empty")
    return authzid, authcid, password


def decode_login_step(line: bytes) -> str:
    """Decode one LOGIN answer (username or password) from its base64 response line."""
    return _text(decode_response(line))


MECHANISMS: Final = frozenset({"PLAIN", "LOGIN"})


@dataclass(frozen=True, slots=True)
class Challenge:
    """Send ``data`` (base64 text, maybe empty) to the client and wait for its next line."""

    data: str


@dataclass(frozen=True, slots=True)
class Credentials:
    """The exchange finished: verify ``password`` for ``authcid`` (``authzid`` == authcid or "")."""

    authzid: str
    authcid: str
    password: str = field(repr=False)  # never in logs or tracebacks (research 2.5 A8)
    mechanism: str = "PLAIN"


class ServerExchange:
    """One server-side PLAIN or LOGIN exchange, independent of the protocol around it.

    ``start()`` takes the optional initial response (RFC 4954 §4, RFC 4959), ``step()`` each
    further response line; both return the next ``Challenge`` or the final ``Credentials`` and
    raise ``SaslError`` subclasses, after which the exchange is over.
    """

    def __init__(self, mechanism: str) -> None:
        self.mechanism = mechanism.upper()
        if self.mechanism not in MECHANISMS:
            raise ValueError(f"unsupported SASL mechanism {mechanism!r}")
        self._username: str | None = None

    def start(self, initial: bytes | None) -> Challenge | Credentials:
        """Begin; ``initial`` is the base64 initial response, or None for none."""
        if initial is not None:
            return self.step(initial)
        if self.mechanism == "PLAIN":
            return Challenge("")  # RFC 4616 §2: PLAIN starts with an empty challenge
        return Challenge(LOGIN_USERNAME_PROMPT)

    def step(self, line: bytes) -> Challenge | Credentials:
        """Consume one base64 response line (without CRLF)."""
        if self.mechanism == "PLAIN":
            authzid, authcid, password = decode_plain(decode_response(line))
            if authzid and authzid != authcid:
                raise SaslAuthzidMismatch("authorization identity differs")
            return Credentials(authzid, authcid, password, "PLAIN")
        if self._username is None:
            self._username = decode_login_step(line)
            return Challenge(LOGIN_PASSWORD_PROMPT)
        return Credentials("", self._username, decode_login_step(line), "LOGIN")
