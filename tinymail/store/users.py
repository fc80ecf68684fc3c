"""The users file: one `ADDRESS:{SCHEME}HASH[:extra]` per line (Dovecot passwd-file shape).

Rules: password hashing and the accepted schemes live in `passwords.py` (scrypt
for new entries; Dovecot's SHA-crypt and friends accepted, so a Dovecot
passwd-file works as is); this module only reads and writes the file.
The file is rewritten atomically with mode 0600 under an flock, and the running
server re-reads it when its stat signature changes, so no restart is needed.
An entry without "@" is a bare local part, valid in every local domain.
"""

from __future__ import annotations

import contextlib
import fcntl
import hmac
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Re-exported: callers and tests that know the users file also know these names.
from tinymail.store.passwords import SCRYPT_LN as SCRYPT_LN
from tinymail.store.passwords import hash_password as hash_password
from tinymail.store.passwords import verify_password as verify_password
from tinymail.store.safeio import atomic_replace
from tinymail.store.watched import WatchedFile


class UsersFileError(Exception):
    """The users file cannot be read or has a bad line (message names the line)."""


@dataclass(frozen=True, slots=True)
class User:
    address: str
    password_hash: str
    extra: str = ""


def validate_address(address: str) -> str:
    """Normalise a user address (lowercase) or raise ValueError with a reason."""
    addr = address.strip().lower()
    if not addr or len(addr) > 254:
        raise ValueError("address is empty or too long")
    if any(c in addr for c in ":/\\\0") or any(ord(c) < 33 or ord(c) == 127 for c in addr):
        raise ValueError(f"address {address!r} has a forbidden character")
    if addr.startswith(".") or addr.count("@") > 1 or addr.endswith("@") or addr.startswith("@"):
        raise ValueError(f"address {address!r} is not user@domain or a bare name")
    return addr


class UserDB:
    """An immutable snapshot of the users file."""

    def __init__(self, users: dict[str, User]):
        self._users = users
        self._verified: dict[tuple[str, bytes], bool] = {}
        self._cache_key = secrets.token_bytes(16)

    @classmethod
    def load(cls, path: Path) -> UserDB:
        """Parse the users file; a missing file is an empty database."""
        try:
            data = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls({})
        except (OSError, UnicodeDecodeError) as exc:
            raise UsersFileError(f"{path}: cannot read users file: {exc}") from None
        return cls(parse_users(data, str(path)))

    def __iter__(self) -> Iterator[User]:
        return iter(sorted(self._users.values(), key=lambda u: u.address))

    def __len__(self) -> int:
        return len(self._users)

    def get(self, address: str) -> User | None:
        """The entry for exactly this address (case-insensitive)."""
        return self._users.get(address.lower())

    def owner(self, address: str) -> str | None:
        """The mailbox owner for a local address: its own entry, else a bare-name entry."""
        addr = address.lower()
        if addr in self._users:
            return self._users[addr].address
        local = addr.rpartition("@")[0] if "@" in addr else addr
        return self._users[local].address if local in self._users else None

    def exists(self, address: str) -> bool:
        """True when `address` maps to a user."""
        return self.owner(address) is not None

    def verify(self, address: str, password: str) -> str | None:
        """Return the owner when the password is right, else None.

        Successful checks are remembered (keyed by an HMAC of the password under a
        per-process key) so a client that logs in often does not pay scrypt each time.
        """
        owner = self.owner(address)
        if owner is None:
            verify_password(password, hash_password("x"))  # same cost: no user enumeration
            return None
        key = (owner, hmac.new(self._cache_key, password.encode(), "sha256").digest())
        if self._verified.get(key):
            return owner
        ok = verify_password(password, self._users[owner].password_hash)
        if ok:
            if len(self._verified) > 10_000:
                self._verified.clear()
            self._verified[key] = True
        return owner if ok else None


def parse_users(data: str, source: str) -> dict[str, User]:
    """Parse users-file text; raise UsersFileError naming the line on a bad one."""
    users: dict[str, User] = {}
    for number, line in enumerate(data.splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        address, sep, rest = text.partition(":")
        # Hashes hold "$" and "=", never ":", so the first ":" ends the hash field.
        password_hash, _, extra = rest.partition(":")
        try:
            addr = validate_address(address)
        except ValueError as exc:
            raise UsersFileError(f"{source}, line {number}: {exc}") from None
        if not sep or not password_hash:
            raise UsersFileError(f"{source}, line {number}: expected ADDRESS:{{SCHEME}}HASH")
        users[addr] = User(addr, password_hash, extra)
    return users


def _render(users: dict[str, User]) -> bytes:
    lines = []
    for user in sorted(users.values(), key=lambda u: u.address):
        tail = f":{user.extra}" if user.extra else ""
        lines.append(f"{user.address}:{user.password_hash}{tail}\n")
    return "".join(lines).encode()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def set_password(path: Path, address: str, password: str, *, create: bool) -> str:
    """Add a user (create=True, error if present) or change a password (error if absent)."""
    addr = validate_address(address)
    if not password:
        raise ValueError("empty password")
    with _locked(path):
        users = dict(UserDB.load(path)._users)
        if create and addr in users:
            raise ValueError(f"user {addr} already exists")
        if not create and addr not in users:
            raise LookupError(f"no such user {addr}")
        extra = users[addr].extra if addr in users else ""
        users[addr] = User(addr, hash_password(password), extra)
        atomic_replace(path, _render(users), 0o600)
    return addr


def delete_user(path: Path, address: str) -> str:
    """Remove a user; LookupError when absent."""
    addr = validate_address(address)
    with _locked(path):
        users = dict(UserDB.load(path)._users)
        if addr not in users:
            raise LookupError(f"no such user {addr}")
        del users[addr]
        atomic_replace(path, _render(users), 0o600)
    return addr


class UserSource(WatchedFile[UserDB]):
    """The server's view of the users file: re-read whenever the file changes."""

    def __init__(self, path: Path):
        super().__init__(path, UserDB.load, UserDB({}), (UsersFileError,), "users file")
