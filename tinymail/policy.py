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
"""

from __future__ import annotations

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


def _printable(text: str) -> str:
    clean = "".join(c if c.isprintable() else "?" for c in text)
    return clean[:200]
