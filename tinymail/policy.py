"""Pure accept/reject rules for SMTP envelopes.

Rules (research/reliability-security.md 2.3):
- A recipient in a local domain (or a bare name such as `postmaster`, RFC 5321
  4.5.1) must resolve to a user, alias or system account: else 550 5.1.1.
  Local parts are never re-parsed for routing (`user%remote@local`,
  `remote!user@local`, `"user@remote"@local` are just unknown local users), so
  they can never relay.
- Any other domain, including IP literals, is relayed only for an
  authenticated session or a client in trusted_networks: else 554 5.7.1.
  The decision never looks at the sender.
- Sender ownership (research 2.3 R13; Postfix reject_sender_login_mismatch): an
  authenticated client may use as envelope sender, and in every From: address,
  only addresses it owns: its own, and local addresses that resolve to its
  mailbox (aliases pointing to it). Anything else is 553 5.7.1. The null sender
  is allowed (it claims nobody); unauthenticated sessions are not checked here,
  because their relay rights never depend on the sender.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable

from tinymail.proto.smtp.replies import Reply

RCPT_OK = Reply(250, "2.1.5", "Ok")
SENDER_OK = Reply(250, "2.1.0", "Ok")


def recipient_reply(
    address: str, *, local_domain: bool, known_local: bool, may_relay: bool
) -> Reply:
    """The RCPT TO answer for `address` given the facts the adapter looked up."""
    if local_domain:
        if known_local:
            return RCPT_OK
        return Reply(
            550, "5.1.1", f"<{_printable(address)}>: Recipient address rejected: User unknown"
        )
    if may_relay:
        return RCPT_OK
    return Reply(554, "5.7.1", f"<{_printable(address)}>: Relay access denied")


def sender_reply(address: str, *, login: str | None, owners: Collection[str]) -> Reply:
    """The MAIL FROM answer: `owners` are the mailbox owners `address` resolves to."""
    if login is None or address == "" or login.lower() in {o.lower() for o in owners}:
        return SENDER_OK
    return _not_owned(address, login)


def from_header_reply(
    addresses: Iterable[str], *, login: str | None, owners_of: Callable[[str], Collection[str]]
) -> Reply:
    """The end-of-DATA answer for the From: addresses of an authenticated submission."""
    if login is None:
        return SENDER_OK
    for address in addresses:
        if login.lower() not in {o.lower() for o in owners_of(address)}:
            return _not_owned(address, login, "From: header")
    return SENDER_OK


def _not_owned(address: str, login: str, what: str = "Sender address") -> Reply:
    return Reply(
        553,
        "5.7.1",
        f"<{_printable(address)}>: {what} rejected: not owned by user {_printable(login)}",
    )


def _printable(text: str) -> str:
    clean = "".join(c if c.isprintable() else "?" for c in text)
    return clean[:200]
