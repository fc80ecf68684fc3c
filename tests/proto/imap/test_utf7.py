import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinymail.proto.imap.utf7 import Utf7Error, decode, encode


@pytest.mark.parametrize(
    ("text", "wire"),
    [
        ("INBOX", "INBOX"),
        ("a&b", "a&-b"),
        ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
        ("Entwürfe", "Entw&APw-rfe"),
        ("☺", "&Jjo-"),
    ],
)
def test_known_vectors(text: str, wire: str) -> None:
    assert encode(text) == wire
    assert decode(wire) == text


# research/reliability-security.md I9, vectors after Dovecot test-imap-utf7.c
@pytest.mark.parametrize(
    "bad",
    [
        "&",
        "&Jjo",
        "&Jjo!",
        "&U,BTFw-&ZeVnLIqe-",
        "&AGE-",
        "&ACY-",
        "&AAA-",
        "&2AA-",
        "&3AA-",
        "&AA-",
        "p\xe4\xe4",
        "a\x01b",
        "&Jjp-",
    ],
)
def test_rejects_invalid(bad: str) -> None:
    with pytest.raises(Utf7Error):
        decode(bad)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(exclude_categories=["Cs"], min_codepoint=1)))
def test_roundtrip(text: str) -> None:
    wire = encode(text)
    assert wire.isascii()
    assert decode(wire) == text


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E)))
def test_decode_never_crashes(text: str) -> None:
    try:
        out = decode(text)
    except Utf7Error:
        return
    assert encode(out) == text  # whatever decodes has exactly one spelling
