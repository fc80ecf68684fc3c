"""Header completion, -t extraction, Bcc removal, input framing, name quoting."""

from __future__ import annotations

import email
import email.policy
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinymail.mail.compose as compose_module
from tinymail.mail.compose import (
    ComposeError,
    compose,
    format_mailbox,
    frame_input,
    parse_recipient_argument,
    qualify,
    received_by,
    rfc5322_date,
    valid_domain,
    valid_local_part,
)

DATE = "Tue, 24 Nov 2026 18:40:00 +0000"
MID = "<20261124184000.QID@mx.example.test>"


def run(
    message: bytes, *, extract: bool = False, name: str | None = None
) -> tuple[bytes, tuple[str, ...]]:
    c = compose(
        message,
        extract=extract,
        from_address="alice@mx.example.test",
        full_name=name,
        date=DATE,
        message_id=MID,
    )
    return c.content, c.header_recipients


def test_missing_headers_are_added_and_the_rest_is_byte_exact() -> None:
    message = b"Subject: hi\nX-Odd:  spaces kept \n\tfolded\n\nbody\n\n.. dots\n"
    content, _ = run(message)
    head, body = content.split(b"\n\n", 1)
    assert head == (
        b"Subject: hi\nX-Odd:  spaces kept \n\tfolded\n"
        b"Date: " + DATE.encode() + b"\nMessage-ID: " + MID.encode() + b"\n"
        b"From: alice@mx.example.test"
    )
    assert body == b"body\n\n.. dots\n"


def test_present_headers_are_not_duplicated() -> None:
    message = b"From: x@y.test\nDate: Mon, 1 Jan 2024 00:00:00 +0000\nmessage-id: <a@b>\n\nb\n"
    assert run(message)[0] == message


def test_message_without_headers_gets_a_separating_empty_line() -> None:
    content, _ = run(b"just a body line\nsecond\n")
    assert content.endswith(b"From: alice@mx.example.test\n\njust a body line\nsecond\n")


def test_empty_message() -> None:
    content, _ = run(b"")
    assert content == (
        b"Date: "
        + DATE.encode()
        + b"\nMessage-ID: "
        + MID.encode()
        + b"\nFrom: alice@mx.example.test\n\n"
    )


def test_prepend_goes_first() -> None:
    c = compose(
        b"Subject: s\n\nb\n",
        extract=False,
        from_address="a@b.test",
        full_name=None,
        date=DATE,
        message_id=MID,
        prepend=b"Received: by h\n\tid Q; d\n",
    )
    assert c.content.startswith(b"Received: by h\n\tid Q; d\nSubject: s\n")


def test_extract_to_cc_bcc_and_remove_bcc() -> None:
    message = (
        b'To: Ann <ann@x.test>, bob@x.test\nCc: "Carl, Jr" <carl@x.test>,\n dave\n'
        b"Bcc: hidden@x.test\nSubject: s\nbcc: also@x.test\n\nbody\n"
    )
    content, rcpts = run(message, extract=True)
    assert rcpts == (
        "ann@x.test",
        "bob@x.test",
        "carl@x.test",
        "dave",
        "hidden@x.test",
        "also@x.test",
    )
    assert b"hidden" not in content and b"also@" not in content
    assert b'To: Ann <ann@x.test>, bob@x.test\nCc: "Carl, Jr" <carl@x.test>,\n dave\n' in content


def test_without_extract_bcc_stays_as_postfix_does() -> None:
    content, rcpts = run(b"Bcc: hidden@x.test\n\nb\n")
    assert rcpts == () and b"Bcc: hidden@x.test\n" in content


def test_extract_prefers_resent_fields() -> None:
    message = (
        b"To: old@x.test\nResent-To: new@x.test\nResent-Bcc: secret@x.test\n"
        b"Resent-From: fwd@x.test\n\nb\n"
    )
    content, rcpts = run(message, extract=True)
    assert rcpts == ("new@x.test", "secret@x.test")
    assert b"secret" not in content
    # Resent mode: Resent-Date and Resent-Message-ID are completed, not Date/From.
    assert b"Resent-Date: " + DATE.encode() in content
    assert b"Resent-Message-ID: " + MID.encode() in content
    assert b"\nFrom:" not in content and b"\nDate:" not in content


def test_extract_skips_groups() -> None:
    _, rcpts = run(
        b"To: undisclosed-recipients:;\nCc: team: a@x.test, b@x.test;\n\nb\n", extract=True
    )
    assert rcpts == ("a@x.test", "b@x.test")


def test_from_uses_full_name() -> None:
    content, _ = run(b"\nb\n", name="Cron Daemon")
    assert b"From: Cron Daemon <alice@mx.example.test>\n" in content


@pytest.mark.parametrize(
    ("name", "written"),
    [
        ("CronDaemon", "CronDaemon <a@b.test>"),
        ('Doe, "J" \\', '"Doe, \\"J\\" \\\\" <a@b.test>'),
        ("<root@evil>", '"<root@evil>" <a@b.test>'),
        ("Jürgen", "=?utf-8?b?SsO8cmdlbg==?= <a@b.test>"),
    ],
)
def test_full_name_quoting(name: str, written: str) -> None:
    assert format_mailbox("a@b.test", name) == written


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=120).filter(lambda s: s.isprintable()))
def test_any_printable_name_round_trips_and_stays_one_field(name: str) -> None:
    content, _ = run(b"Subject: s\n\nbody\n", name=name)
    head = content.split(b"\n\n", 1)[0]
    assert head.count(b"\nFrom: ") == 1
    parsed = email.message_from_bytes(content, policy=email.policy.default)
    assert parsed["From"].addresses[0].addr_spec == "alice@mx.example.test"
    # White space is not significant in two places, so compare without it there: runs of it in
    # an unquoted phrase are folding white space (RFC 5322 3.2.2), and between adjacent
    # encoded-words it must be ignored (RFC 2047 6.2), which CPython's parser does not always do
    # when the words were folded onto two lines.
    shown = parsed["From"].addresses[0].display_name
    if name.isascii():
        assert " ".join(shown.split()) == " ".join(name.split())
    else:
        assert "".join(shown.split()) == "".join(name.split())
    assert list(parsed.keys()) == ["Subject", "Date", "Message-ID", "From"]


def test_control_character_in_name_is_refused() -> None:
    with pytest.raises(ComposeError):
        format_mailbox("a@b.test", "x\nBcc: y@z")


@pytest.mark.parametrize(
    ("raw", "ignore_dots", "framed"),
    [
        (b"a\r\nb\r\n", True, b"a\nb\n"),
        (b"a\nb", True, b"a\nb\n"),
        (b"a\n.\nb\n", False, b"a\n"),
        (b"a\r\n.\r\nb\r\n", False, b"a\n"),
        (b"a\n.\nb\n", True, b"a\n.\nb\n"),
        (b".\nrest\n", False, b""),
        (b"a\n.", False, b"a\n"),
        (b"a\n..\nb\n", False, b"a\n..\nb\n"),
        (b"From someone Tue Nov 24\nSubject: x\n", True, b"Subject: x\n"),
        (b"", False, b""),
    ],
)
def test_frame_input(raw: bytes, ignore_dots: bool, framed: bytes) -> None:
    assert frame_input(raw, ignore_dots=ignore_dots) == framed


@pytest.mark.parametrize(
    ("arg", "found"),
    [
        ("root", ["root"]),
        ("a@x.test, b@x.test", ["a@x.test", "b@x.test"]),
        ("Ann <ann@x.test>", ["ann@x.test"]),
    ],
)
def test_recipient_arguments_are_address_lists(arg: str, found: list[str]) -> None:
    assert parse_recipient_argument(arg) == found


@pytest.mark.parametrize(
    ("address", "qualified"),
    [
        ("root", "root@h.test"),
        ("a@x.test", "a@x.test"),
        ('"a b"@x.test', '"a b"@x.test'),
        ("jürgen@bücher.de", "jürgen@bücher.de"),
        ("a@[192.0.2.1]", "a@[192.0.2.1]"),
    ],
)
def test_qualify(address: str, qualified: str) -> None:
    assert qualify(address, "h.test") == qualified


@pytest.mark.parametrize("address", ["a b@x", "a@", "@x", "a@b..c", "a\n@b", "a@b@c@", "<a@b>"])
def test_qualify_refuses_junk(address: str) -> None:
    with pytest.raises(ComposeError):
        qualify(address, "h.test")


# --- the character-class checks against the RFC 5322 regular expressions they replace ------------
# compose.py avoids `re` (sendmail's start-up); these are the patterns it used to compile.

_ATEXT = r'[^\x00-\x20"(),.:;<>@\[\]\\\x7f]'
_LABEL = r"[^\x00-\x2c./:-@\[-\^`{-\x7f]"
LOCAL_RE = re.compile(rf'{_ATEXT}+(?:\.{_ATEXT}+)*|"(?:[^"\\\x00-\x1f]|\\.)*"')
DOMAIN_RE = re.compile(rf"{_LABEL}+(?:\.{_LABEL}+)*\.?|\[[!-Z^-~]*\]")
FIELD_NAME_RE = re.compile(rb"([!-9;-~]+)[ \t]*:")
PHRASE_RE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\- ]+")
# Mostly the characters that matter, with some of everything else.
TRICKY = st.text(
    st.sampled_from([*'a.@"\\[]() -_:;<>\n\t\x7f\x00é!~Z^`{', chr(0x80), chr(0x2603)]),
    max_size=12,
) | st.text(max_size=12)


@given(TRICKY)
@settings(max_examples=1000)
def test_local_part_check_is_the_regex(text: str) -> None:
    assert valid_local_part(text) == (LOCAL_RE.fullmatch(text) is not None)


@given(TRICKY)
@settings(max_examples=1000)
def test_domain_check_is_the_regex(text: str) -> None:
    assert valid_domain(text) == (DOMAIN_RE.fullmatch(text) is not None)


@given(TRICKY.filter(lambda name: name != "" and name.isprintable()))
@settings(max_examples=1000)
def test_atom_phrase_is_the_regex(name: str) -> None:
    atoms = PHRASE_RE.fullmatch(name) is not None and name.strip() == name
    assert (format_mailbox("a@b.test", name) == f"{name} <a@b.test>") == atoms


@given(st.binary(max_size=16), st.integers(0, 4))
@settings(max_examples=1000)
def test_field_names_are_the_regex(text: bytes, pos: int) -> None:
    m = FIELD_NAME_RE.match(text, pos)
    nl = text.find(b"\n", pos)
    end = len(text) if nl < 0 else nl + 1
    expected = m.group(1) if m is not None and m.end() <= end else None
    assert compose_module._field_name(text, pos, end) == expected


def test_rfc5322_date_and_received_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    try:
        date = rfc5322_date(1_795_542_000.0)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert date == "Tue, 24 Nov 2026 18:40:00 +0100"
    assert received_by("mx.example.test", 1000, "4C2K9QX7BM1TZ8H", date) == (
        b"Received: by mx.example.test (tinymail, from userid 1000)\n"
        b"\tid 4C2K9QX7BM1TZ8H; Tue, 24 Nov 2026 18:40:00 +0100\n"
    )
