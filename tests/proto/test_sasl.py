"""SASL PLAIN/LOGIN decoding and the server exchange."""

from __future__ import annotations

import base64

import pytest

from tinymail.proto import sasl


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def test_decode_plain() -> None:
    assert sasl.decode_plain(b"\x00bob\x00pw") == ("", "bob", "pw")
    assert sasl.decode_plain("z\x00j\u00f6rg\x00p\u00e4ss".encode()) == (
        "z",
        "j\u00f6rg",
        "p\u00e4ss",
    )


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"bob",
        b"\x00bob",
        b"a\x00b\x00c\x00d",
        b"\x00\x00pw",
        b"\x00bob\x00",
        b"\x00\xff\x00pw",
    ],
)
def test_decode_plain_rejects(raw: bytes) -> None:
    with pytest.raises(sasl.SaslError):
        sasl.decode_plain(raw)


def test_decode_response() -> None:
    assert sasl.decode_response(b"=") == b""
    assert sasl.decode_response(b"YWJj") == b"abc"
    with pytest.raises(sasl.SaslCancelled):
        sasl.decode_response(b"*")
    for bad in [b"!!!", b"YWJ", b"YW Jj", b"A" * 10_000]:
        with pytest.raises(sasl.SaslBase64Error):
            sasl.decode_response(bad)


def test_plain_exchange() -> None:
    exchange = sasl.ServerExchange("plain")
    assert exchange.start(None) == sasl.Challenge("")
    creds = exchange.step(b64(b"bob\x00bob\x00pw"))
    assert creds == sasl.Credentials("bob", "bob", "pw", "PLAIN")
    assert "pw" not in repr(creds)
    with pytest.raises(sasl.SaslAuthzidMismatch):
        sasl.ServerExchange("PLAIN").start(b64(b"admin\x00bob\x00pw"))


def test_login_exchange() -> None:
    exchange = sasl.ServerExchange("LOGIN")
    assert exchange.start(None) == sasl.Challenge(sasl.LOGIN_USERNAME_PROMPT)
    assert exchange.step(b64(b"bob")) == sasl.Challenge(sasl.LOGIN_PASSWORD_PROMPT)
    assert exchange.step(b64(b"pw")) == sasl.Credentials("", "bob", "pw", "LOGIN")
    assert base64.b64decode(sasl.LOGIN_USERNAME_PROMPT) == b"Username:"
    with pytest.raises(ValueError):
        sasl.ServerExchange("CRAM-MD5")
