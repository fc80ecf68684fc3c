"""tinymail.policy: RCPT decisions, and the open-relay address shapes that must never relay.

The shape tests run the same chain as the SMTP adapter (net/smtp_session.py `_rcpt`): the
domain decides local vs. relay, resolve_local decides known, then recipient_reply answers.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tinymail.config import Config, load_config
from tinymail.delivery.local import system_account_exists
from tinymail.delivery.resolve import resolve_local, split_address
from tinymail.policy import RCPT_OK, SENDER_OK, recipient_reply
from tinymail.store.aliases import Aliases
from tinymail.store.users import UserDB, parse_users


@pytest.fixture
def cfg(tmp_path: Path) -> Config:
    path = tmp_path / "tinymail.toml"
    path.write_text(
        f'hostname = "mx.example.test"\ndomains = ["example.test", "localhost"]\n'
        f'data_dir = "{tmp_path}/data"\n'
    )
    return load_config(path)


def rcpt(cfg: Config, address: str, *, may_relay: bool) -> tuple[int, str, str]:
    users = UserDB(parse_users("alice@example.test:{PLAIN}a\n", "users"))
    aliases = Aliases.parse(
        "sales: alice@example.test\nfwd: partner@remote.test\n", "aliases", frozenset(cfg.domains)
    )
    _, domain = split_address(address)
    local_domain = not domain or cfg.is_local_domain(domain)
    known = local_domain and (
        resolve_local(
            address,
            users=users,
            aliases=aliases,
            local_domains=cfg.domains,
            system_account=system_account_exists,
        )
        is not None
    )
    reply = recipient_reply(
        address, local_domain=local_domain, known_local=known, may_relay=may_relay
    )
    return reply.code, reply.enhanced, reply.text


def test_reply_constants() -> None:
    assert (RCPT_OK.code, RCPT_OK.enhanced) == (250, "2.1.5")
    assert (SENDER_OK.code, SENDER_OK.enhanced) == (250, "2.1.0")


def test_local_known_and_unknown() -> None:
    assert recipient_reply("a@x", local_domain=True, known_local=True, may_relay=False) == RCPT_OK
    reply = recipient_reply("ghost@x", local_domain=True, known_local=False, may_relay=True)
    assert (reply.code, reply.enhanced) == (550, "5.1.1")
    assert reply.text == "<ghost@x>: Recipient address rejected: User unknown"


def test_relay_allowed_and_denied() -> None:
    ok = recipient_reply("b@remote.test", local_domain=False, known_local=False, may_relay=True)
    assert ok == RCPT_OK
    denied = recipient_reply(
        "b@remote.test", local_domain=False, known_local=False, may_relay=False
    )
    assert (denied.code, denied.enhanced) == (554, "5.7.1")
    assert denied.text == "<b@remote.test>: Relay access denied"


def test_reply_text_is_sanitised() -> None:
    reply = recipient_reply(
        "a\r\nRSET\x00@remote.test" + "x" * 500,
        local_domain=False,
        known_local=False,
        may_relay=False,
    )
    assert "\r" not in reply.text and "\n" not in reply.text and "\x00" not in reply.text
    assert len(reply.text) < 260


def test_local_recipients_through_the_adapter_chain(cfg: Config) -> None:
    for address in ("alice@example.test", "ALICE@Example.Test", "sales@localhost", "root",
                    "postmaster", "postmaster@example.test", "fwd@example.test"):  # fmt: skip
        assert rcpt(cfg, address, may_relay=False)[0] == 250, address
    assert rcpt(cfg, "ghost@example.test", may_relay=True)[:2] == (550, "5.1.1")


@pytest.mark.parametrize(
    "address",
    [
        "user%remote.test@example.test",
        "alice%remote.test@example.test",
        "remote.test!user@example.test",
        "remote.test!alice@example.test",
        '"user@remote.test"@example.test',
        '"alice@remote.test"@localhost',
        "user@remote.test@example.test",
        "root%remote.test@example.test",
    ],
)
def test_source_routing_shapes_in_a_local_domain_are_unknown_users(
    cfg: Config, address: str
) -> None:
    # Even a trusted/authenticated client gets 550: the local part is never re-parsed.
    for may_relay in (False, True):
        assert rcpt(cfg, address, may_relay=may_relay)[:2] == (550, "5.1.1")


@pytest.mark.parametrize(
    "address",
    [
        "user@[1.2.3.4]",
        "user@[127.0.0.1]",
        "user@[IPv6:::1]",
        "user@remote.test",
        "alice@example.test.evil.test",
        "alice@sub.example.test",
        "user@localhost.localdomain",
    ],
)
def test_non_local_domains_need_relay_permission(cfg: Config, address: str) -> None:
    assert rcpt(cfg, address, may_relay=False)[:2] == (554, "5.7.1")
    assert rcpt(cfg, address, may_relay=True)[0] == 250
