"""SMTP replies: one dataclass and named replies for every code the server core sends.

Rules:
- A reply is a three-digit code (RFC 5321 §4.2), an enhanced status code (RFC 3463, announced
  by ENHANCEDSTATUSCODES, RFC 2034) and text. The enhanced code is repeated on every line of a
  multi-line reply (RFC 2034 §4) and left out where it is customary: the 220 greeting, the EHLO
  and HELO answers and SASL 334 challenges (class 3 has no enhanced codes, RFC 3463 §3.1).
- Multi-line text (lines split on "\\n") becomes ``250-...`` continuation lines (RFC 5321 §4.2.1).
- Text can never carry CR or other control characters, so a reply can never inject a line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

_ENHANCED = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply; ``text`` may hold "\\n" to make a multi-line reply."""

    code: int
    enhanced: str
    text: str

    def __post_init__(self) -> None:
        if not 200 <= self.code <= 599:
            raise ValueError(f"reply code out of range: {self.code}")
        if self.enhanced and (
            not _ENHANCED.fullmatch(self.enhanced) or self.enhanced[0] != str(self.code)[0]
        ):
            raise ValueError(f"enhanced code {self.enhanced!r} does not fit {self.code}")
        if _CONTROL.search(self.text):
            raise ValueError("reply text must not contain control characters")

    @property
    def is_positive(self) -> bool:
        """True for 2xx (completion) and 3xx (intermediate) replies (RFC 5321 §4.2.1)."""
        return self.code < 400

    @property
    def is_success(self) -> bool:
        """True for 2xx replies only."""
        return self.code // 100 == 2

    def to_bytes(self) -> bytes:
        """Render the reply for the wire, CRLF after every line."""
        prefix = f"{self.enhanced} " if self.enhanced else ""
        lines = self.text.split("\n")
        out = [f"{self.code}-{prefix}{line}\r\n" for line in lines[:-1]]
        out.append(f"{self.code} {prefix}{lines[-1]}\r\n")
        return "".join(out).encode("utf-8")


# --- Positive replies -----------------------------------------------------------------------


def greeting(hostname: str) -> Reply:
    """220 service ready (RFC 5321 §4.2, §3.1); "ESMTP" invites EHLO."""
    return Reply(220, "", f"{hostname} ESMTP tinymail")


def ehlo(hostname: str, extensions: list[str]) -> Reply:
    """250 EHLO answer: hostname, then one extension keyword per line (RFC 5321 §4.1.1.1)."""
    return Reply(250, "", "\n".join([hostname, *extensions]))


def helo(hostname: str) -> Reply:
    """250 HELO answer (RFC 5321 §4.1.1.1)."""
    return Reply(250, "", hostname)


def queued(queue_id: str) -> Reply:
    """250 after DATA: the message is durably queued under ``queue_id``."""
    return Reply(250, "2.0.0", f"Ok: queued as {queue_id}")


def challenge(data: str) -> Reply:
    """334 SASL challenge, base64 text, no enhanced code (RFC 4954 §4)."""
    return Reply(334, "", data)


OK: Final = Reply(250, "2.0.0", "Ok")  # RSET, NOOP (RFC 5321 §4.1.1.5, §4.1.1.9)
SENDER_OK: Final = Reply(250, "2.1.0", "Ok")  # RFC 3463 X.1.0 other address status
RECIPIENT_OK: Final = Reply(250, "2.1.5", "Ok")  # RFC 3463 X.1.5 destination address valid
BYE: Final = Reply(221, "2.0.0", "Bye")  # QUIT, RFC 5321 §4.1.1.10 (Postfix wording)
HELP: Final = Reply(214, "2.0.0", "See RFC 5321 and https://www.rfc-editor.org/")  # §4.1.1.8
CANNOT_VRFY: Final = Reply(
    252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery"
)  # RFC 5321 §3.5.3: 252 avoids user enumeration (research 2.3 R14)
READY_FOR_TLS: Final = Reply(220, "2.0.0", "Ready to start TLS")  # RFC 3207 §4
AUTH_OK: Final = Reply(235, "2.7.0", "Authentication successful")  # RFC 4954 §6
START_DATA: Final = Reply(354, "", "End data with <CR><LF>.<CR><LF>")  # RFC 5321 §4.1.1.4

# --- 4xx: temporary -------------------------------------------------------------------------

TIMEOUT: Final = Reply(421, "4.4.2", "Error: timeout exceeded")  # RFC 5321 §4.5.3.2, X.4.2
TOO_MANY_ERRORS: Final = Reply(421, "4.7.0", "Too many errors")  # Postfix hard error limit
TOO_MANY_AUTH_FAILURES: Final = Reply(421, "4.7.0", "Too many authentication failures")
NO_SPACE: Final = Reply(452, "4.3.1", "Insufficient system storage")  # RFC 3463 X.3.1
TOO_MANY_RECIPIENTS: Final = Reply(452, "4.5.3", "Too many recipients")  # RFC 5321 §4.5.3.1.10
TLS_NOT_AVAILABLE: Final = Reply(454, "4.7.0", "TLS not available")  # RFC 3207 §4
AUTH_TEMPORARY_FAILURE: Final = Reply(454, "4.7.0", "Temporary authentication failure")

# --- 5xx: permanent -------------------------------------------------------------------------

LINE_TOO_LONG: Final = Reply(500, "5.5.2", "Line too long")  # RFC 5321 §4.5.3.1.4
UNKNOWN_COMMAND: Final = Reply(500, "5.5.2", "Command not recognized")  # RFC 5321 §4.2.4
BAD_CHARACTERS: Final = Reply(501, "5.5.2", "Control characters are not allowed")
BAD_BASE64: Final = Reply(501, "5.5.2", "Invalid base64 data")  # RFC 4954 §4
BAD_SASL_RESPONSE: Final = Reply(501, "5.5.2", "Malformed authentication response")
AUTH_CANCELLED: Final = Reply(501, "5.7.0", "Authentication cancelled")  # RFC 4954 §4 "*"
NOT_IMPLEMENTED: Final = Reply(502, "5.5.1", "Command not implemented")  # EXPN, RFC 5321 §3.5.3
AUTH_MECHANISM_UNKNOWN: Final = Reply(504, "5.5.4", "Unrecognized authentication type")
AUTH_REQUIRED: Final = Reply(530, "5.7.0", "Authentication required")  # RFC 4954 §6
AUTH_FAILED: Final = Reply(535, "5.7.8", "Authentication credentials invalid")  # RFC 4954 §6
ENCRYPTION_REQUIRED: Final = Reply(
    538, "5.7.11", "Encryption required for requested authentication mechanism"
)  # RFC 4954 §6
BARE_CR: Final = Reply(550, "5.5.2", "Message refused: bare <CR> received")  # research 2.1
MESSAGE_TOO_BIG: Final = Reply(552, "5.3.4", "Message size exceeds fixed limit")  # RFC 1870 §6
# RFC 5321 §4.5.3.1.10 answers "too much mail data" with 552; 5.5.2 (syntax) as Postfix uses
# for over-long lines. The whole message is refused: tinymail never folds or truncates lines.
DATA_LINE_TOO_LONG: Final = Reply(552, "5.5.2", "Message refused: a line is too long")
ADDRESS_NOT_ASCII: Final = Reply(553, "5.6.7", "Address requires SMTPUTF8")  # RFC 6531 §3.5
NO_VALID_RECIPIENTS: Final = Reply(554, "5.5.1", "No valid recipients")  # RFC 5321 §3.3
SYNCHRONIZATION: Final = Reply(554, "5.5.0", "Error: SMTP protocol synchronization")
FORBIDDEN_COMMAND: Final = Reply(554, "5.7.0", "Error: this is an SMTP server")  # research L9
UNKNOWN_PARAMETER: Final = Reply(555, "5.5.4", "Unsupported parameter")  # RFC 5321 §4.1.1.11


def syntax_error(text: str) -> Reply:
    """501 5.5.4: invalid command arguments (RFC 5321 §4.2.2, RFC 3463 X.5.4)."""
    return Reply(501, "5.5.4", text)


def bad_address(text: str, *, sender: bool) -> Reply:
    """501 with X.1.7 (bad sender syntax) or X.1.3 (bad destination syntax), RFC 3463 §3.2."""
    return Reply(501, "5.1.7" if sender else "5.1.3", text)


def bad_sequence(text: str) -> Reply:
    """503 5.5.1: command out of sequence (RFC 5321 §4.2.4)."""
    return Reply(503, "5.5.1", text)


def size_too_big(limit: int) -> Reply:
    """552 5.3.4 for a SIZE= declaration over the limit (RFC 1870 §6)."""
    return Reply(552, "5.3.4", f"Message size exceeds fixed limit of {limit} bytes")
