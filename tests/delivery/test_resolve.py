"""tinymail.delivery.resolve: aliases, then users, then system accounts; postmaster implicit."""

from __future__ import annotations

import pytest

from tinymail.delivery.local import system_account_exists
from tinymail.delivery.resolve import Resolution, resolve_local, split_address
from tinymail.store.aliases import Aliases
from tinymail.store.users import UserDB, parse_users

DOMAINS = ("example.test", "localhost")
USERS = "alice@example.test:{PLAIN}a\nbob:{PLAIN}b\n"


def no_system_accounts(name: str) -> bool:
    return False


def resolve(
    address: str,
    aliases: str = "",
    users: str = USERS,
    system_account=system_account_exists,  # root exists on every Unix machine
) -> Resolution | None:
    return resolve_local(
        address,
        users=UserDB(parse_users(users, "users")),
        aliases=Aliases.parse(aliases, "aliases", frozenset(DOMAINS)),
        local_domains=DOMAINS,
        system_account=system_account,
    )


def test_split_address() -> None:
    assert split_address("Alice@Example.TEST.") == ("Alice", "example.test")
    assert split_address("root") == ("root", "")
    assert split_address('"a@b"@c.test') == ('"a@b"', "c.test")


def test_users() -> None:
    assert resolve("alice@example.test") == Resolution(("alice@example.test",), ())
    assert resolve("ALICE@Example.Test") == Resolution(("alice@example.test",), ())
    # A bare users entry owns its name in every local domain.
    assert resolve("bob@example.test") == Resolution(("bob",), ())
    assert resolve("bob@localhost") == Resolution(("bob",), ())
    assert resolve("bob") == Resolution(("bob",), ())


def test_unknown_is_none() -> None:
    assert resolve("ghost@example.test") is None
    assert resolve("alice@localhost") is None  # alice exists only in example.test
    assert resolve("ghost") is None


def test_system_accounts() -> None:
    assert system_account_exists("root")
    assert not system_account_exists("no-such-account-tinymail")
    assert not system_account_exists("bad\udcffname")
    assert resolve("root@example.test") == Resolution(("root",), ())
    assert resolve("ROOT@localhost") == Resolution(("root",), ())
    assert resolve("root@example.test", system_account=no_system_accounts) is None


@pytest.mark.parametrize("name", ["postmaster", "Postmaster", "mailer-daemon", "abuse"])
def test_postmaster_goes_to_root_implicitly(name: str) -> None:
    assert resolve(f"{name}@example.test") == Resolution(("root",), ())
    assert resolve(name) == Resolution(("root",), ())


def test_implicit_aliases_follow_explicit_ones() -> None:
    # root aliased to a user: postmaster (implicit -> root) lands there too.
    aliases = "root: alice@example.test\n"
    assert resolve("postmaster@example.test", aliases) == Resolution(("alice@example.test",), ())
    assert resolve("abuse@localhost", aliases) == Resolution(("alice@example.test",), ())
    # An explicit postmaster alias wins over the implicit one.
    explicit = "postmaster: bob\n"
    assert resolve("postmaster@example.test", explicit) == Resolution(("bob",), ())
    assert resolve("abuse@example.test", explicit) == Resolution(("bob",), ())


def test_postmaster_without_root_is_unknown() -> None:
    assert resolve("postmaster@example.test", system_account=no_system_accounts) is None


def test_aliases_to_users_and_forwards() -> None:
    aliases = (
        "sales: alice@example.test, bob, partner@remote.test\n"
        "fwd: someone@remote.test\n"
        "self: bob, bob@example.test\n"
    )
    assert resolve("sales@example.test", aliases) == Resolution(
        ("alice@example.test", "bob"), ("partner@remote.test",)
    )
    assert resolve("fwd@localhost", aliases) == Resolution((), ("someone@remote.test",))
    assert resolve("self@example.test", aliases) == Resolution(("bob",), ())


def test_alias_with_an_unknown_local_target_is_unknown() -> None:
    assert resolve("x@example.test", "x: alice@example.test, ghost\n") is None


def test_alias_loop_is_unknown_not_a_hang() -> None:
    aliases = Aliases({"a": ("b",), "b": ("a",)}, frozenset(DOMAINS))
    result = resolve_local(
        "a@example.test",
        users=UserDB({}),
        aliases=aliases,
        local_domains=DOMAINS,
        system_account=no_system_accounts,
    )
    assert result is None


def test_bare_alias_target_reaches_a_full_address_user() -> None:
    assert resolve("root@example.test", "root: alice\n") == Resolution(("alice@example.test",), ())
