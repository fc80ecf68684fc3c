"""Password hash schemes for the users file, in Dovecot's `{SCHEME}hash` notation.

Rules / theory:
- New hashes are `{SCRYPT}` (stdlib hashlib.scrypt, per-user salt, parameters in the string so
  they can be raised later without breaking old entries).
- A Dovecot passwd-file works as is: `{PLAIN}`/`{CLEARTEXT}`, `{SHA512-CRYPT}`/`{SHA256-CRYPT}`
  and `{CRYPT}` with `$6$`/`$5$` (glibc SHA-crypt, implemented here in pure Python after Ulrich
  Drepper's "Unix crypt using SHA-256 and SHA-512" spec, because the stdlib `crypt` module is
  gone in Python 3.13), `{SHA}`/`{SSHA}`/`{SHA256}`/`{SSHA256}`/`{SHA512}`/`{SSHA512}` (base64
  digest, salt appended), and, with the optional extra `tinymail[hashes]`, `{BLF-CRYPT}`
  (bcrypt) and `{ARGON2I}`/`{ARGON2ID}` (argon2-cffi). A hash without a `{SCHEME}` prefix that
  starts with `$` is read as `{CRYPT}`, Dovecot's default scheme for passwd-files.
- Every comparison is constant-time (hmac.compare_digest); a malformed hash never matches and
  never raises. Passwords are never logged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import importlib
import logging
import secrets
from types import ModuleType

# scrypt cost: 2**14 x 8 x 1 is 16 MiB and ~40 ms here, the interactive-login
# level of the scrypt paper; successful logins are cached in memory (UserDB).
SCRYPT_LN, SCRYPT_R, SCRYPT_P = 14, 8, 1

log = logging.getLogger("tinymail.users")

#: Schemes that need a module from the `tinymail[hashes]` extra: scheme -> module name.
OPTIONAL_SCHEMES = {"BLF-CRYPT": "bcrypt", "ARGON2I": "argon2", "ARGON2ID": "argon2"}
_DIGESTS = {"SHA": "sha1", "SHA1": "sha1", "SHA256": "sha256", "SHA512": "sha512"}
_warned: set[str] = set()


def hash_password(password: str) -> str:
    """Hash `password` as `{SCRYPT}ln=..,r=..,p=..$salt$hash` (base64, no padding)."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, SCRYPT_LN, SCRYPT_R, SCRYPT_P)
    return f"{{SCRYPT}}ln={SCRYPT_LN},r={SCRYPT_R},p={SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def split_scheme(stored: str) -> tuple[str, str]:
    """`{SCHEME}rest` -> ("SCHEME", rest); a bare `$...` crypt string -> ("CRYPT", it)."""
    if stored.startswith("{"):
        scheme, sep, rest = stored[1:].partition("}")
        if sep:
            return scheme.upper(), rest
    if stored.startswith("$"):
        return "CRYPT", stored
    return "", stored


def scheme_problem(stored: str) -> str | None:
    """Why `stored` can never verify here (unknown scheme, missing extra), else None."""
    scheme, _ = split_scheme(stored)
    if scheme in OPTIONAL_SCHEMES:
        if _optional_module(scheme) is None:
            return (
                f"{{{scheme}}} needs the Python module {OPTIONAL_SCHEMES[scheme]!r}: "
                "pip install 'tinymail[hashes]'"
            )
        return None
    known = {"SCRYPT", "PLAIN", "CLEARTEXT", "CRYPT", "SHA512-CRYPT", "SHA256-CRYPT"}
    if scheme in known or _is_digest(scheme):
        return None
    return f"unknown password scheme {{{scheme}}}" if scheme else "hash has no {SCHEME} prefix"


def verify_password(password: str, stored: str) -> bool:
    """Check `password` against a stored `{SCHEME}...` string in constant time."""
    scheme, rest = split_scheme(stored)
    try:
        if scheme == "SCRYPT":
            return _verify_scrypt(password, rest)
        if scheme in ("PLAIN", "CLEARTEXT"):
            return hmac.compare_digest(password.encode(), rest.encode())
        if scheme in ("CRYPT", "SHA512-CRYPT", "SHA256-CRYPT"):
            return _verify_crypt(password, rest)
        if _is_digest(scheme):
            return _verify_digest(password, scheme, rest)
        if scheme in OPTIONAL_SCHEMES:
            return _verify_optional(password, scheme, rest)
    except (ValueError, KeyError, binascii.Error):
        return False
    return False


# --- scrypt ------------------------------------------------------------------------------


def _verify_scrypt(password: str, rest: str) -> bool:
    params, salt_b64, digest_b64 = rest.split("$")
    kv = dict(item.split("=", 1) for item in params.split(","))
    ln, r, p = int(kv["ln"]), int(kv["r"]), int(kv["p"])
    salt, expected = _unb64(salt_b64), _unb64(digest_b64)
    if not (1 <= ln <= 20 and 1 <= r <= 32 and 1 <= p <= 16):
        return False
    return hmac.compare_digest(_scrypt(password, salt, ln, r, p, len(expected)), expected)


def _scrypt(password: str, salt: bytes, ln: int, r: int, p: int, dklen: int = 32) -> bytes:
    n = 1 << ln
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=2 * 128 * n * r + (1 << 20),
        dklen=dklen,
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


# --- {SHA}, {SSHA512}, ...: base64(digest [+ salt]) (Dovecot password schemes) ---------------


def _is_digest(scheme: str) -> bool:
    return scheme in _DIGESTS or (scheme.startswith("S") and scheme[1:] in _DIGESTS)


def _verify_digest(password: str, scheme: str, rest: str) -> bool:
    salted = scheme.startswith("S") and scheme not in _DIGESTS
    name = _DIGESTS[scheme[1:] if salted else scheme]
    raw = base64.b64decode(rest.strip(), validate=True)
    size = hashlib.new(name).digest_size
    if len(raw) < size or (not salted and len(raw) != size):
        return False
    digest, salt = raw[:size], raw[size:]
    return hmac.compare_digest(hashlib.new(name, password.encode() + salt).digest(), digest)


# --- glibc SHA-crypt ($5$ / $6$), pure Python ------------------------------------------------

_ITOA64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# Drepper's spec, step 22: which digest bytes form each group of 4 output characters.
_ORDER_512 = (
    (0, 21, 42), (22, 43, 1), (44, 2, 23), (3, 24, 45), (25, 46, 4), (47, 5, 26), (6, 27, 48),
    (28, 49, 7), (50, 8, 29), (9, 30, 51), (31, 52, 10), (53, 11, 32), (12, 33, 54),
    (34, 55, 13), (56, 14, 35), (15, 36, 57), (37, 58, 16), (59, 17, 38), (18, 39, 60),
    (40, 61, 19), (62, 20, 41),
)  # fmt: skip
_ORDER_256 = (
    (0, 10, 20), (21, 1, 11), (12, 22, 2), (3, 13, 23), (24, 4, 14), (15, 25, 5), (6, 16, 26),
    (27, 7, 17), (18, 28, 8), (9, 19, 29),
)  # fmt: skip
ROUNDS_DEFAULT, ROUNDS_MIN, ROUNDS_MAX = 5000, 1000, 999_999_999


def sha_crypt(password: bytes, setting: str) -> str:
    """crypt(3) for `$5$` / `$6$` settings (`$6$[rounds=N$]salt[$...]`); ValueError otherwise."""
    ident, _, rest = setting[1:].partition("$")
    if ident not in ("5", "6"):
        raise ValueError("not a SHA-crypt setting")
    name, size = ("sha512", 64) if ident == "6" else ("sha256", 32)
    rounds, custom = ROUNDS_DEFAULT, False
    if rest.startswith("rounds="):
        count, _, rest = rest[len("rounds=") :].partition("$")
        rounds = min(max(int(count), ROUNDS_MIN), ROUNDS_MAX)  # spec: clamp, do not fail
        custom = True
    salt = rest.split("$", 1)[0][:16].encode()

    def digest(*parts: bytes) -> bytes:
        h = hashlib.new(name)
        for part in parts:
            h.update(part)
        return h.digest()

    n = len(password)
    b = digest(password, salt, password)  # steps 4-8
    a = hashlib.new(name, password + salt)  # steps 1-3
    a.update(b * (n // size) + b[: n % size])  # steps 9-10
    i = n
    while i:  # step 11: the bits of the password length pick B or the password
        a.update(b if i & 1 else password)
        i >>= 1
    c = a.digest()
    p_bytes = (digest(password * n) * (n // size + 1))[:n]  # steps 13-16
    s_bytes = (digest(salt * (16 + c[0])) * (len(salt) // size + 1))[: len(salt)]  # steps 17-20
    for r in range(rounds):  # step 21
        h = hashlib.new(name, p_bytes if r & 1 else c)
        if r % 3:
            h.update(s_bytes)
        if r % 7:
            h.update(p_bytes)
        h.update(c if r & 1 else p_bytes)
        c = h.digest()
    out = []
    for i0, i1, i2 in _ORDER_512 if ident == "6" else _ORDER_256:
        out.append(_b64_24(c[i0], c[i1], c[i2], 4))
    out.append(_b64_24(0, 0, c[63], 2) if ident == "6" else _b64_24(0, c[31], c[30], 3))
    head = f"${ident}$" + (f"rounds={rounds}$" if custom else "")
    return head + salt.decode() + "$" + "".join(out)


def _b64_24(b2: int, b1: int, b0: int, count: int) -> str:
    w = (b2 << 16) | (b1 << 8) | b0
    chars = []
    for _ in range(count):
        chars.append(_ITOA64[w & 0x3F])
        w >>= 6
    return "".join(chars)


def _verify_crypt(password: str, rest: str) -> bool:
    if rest.startswith(("$5$", "$6$")):
        return hmac.compare_digest(sha_crypt(password.encode(), rest).encode(), rest.encode())
    if rest.startswith(("$2a$", "$2b$", "$2y$")):
        return _verify_optional(password, "BLF-CRYPT", rest)
    if rest.startswith(("$argon2id$", "$argon2i$")):
        return _verify_optional(password, "ARGON2ID", rest)
    return False


# --- optional: bcrypt and argon2 (compiled packages, the `hashes` extra) ------------------------


def _optional_module(scheme: str) -> ModuleType | None:
    try:
        return importlib.import_module(OPTIONAL_SCHEMES[scheme])
    except ImportError:
        return None


def _verify_optional(password: str, scheme: str, rest: str) -> bool:
    module = _optional_module(scheme)
    if module is None:
        if scheme not in _warned:  # once per scheme: the admin's fix is an install
            _warned.add(scheme)
            log.error("cannot verify a password: %s", scheme_problem("{" + scheme + "}"))
        return False
    if scheme == "BLF-CRYPT":
        ok = module.checkpw(password.encode(), rest.encode())
        return bool(ok)
    try:
        return bool(module.PasswordHasher().verify(rest, password))
    except module.exceptions.VerificationError:
        return False
    except module.exceptions.InvalidHashError:
        return False
