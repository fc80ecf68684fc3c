"""tinymail.store.users: scrypt hashes, the users file, atomic rewrites, live reload."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from tinymail.store.safeio import atomic_replace
from tinymail.store.users import (
    SCRYPT_LN,
    User,
    UserDB,
    UsersFileError,
    UserSource,
    delete_user,
    hash_password,
    parse_users,
    set_password,
    validate_address,
    verify_password,
)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- hashing -------------------------------------------------------------------------------


def test_hash_verify_round_trip() -> None:
    stored = hash_password("correct horse")
    assert stored.startswith(f"{{SCRYPT}}ln={SCRYPT_LN},r=8,p=1$")
    assert ":" not in stored  # the users file splits fields on ":"
    assert verify_password("correct horse", stored)
    assert not verify_password("correct horsE", stored)
    assert not verify_password("", stored)


def test_hashes_are_salted() -> None:
    assert hash_password("same") != hash_password("same")


def test_non_ascii_password() -> None:
    stored = hash_password("pässwörd✓")
    assert verify_password("pässwörd✓", stored)
    assert not verify_password("passwords", stored)


def test_scheme_name_is_case_insensitive() -> None:
    stored = hash_password("pw")
    assert verify_password("pw", "{scrypt}" + stored.removeprefix("{SCRYPT}"))


def test_plain_and_cleartext_entries() -> None:
    assert verify_password("secret", "{PLAIN}secret")
    assert verify_password("secret", "{CLEARTEXT}secret")
    assert verify_password("secret", "{plain}secret")
    assert not verify_password("Secret", "{PLAIN}secret")
    assert not verify_password("secret", "{PLAIN}secret2")
    assert not verify_password("secret", "secret")  # no scheme is never a match


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "{",
        "}",
        "{SCRYPT",
        "{SCRYPT}",
        "{SCRYPT}$$",
        "{SCRYPT}garbage",
        "{SCRYPT}ln=14,r=8,p=1",
        "{SCRYPT}ln=14,r=8$c2FsdA$AAAA",
        "{SCRYPT}ln=x,r=8,p=1$c2FsdA$AAAA",
        "{SCRYPT}ln=14,r=8,p=1$not base64!$AAAA",
        "{SCRYPT}ln=14,r=8,p=1$c2FsdA$not base64!",
        "{SCRYPT}ln=14,r=8,p=1$c2FsdA$AAAA$extra",
        "{SCRYPT}ln=0,r=8,p=1$c2FsdA$AAAA",
        "{SCRYPT}ln=99,r=8,p=1$c2FsdA$AAAA",
        "{SCRYPT}ln=14,r=0,p=1$c2FsdA$AAAA",
        "{SCRYPT}ln=14,r=8,p=99$c2FsdA$AAAA",
        "{SCRYPT}ln=-1,r=8,p=1$c2FsdA$AAAA",
        "{MD5}abc",
        "{SHA512-CRYPT}$6$salt$hash",
        "$6$salt$hash",
    ],
)
def test_corrupt_hash_strings_never_match_or_raise(stored: str) -> None:
    assert verify_password("password", stored) is False


@pytest.mark.parametrize(
    "stored",
    [
        "{SCRYPT}ln=14,r=8,p=1$$",
        "{SCRYPT}ln=14,r=8,p=1$c2FsdA$",
        "{SCRYPT}ln=20,r=8,p=1$c2FsdA$AAAA",
        "{SCRYPT}ln=19,r=16,p=1$c2FsdA$AAAA",
    ],
)
def test_corrupt_hash_strings_that_reach_scrypt(stored: str) -> None:
    assert verify_password("password", stored) is False


def test_verify_uses_constant_time_compare_behaviour() -> None:
    # Behaviour only: a digest differing in its first or last byte is equally rejected, and a
    # truncated stored digest (a shorter dklen) still verifies only the right password.
    stored = hash_password("pw")
    head, salt, digest = stored.rsplit("$", 2)
    raw = bytearray(base64.b64decode(digest + "=" * (-len(digest) % 4)))
    for index in (0, len(raw) - 1):
        flipped = bytearray(raw)
        flipped[index] ^= 1
        bad = base64.b64encode(bytes(flipped)).decode().rstrip("=")
        assert not verify_password("pw", f"{head}${salt}${bad}")


# --- addresses --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "normal"),
    [("Alice@Example.TEST", "alice@example.test"), (" bob ", "bob"), ("a.b+c@x", "a.b+c@x")],
)
def test_validate_address(given: str, normal: str) -> None:
    assert validate_address(given) == normal


@pytest.mark.parametrize(
    "bad",
    ["", " ", "a:b@x", "a/b@x", "a\\b", "a b@x", "a\x00b", "a@b@c", "alice@", "@x", ".hidden",
     "a\x7f", "x" * 255],
)  # fmt: skip
def test_validate_address_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        validate_address(bad)


# --- parsing ------------------------------------------------------------------------------------


def test_parse_users_file() -> None:
    text = (
        "# comment\n"
        "\n"
        "Alice@Example.Test:{PLAIN}a\n"
        "  bob:{PLAIN}b:uid=1000:extra\n"
        "carol@example.test:{SCRYPT}ln=14,r=8,p=1$x$y\n"
    )
    users = parse_users(text, "users")
    assert set(users) == {"alice@example.test", "bob", "carol@example.test"}
    assert users["alice@example.test"] == User("alice@example.test", "{PLAIN}a", "")
    assert users["bob"] == User("bob", "{PLAIN}b", "uid=1000:extra")


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("ok:{PLAIN}x\nno-colon-here\n", 2),
        ("ok:{PLAIN}x\n\n# c\nempty-hash:\n", 4),
        ("bad address@x:{PLAIN}x\n", 1),
        ("a@b@c:{PLAIN}x\n", 1),
        (":{PLAIN}x\n", 1),
    ],
)
def test_users_file_error_names_the_line(text: str, line: int) -> None:
    with pytest.raises(UsersFileError) as info:
        parse_users(text, "/data/users")
    assert str(info.value).startswith(f"/data/users, line {line}: ")


def test_load_missing_file_is_empty(tmp_path: Path) -> None:
    db = UserDB.load(tmp_path / "nope")
    assert len(db) == 0
    assert list(db) == []
    assert db.owner("anyone@x") is None


def test_load_non_utf8_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_bytes(b"caf\xe9:{PLAIN}x\n")
    with pytest.raises(UsersFileError, match="cannot read"):
        UserDB.load(path)


# --- lookups -------------------------------------------------------------------------------------


def test_owner_exact_and_bare_entries() -> None:
    db = UserDB(parse_users("alice@example.test:{PLAIN}a\nbob:{PLAIN}b\n", "u"))
    assert db.owner("ALICE@example.test") == "alice@example.test"
    assert db.owner("alice@other.test") is None
    # A bare-name entry is valid for any address with that local part.
    assert db.owner("bob") == "bob"
    assert db.owner("bob@example.test") == "bob"
    assert db.owner("Bob@Other.Test") == "bob"
    assert db.exists("bob@x")
    assert not db.exists("carol@example.test")
    assert db.get("BOB") == User("bob", "{PLAIN}b")
    assert db.get("bob@example.test") is None
    assert [u.address for u in db] == ["alice@example.test", "bob"]


def test_verify_returns_owner() -> None:
    db = UserDB(parse_users(f"alice@example.test:{hash_password('pw')}\nbob:{{PLAIN}}b\n", "u"))
    assert db.verify("alice@example.test", "pw") == "alice@example.test"
    assert db.verify("alice@example.test", "pw") == "alice@example.test"  # cached path
    assert db.verify("alice@example.test", "PW") is None
    assert db.verify("bob@anywhere.test", "b") == "bob"
    assert db.verify("nobody@example.test", "pw") is None


# --- writing -------------------------------------------------------------------------------------


def test_set_password_create_and_change(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "users"
    assert set_password(path, "Alice@Example.Test", "one", create=True) == "alice@example.test"
    assert mode_of(path) == 0o600
    db = UserDB.load(path)
    assert db.verify("alice@example.test", "one") == "alice@example.test"

    with pytest.raises(ValueError, match="already exists"):
        set_password(path, "alice@example.test", "two", create=True)
    assert UserDB.load(path).verify("alice@example.test", "one")  # unchanged

    set_password(path, "alice@example.test", "two", create=False)
    assert mode_of(path) == 0o600
    db = UserDB.load(path)
    assert db.verify("alice@example.test", "two") == "alice@example.test"
    assert db.verify("alice@example.test", "one") is None
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_set_password_nonexistent_user(tmp_path: Path) -> None:
    path = tmp_path / "users"
    with pytest.raises(LookupError, match="no such user"):
        set_password(path, "ghost@example.test", "pw", create=False)
    assert not path.exists()


def test_set_password_rejects_empty_password_and_bad_address(tmp_path: Path) -> None:
    path = tmp_path / "users"
    with pytest.raises(ValueError, match="empty password"):
        set_password(path, "a@x", "", create=True)
    with pytest.raises(ValueError):
        set_password(path, "a:b@x", "pw", create=True)
    assert not path.exists()


def test_set_password_keeps_extra_fields_and_other_users(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_text("bob:{PLAIN}b:uid=5\ncarol@x:{PLAIN}c\n")
    set_password(path, "bob", "new", create=False)
    db = UserDB.load(path)
    bob = db.get("bob")
    assert bob is not None and bob.extra == "uid=5"
    assert db.verify("bob", "new") == "bob"
    assert db.verify("carol@x", "c") == "carol@x"


def test_delete_user(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_text("bob:{PLAIN}b\ncarol@x:{PLAIN}c\n")
    os.chmod(path, 0o644)
    assert delete_user(path, "BOB") == "bob"
    assert mode_of(path) == 0o600
    assert [u.address for u in UserDB.load(path)] == ["carol@x"]
    with pytest.raises(LookupError, match="no such user bob"):
        delete_user(path, "bob")


def test_writes_refuse_a_bad_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_text("good:{PLAIN}x\nbad line\n")
    with pytest.raises(UsersFileError, match="line 2"):
        set_password(path, "new@x", "pw", create=True)
    assert path.read_text() == "good:{PLAIN}x\nbad line\n"  # never rewritten on a parse error


# --- UserSource: live reload ----------------------------------------------------------------------


def test_user_source_reloads_after_change(tmp_path: Path) -> None:
    path = tmp_path / "users"
    source = UserSource(path)
    assert len(source.current()) == 0
    first = source.current()
    assert source.current() is first  # no change, no re-read

    atomic_replace(path, b"alice@x:{PLAIN}a\n")
    db = source.current()
    assert db.verify("alice@x", "a") == "alice@x"

    set_password(path, "bob@x", "b", create=True)
    db = source.current()
    assert [u.address for u in db] == ["alice@x", "bob@x"]

    path.unlink()
    assert len(source.current()) == 0


def test_user_source_keeps_old_db_when_new_file_is_bad(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_text("alice@x:{PLAIN}a\n")
    source = UserSource(path)
    good = source.current()
    assert good.exists("alice@x")

    atomic_replace(path, b"alice@x:{PLAIN}a\nthis line is bad\n")
    assert source.current() is good
    assert source.current().verify("alice@x", "a") == "alice@x"

    atomic_replace(path, b"bob@x:{PLAIN}b\n")  # fixed: picked up again
    fixed = source.current()
    assert fixed.exists("bob@x") and not fixed.exists("alice@x")
