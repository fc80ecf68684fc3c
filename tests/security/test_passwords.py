"""tinymail.store.passwords: Dovecot schemes, glibc SHA-crypt vectors, openssl interop."""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinymail.store.passwords import scheme_problem, sha_crypt, verify_password

# Ulrich Drepper, "Unix crypt using SHA-256 and SHA-512", test vectors.
SPEC_VECTORS = [
    (
        "$6$saltstring",
        "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEd"
        "FCoEOfaS35inz1",
    ),
    (
        "$6$rounds=10000$saltstringsaltstring",
        "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vO"
        "uZeHBy/YTBmSK6H9qs/y3RnOaw5v.",
    ),
    (
        "$5$rounds=10000$saltstringsaltstring",
        "$5$rounds=10000$saltstringsaltst$3xv.VbSHBb41AL9AvLeujZkZRBAwqFMz2.opqey6IcA",
    ),
]


@pytest.mark.parametrize(("setting", "expected"), SPEC_VECTORS)
def test_sha_crypt_spec_vectors(setting: str, expected: str) -> None:
    assert sha_crypt(b"Hello world!", setting) == expected
    assert verify_password("Hello world!", expected)
    assert not verify_password("Hello world?", expected)


def test_rounds_below_minimum_are_clamped() -> None:
    assert sha_crypt(b"x", "$5$rounds=10$salt").startswith("$5$rounds=1000$salt$")


@pytest.mark.parametrize("flag", ["-5", "-6"])
@pytest.mark.parametrize("password", ["secret", "pässwörd ✓", "x" * 80])
def test_openssl_passwd_hashes_verify(flag: str, password: str) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    made = (
        subprocess.run(
            [openssl, "passwd", flag, "-stdin"],
            input=password.encode(),
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .strip()
    )
    scheme = "SHA512-CRYPT" if flag == "-6" else "SHA256-CRYPT"
    assert verify_password(password, f"{{{scheme}}}{made}")
    assert verify_password(password, f"{{CRYPT}}{made}")
    assert verify_password(password, made)  # Dovecot passwd-file default scheme: CRYPT
    assert not verify_password(password + "!", f"{{{scheme}}}{made}")


def test_salted_sha_schemes() -> None:
    salt = b"NaCl1234"
    ssha512 = base64.b64encode(hashlib.sha512(b"pw" + salt).digest() + salt).decode()
    sha256 = base64.b64encode(hashlib.sha256(b"pw").digest()).decode()
    assert verify_password("pw", "{SSHA512}" + ssha512)
    assert verify_password("pw", "{SHA256}" + sha256)
    assert not verify_password("px", "{SSHA512}" + ssha512)
    assert not verify_password("pw", "{SHA256}" + ssha512)  # wrong length never matches


def test_optional_schemes_verify_or_explain() -> None:
    bcrypt = pytest.importorskip("bcrypt")
    argon2 = pytest.importorskip("argon2")
    blf = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
    assert verify_password("pw", "{BLF-CRYPT}" + blf) and not verify_password(
        "p", "{BLF-CRYPT}" + blf
    )
    a2 = argon2.PasswordHasher(time_cost=1, memory_cost=1024).hash("pw")
    assert verify_password("pw", "{ARGON2ID}" + a2) and not verify_password("p", "{ARGON2ID}" + a2)
    assert scheme_problem("{BLF-CRYPT}" + blf) is None


def test_scheme_problems_are_named() -> None:
    assert scheme_problem("{MD5}abc") == "unknown password scheme {MD5}"
    assert scheme_problem("secret") == "hash has no {SCHEME} prefix"
    assert scheme_problem("{SHA512-CRYPT}$6$x$y") is None


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_stored_strings_never_raise_or_match_empty(stored: str) -> None:
    if stored.startswith(("{PLAIN}", "{CLEARTEXT}", "{plain}")):
        return
    assert verify_password("", "{SHA512-CRYPT}" + stored) in (True, False)
    assert verify_password("", stored) in (True, False)
