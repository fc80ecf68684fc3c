"""Envelope syntax: RFC 5321 §4.1.2 paths (with RFC 6531 SMTPUTF8) and MAIL/RCPT arguments.

Rules:
- A path is ``<...>``; a source route ``<@a,@b:user@dom>`` is accepted and dropped (RFC 5321
  §3.3 and §4.1.2: servers "SHOULD ignore the routes"), so policy only sees ``user@dom``.
- Mailbox = Local-part "@" (Domain / address-literal). The local part is a dot-string or a
  quoted string; quotes are kept, so policy sees ``"a@b"@local`` exactly (research 2.3 R4).
- Address literals are ``[IPv4]`` or ``[IPv6:...]`` (RFC 5321 §4.1.3); general literals are
  refused. ``a@b@c``, ``a@``, ``@`` and empty local parts are syntax errors (research R7).
- Non-ASCII is allowed in atoms, quoted strings and domain labels only with ``utf8=True``;
  lone surrogates (undecodable bytes kept by ``surrogateescape``) are never valid.
- Nothing is lowercased or IDNA-encoded here: one canonicaliser in policy does that.
- ``parse_mail_from``/``parse_rcpt_to`` turn a bad argument into a ``RemoteProtocolError``
  carrying the exact reply; the pure helpers below them raise ``AddressError``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from tinymail.proto.errors import RemoteProtocolError
from tinymail.proto.smtp import replies
from tinymail.proto.smtp.events import MailFrom

_NON_ASCII = "\u0080-\ud7ff\ue000-\U0010ffff"  # UTF8-non-ascii without surrogates (RFC 6531)
_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~\-"
_QTEXT = r"\x20\x21\x23-\x5b\x5d-\x7e"


def _grammar(utf8: bool) -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    extra = _NON_ASCII if utf8 else ""
    atom = f"[{_ATEXT}{extra}]+"
    dot_string = re.compile(rf"{atom}(?:\.{atom})*")
    quoted = re.compile(rf'"(?:[{_QTEXT}{extra}]|\\[\x20-\x7e])*"')
    let_dig = f"[A-Za-z0-9{extra}]"
    label = rf"{let_dig}(?:[A-Za-z0-9\-{extra}]*{let_dig})?"
    domain = re.compile(rf"{label}(?:\.{label})*")
    return dot_string, quoted, domain


_ASCII_GRAMMAR = _grammar(False)
_UTF8_GRAMMAR = _grammar(True)
_ROUTE = re.compile(r"@[^,:@<>]+(?:,@[^,:@<>]+)*:")


class AddressError(ValueError):
    """The text is not a valid RFC 5321 path or mailbox."""


class NotAsciiError(AddressError):
    """The address holds non-ASCII (or undecodable) characters without SMTPUTF8 (RFC 6531)."""


@dataclass(frozen=True, slots=True)
class Mailbox:
    """A parsed mailbox; ``str()`` gives it back exactly as written (quotes kept)."""

    local_part: str
    domain: str  # "" only for the special domainless <postmaster> (RFC 5321 §4.5.1)

    def __str__(self) -> str:
        return f"{self.local_part}@{self.domain}" if self.domain else self.local_part


def _check_domain(domain: str, utf8: bool) -> None:
    if domain.startswith("["):
        if not domain.endswith("]"):
            raise AddressError("unterminated address literal")
        literal = domain[1:-1]
        try:
            if literal[:5].upper() == "IPV6:":  # RFC 5321 §4.1.3 IPv6-address-literal
                ipaddress.IPv6Address(literal[5:])
            else:
                ipaddress.IPv4Address(literal)
        except ValueError as exc:
            raise AddressError(f"invalid address literal {domain!r}") from exc
        return
    _, _, domain_re = _UTF8_GRAMMAR if utf8 else _ASCII_GRAMMAR
    if not domain_re.fullmatch(domain) or len(domain.encode("utf-8", "surrogatepass")) > 255:
        raise AddressError(f"invalid domain {domain!r}")  # RFC 5321 §4.5.3.1.2: 255 octets
    if any(len(label) > 63 for label in domain.split(".")):
        raise AddressError("domain label longer than 63 octets")  # RFC 1035 §2.3.4


def parse_mailbox(text: str, *, utf8: bool = False) -> Mailbox:
    """Parse ``local@domain`` (no angle brackets) per RFC 5321 §4.1.2."""
    if not text.isascii() and (not utf8 or re.search("[\ud800-\udfff]", text)):
        raise NotAsciiError("non-ASCII address without SMTPUTF8")
    dot_string, quoted, _ = _UTF8_GRAMMAR if utf8 else _ASCII_GRAMMAR
    if text.startswith('"'):
        match = quoted.match(text)
        if match is None:
            raise AddressError("invalid quoted local part")
        local, rest = match.group(), text[match.end() :]
    else:
        local, sep, domain = text.partition("@")
        rest = sep + domain
        if not dot_string.fullmatch(local):
            raise AddressError(f"invalid local part {local!r}")
    if not rest.startswith("@") or len(rest) < 2:
        raise AddressError("missing domain")
    domain = rest[1:]
    _check_domain(domain, utf8)
    return Mailbox(local, domain)


def parse_path(path: str, *, utf8: bool = False, null_ok: bool = False) -> str:
    """Parse ``<[route:]mailbox>`` and return the mailbox as written, route removed.

    ``null_ok`` allows ``<>`` (the null reverse-path, returned as ""). ``<postmaster>`` without a
    domain is accepted case-insensitively and returned as "postmaster" (RFC 5321 §4.5.1).
    """
    if len(path) < 2 or path[0] != "<" or path[-1] != ">":
        raise AddressError("address must be enclosed in <>")
    inner = path[1:-1]
    if not inner:
        if null_ok:
            return ""
        raise AddressError("empty address")
    if inner.lower() == "postmaster":
        return "postmaster"
    if inner.startswith("@"):  # RFC 5321 §3.3: accept a source route, then ignore it
        route = _ROUTE.match(inner)
        if route is None:
            raise AddressError("invalid source route")
        inner = inner[route.end() :]
    return str(parse_mailbox(inner, utf8=utf8))


def split_path_argument(argument: str) -> tuple[str, list[str]]:
    """Split ``<path> [SP param ...]`` into the path and its ESMTP parameters.

    The closing ``>`` is found outside quoted strings, so ``<"a>b"@x>`` stays one path.
    """
    if not argument.startswith("<"):
        raise AddressError("address must be enclosed in <>")
    in_quotes = escaped = False
    for index, char in enumerate(argument):
        if escaped:
            escaped = False
        elif char == "\\" and in_quotes:
            escaped = True
        elif char == '"':
            in_quotes = not in_quotes
        elif char == ">" and not in_quotes:
            path, rest = argument[: index + 1], argument[index + 1 :]
            if rest and not rest.startswith(" "):
                raise AddressError("garbage after address")
            return path, rest.split()
    raise AddressError("address must be enclosed in <>")


def parse_parameters(params: list[str]) -> dict[str, str | None]:
    """Parse ``KEY[=VALUE]`` ESMTP parameters (RFC 5321 §4.1.2 esmtp-param); keys uppercased.

    Raises ``AddressError`` for a malformed keyword or a repeated parameter.
    """
    parsed: dict[str, str | None] = {}
    for param in params:
        key, sep, value = param.partition("=")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]*", key) or (sep and not value):
            raise AddressError(f"malformed parameter {param!r}")
        key = key.upper()
        if key in parsed:
            raise AddressError(f"duplicate parameter {key}")
        parsed[key] = value if sep else None
    return parsed


def _path_and_params(argument: str, *, sender: bool) -> tuple[str, list[str]]:
    try:
        return split_path_argument(argument.lstrip(" "))  # "FROM: <a@b>" is common
    except AddressError as exc:
        raise RemoteProtocolError(replies.bad_address(str(exc), sender=sender)) from exc


def _checked_path(path: str, utf8: bool, *, sender: bool) -> str:
    try:
        return parse_path(path, utf8=utf8, null_ok=sender)
    except NotAsciiError as exc:
        raise RemoteProtocolError(replies.ADDRESS_NOT_ASCII) from exc  # RFC 6531 §3.5
    except AddressError as exc:
        raise RemoteProtocolError(replies.bad_address(str(exc), sender=sender)) from exc


def parse_mail_from(argument: str, *, esmtp: bool, max_size: int, auth_param: bool) -> MailFrom:
    """Parse the argument of MAIL (``FROM:<path> [params]``) into a ``MailFrom`` event.

    ``esmtp``: the client used EHLO (parameters need it, RFC 5321 §4.1.1.11); ``max_size``: the
    advertised SIZE; ``auth_param``: AUTH is offered, so ``AUTH=`` is accepted (RFC 4954 §5).
    Raises ``RemoteProtocolError`` with the reply for any refusal.
    """
    if argument[:5].upper() != "FROM:":
        raise RemoteProtocolError(replies.syntax_error("Syntax: MAIL FROM:<address>"))
    path, raw_params = _path_and_params(argument[5:], sender=True)
    if raw_params and not esmtp:
        raise RemoteProtocolError(replies.UNKNOWN_PARAMETER)
    try:
        params = parse_parameters(raw_params)
    except AddressError as exc:
        raise RemoteProtocolError(replies.syntax_error(str(exc))) from exc
    size: int | None = None
    body: str | None = None
    utf8 = False
    for key, value in params.items():
        if key == "SIZE":  # RFC 1870 §3; Python ints make huge values safe to compare
            if value is None or not re.fullmatch(r"[0-9]+", value):
                raise RemoteProtocolError(replies.syntax_error("Bad SIZE parameter"))
            size = int(value)
            if size > max_size:
                raise RemoteProtocolError(replies.size_too_big(max_size))
        elif key == "BODY" and value is not None and value.upper() in ("7BIT", "8BITMIME"):
            body = value.upper()  # RFC 6152 §2
        elif key == "BODY":
            raise RemoteProtocolError(replies.syntax_error("Bad BODY parameter"))
        elif key == "SMTPUTF8" and value is None:
            utf8 = True  # RFC 6531 §3.4
        elif key != "AUTH" or not auth_param:  # AUTH= is accepted and not trusted
            raise RemoteProtocolError(replies.UNKNOWN_PARAMETER)
    return MailFrom(_checked_path(path, utf8, sender=True), size, body, utf8)


def parse_rcpt_to(argument: str, *, utf8: bool) -> str:
    """Parse the argument of RCPT (``TO:<path>``); ``utf8``: the transaction used SMTPUTF8."""
    if argument[:3].upper() != "TO:":
        raise RemoteProtocolError(replies.syntax_error("Syntax: RCPT TO:<address>"))
    path, params = _path_and_params(argument[3:], sender=False)
    if params:
        raise RemoteProtocolError(replies.UNKNOWN_PARAMETER)  # no RCPT parameters (no DSN yet)
    return _checked_path(path, utf8, sender=False)
