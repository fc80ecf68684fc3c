"""tinymail.delivery.local: resolve local recipients and store one copy for all of them."""

from __future__ import annotations

import mailbox
from pathlib import Path

from tinymail.delivery.courier import Outcome, Status
from tinymail.delivery.local import LocalDelivery
from tinymail.store.aliases import Aliases
from tinymail.store.users import UserDB, parse_users

DOMAINS = ("example.test", "localhost")
CONTENT = b"From: s@remote.test\nSubject: hi\n\nbody\n"


def delivery(tmp_path: Path, aliases: str = "", system=("root",)) -> LocalDelivery:
    users = UserDB(parse_users("alice@example.test:{PLAIN}a\nbob:{PLAIN}b\n", "users"))
    return LocalDelivery(
        data_dir=tmp_path,
        users=users,
        aliases=Aliases.parse(aliases, "aliases", frozenset(DOMAINS)),
        local_domains=DOMAINS,
        system_account=lambda name: name in system,
    )


def messages(box: Path) -> list[bytes]:
    md = mailbox.Maildir(box, factory=None, create=False)
    return [md.get_bytes(k) for k in md.keys()]  # noqa: SIM118 (Maildir is not a dict)


def test_deliver_to_users_and_system_account(tmp_path: Path) -> None:
    local = delivery(tmp_path)
    result = local.deliver(
        "s@remote.test", ["alice@example.test", "bob@localhost", "root@example.test"], CONTENT
    )
    ok = Outcome(Status.OK, "2.0.0", "delivered to mailbox", "local")
    assert result.outcomes == {
        "alice@example.test": ok,
        "bob@localhost": ok,
        "root@example.test": ok,
    }
    expected = b"Return-Path: <s@remote.test>\n" + CONTENT
    mail = tmp_path / "mail"
    for owner in ("alice@example.test", "bob", "root"):
        assert messages(mail / owner) == [expected]
    assert result.dirs_to_sync == {mail / o / "new" for o in ("alice@example.test", "bob", "root")}
    inodes = {next((mail / o / "new").iterdir()).stat().st_ino for o in ("bob", "root")}
    assert len(inodes) == 1  # one copy, hard-linked
    assert result.forwards == {}


def test_unknown_recipient_is_permanent_and_others_still_delivered(tmp_path: Path) -> None:
    result = delivery(tmp_path).deliver("", ["ghost@example.test", "bob"], CONTENT)
    ghost = result.outcomes["ghost@example.test"]
    assert ghost.status is Status.PERM
    assert ghost.dsn == "5.1.1"
    assert result.outcomes["bob"].status is Status.OK
    assert messages(tmp_path / "mail" / "bob") == [b"Return-Path: <>\n" + CONTENT]
    assert not (tmp_path / "mail" / "ghost@example.test").exists()


def test_nothing_deliverable_writes_nothing(tmp_path: Path) -> None:
    result = delivery(tmp_path).deliver("s@x", ["ghost@example.test"], CONTENT)
    assert result.outcomes["ghost@example.test"].status is Status.PERM
    assert result.dirs_to_sync == set()
    assert not (tmp_path / "mail").exists()


def test_aliases_fan_out_once_per_owner(tmp_path: Path) -> None:
    aliases = "team: alice@example.test, bob\nall: team, bob, ext@remote.test\n"
    result = delivery(tmp_path, aliases).deliver(
        "s@x", ["team@example.test", "all@localhost", "bob"], CONTENT
    )
    assert {o.status for o in result.outcomes.values()} == {Status.OK}
    assert len(messages(tmp_path / "mail" / "bob")) == 1  # one copy despite three routes
    assert len(messages(tmp_path / "mail" / "alice@example.test")) == 1
    assert result.forwards == {"all@localhost": ("ext@remote.test",)}


def test_postmaster_lands_in_root(tmp_path: Path) -> None:
    result = delivery(tmp_path).deliver("s@x", ["postmaster@example.test"], CONTENT)
    assert result.outcomes["postmaster@example.test"].status is Status.OK
    assert len(messages(tmp_path / "mail" / "root")) == 1


def test_store_failure_is_temporary_for_every_local_recipient(tmp_path: Path) -> None:
    (tmp_path / "mail").mkdir()
    (tmp_path / "mail" / "bob").write_bytes(b"a file where the Maildir should be")
    result = delivery(tmp_path).deliver("s@x", ["bob", "alice@example.test", "ghost"], CONTENT)
    assert result.outcomes["bob"].status is Status.TEMP
    assert result.outcomes["bob"].dsn == "4.3.0"
    assert "mailbox write failed" in result.outcomes["bob"].reply
    assert result.outcomes["alice@example.test"].status is Status.TEMP
    assert result.outcomes["ghost"].status is Status.PERM
    assert result.dirs_to_sync == set()
    assert not (tmp_path / "mail" / "alice@example.test" / "new").exists() or not list(
        (tmp_path / "mail" / "alice@example.test" / "new").iterdir()
    )


def test_plain_only_leaves_forwarding_and_unknown_recipients_to_the_queue(tmp_path: Path) -> None:
    local = delivery(tmp_path, aliases="team: alice, carol@remote.test\n")
    rcpts = ["bob@localhost", "team@example.test", "ghost@example.test"]
    result = local.deliver("s@remote.test", rcpts, CONTENT, plain_only=True)
    ok = Outcome(Status.OK, "2.0.0", "delivered to mailbox", "local")
    assert result.outcomes == {"bob@localhost": ok}
    assert result.forwards == {}
    assert not (tmp_path / "mail" / "alice@example.test").exists()  # team's share waits
