"""Pure: which mailboxes (or remote addresses) a local recipient means.

Order (as Postfix local(8) and Dovecot's passwd-file users expect): aliases
first (recursively, loops refused), then the users file, then a system account
of that name (so cron's mail to root lands before any user exists). RFC 5321
4.5.1 requires `postmaster`; it goes to root unless an alias says otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

from tinymail.store.aliases import Aliases, AliasesError
from tinymail.store.users import UserDB

IMPLICIT_ALIASES = {"postmaster": "root", "mailer-daemon": "postmaster", "abuse": "postmaster"}


@dataclass(frozen=True, slots=True)
class Resolution:
    mailboxes: tuple[str, ...]  # mailbox owners, e.g. "alice@example.test" or "root"
    forwards: tuple[str, ...]  # remote addresses an alias points to


def split_address(address: str) -> tuple[str, str]:
    """(local part, lowercased domain); domain "" for a bare name."""
    local, at, domain = address.rpartition("@")
    if not at:
        return address, ""
    return local, domain.lower().rstrip(".")


def resolve_local(
    address: str,
    *,
    users: UserDB,
    aliases: Aliases,
    local_domains: Collection[str],
    system_account: Callable[[str], bool],
) -> Resolution | None:
    """Resolve a recipient in a local domain (or a bare name); None when nobody has it."""
    try:
        targets = aliases.expand(address)
    except AliasesError:
        return None
    mailboxes: list[str] = []
    forwards: list[str] = []
    for target in targets:
        local, domain = split_address(target)
        if domain and domain not in local_domains:
            forwards.append(target)
            continue
        owner = _owner(target, local.lower(), users, aliases, system_account, depth=0)
        if owner is None and not domain:
            # A bare alias target ("root: alice") means that name in a local domain:
            # the recipient's own first, then the others.
            _, rcpt_domain = split_address(address)
            candidates = [rcpt_domain] if rcpt_domain else []
            candidates += [d for d in local_domains if d != rcpt_domain]
            owner = next(
                (o for d in candidates if (o := users.owner(f"{local}@{d}")) is not None), None
            )
        if owner is None:
            return None
        mailboxes.append(owner)
    if not mailboxes and not forwards:
        return None
    return Resolution(tuple(dict.fromkeys(mailboxes)), tuple(dict.fromkeys(forwards)))


def _owner(
    target: str,
    local: str,
    users: UserDB,
    aliases: Aliases,
    system_account: Callable[[str], bool],
    depth: int,
) -> str | None:
    owner = users.owner(target)
    if owner is not None:
        return owner
    if system_account(local):
        return local
    implicit = IMPLICIT_ALIASES.get(local)
    if implicit is not None and depth < len(IMPLICIT_ALIASES):
        expanded = aliases.expand(implicit)
        first = expanded[0] if expanded else implicit
        return _owner(
            first, split_address(first)[0].lower(), users, aliases, system_account, depth + 1
        )
    return None
