"""RFC 5322 3.4 address lists, parsed leniently (IMAP ENVELOPE, sendmail -t).

Rules / theory:
- Groups become RFC 3501 7.4.2 start/end markers; a missing mailbox or host is filled in (as
  Dovecot does) rather than left out. Values stay raw bytes; only FIELD_CAP octets are read.
- Imports nothing heavy (no `re`, no dataclasses): `sendmail -t` parses the header's address
  lists on its start-up path (bench/sendmail_latency.py). tinymail.mail.headers re-exports all.
"""

from tinymail.record import Record

FIELD_CAP = 64 * 1024  # octets of one field value that are ever looked at


class Address(Record):
    """One ENVELOPE address. Group start: mailbox=name, host=None; group end: all None."""

    __slots__ = ("name", "mailbox", "host")  # noqa: RUF023 (the order of the fields)

    def __init__(self, name: bytes | None, mailbox: bytes | None, host: bytes | None) -> None:
        self.name = name
        self.mailbox = mailbox
        self.host = host


_SPECIALS = b'()<>[]:;@\\,."'
_WSP = b" \t\r\n"
_NOT_ATOM = frozenset(_SPECIALS + b" \t\n\r\x0b\x0c")  # specials and whitespace end an atom
# RFC 3501 7.4.2 reads a NIL host as group syntax, so a missing mailbox or host is
# filled in (as Dovecot does) rather than sent as NIL, which would open a bogus group.
MISSING_MAILBOX = b"MISSING_MAILBOX"
MISSING_DOMAIN = b"MISSING_DOMAIN"


def _tokens(value: bytes) -> list[tuple[str, bytes]]:
    """RFC 5322 3.2 tokens: kind "a" atom, "q" quoted, "c" comment, "l" literal, or a special."""
    toks: list[tuple[str, bytes]] = []
    i, n = 0, len(value)
    while i < n:
        c = value[i]
        if c in _WSP:
            i += 1
        elif c == 0x22 or c == 0x28:  # quoted-string (3.2.4) or nested comment (3.2.2)
            buf = bytearray()
            depth = 1
            close = 0x22 if c == 0x22 else 0x29
            i += 1
            while i < n:
                d = value[i]
                if d == 0x5C and i + 1 < n:  # quoted-pair
                    buf.append(value[i + 1])
                    i += 2
                    continue
                i += 1
                if c == 0x28 and d == 0x28:
                    depth += 1
                elif d == close:
                    depth -= 1
                    if depth == 0:
                        break
                buf.append(d)
            toks.append(("q" if c == 0x22 else "c", bytes(buf)))
        elif c == 0x5B:  # domain-literal (3.4.1), kept with its brackets
            j = value.find(b"]", i)
            j = n if j < 0 else j + 1
            toks.append(("l", value[i:j]))
            i = j
        elif c in _SPECIALS:
            toks.append((chr(c), b""))
            i += 1
        else:
            j = i + 1
            while j < n and value[j] not in _NOT_ATOM:
                j += 1
            toks.append(("a", value[i:j]))
            i = j
    return toks


def _join_phrase(words: list[tuple[str, bytes]]) -> bytes | None:
    out = b""
    for kind, text in words:
        if kind == ".":
            out += b"."
        elif kind in "aql":
            out = out + b" " + text if out and not out.endswith(b".") else out + text
    return out or None


def _join_dotted(words: list[tuple[str, bytes]]) -> bytes | None:
    joined = b"".join(b"." if kind == "." else text for kind, text in words if kind in ".aql")
    return joined or None


def parse_address_list(value: bytes) -> list[Address]:
    """Parse an address-list leniently; groups become RFC 3501 start/end markers."""
    toks = _tokens(value[:FIELD_CAP])
    out: list[Address] = []
    in_group = False
    i, n = 0, len(toks)
    while i < n:
        words: list[tuple[str, bytes]] = []
        comment: bytes | None = None
        while i < n and toks[i][0] not in ("<", ":", "@", ",", ";"):
            if toks[i][0] == "c":
                comment = toks[i][1] or comment
            else:
                words.append(toks[i])
            i += 1
        kind = toks[i][0] if i < n else ""
        if kind == ":" and not in_group:  # RFC 5322 3.4 group: display-name ":" [list] ";"
            out.append(Address(None, _join_phrase(words) or b"", None))
            in_group = True
            i += 1
            continue
        if kind == "<":  # name-addr: [display-name] angle-addr
            j = i + 1
            while j < n and toks[j][0] != ">":
                j += 1
            inner = toks[i + 1 : j]
            route_end = max((k for k, t in enumerate(inner) if t[0] == ":"), default=-1)
            inner = inner[route_end + 1 :]  # RFC 5322 4.4 obs-route: dropped, ENVELOPE adl is NIL
            at = max((k for k, t in enumerate(inner) if t[0] == "@"), default=-1)
            local, host = (inner, []) if at < 0 else (inner[:at], inner[at + 1 :])
            if local or host or words:
                out.append(
                    Address(
                        _join_phrase(words),
                        _join_dotted(local) or MISSING_MAILBOX,
                        _join_dotted(host) or MISSING_DOMAIN,
                    )
                )
            i = j + 1
            while i < n and toks[i][0] not in (",", ";"):  # trailing junk/comments
                i += 1
        elif kind == "@":  # addr-spec, maybe followed by "(Name)" (RFC 822 style)
            i += 1
            domain: list[tuple[str, bytes]] = []
            while i < n and toks[i][0] not in (",", ";", "<"):
                if toks[i][0] == "c":
                    comment = toks[i][1] or comment
                else:
                    domain.append(toks[i])
                i += 1
            mailbox = _join_dotted(words) or MISSING_MAILBOX
            out.append(Address(comment, mailbox, _join_dotted(domain) or MISSING_DOMAIN))
        elif words:  # a bare local part such as "root" (no "@")
            out.append(Address(comment, _join_dotted(words), MISSING_DOMAIN))
        if i < n and toks[i][0] == ";" and in_group:
            out.append(Address(None, None, None))
            in_group = False
        if i < n and toks[i][0] in (",", ";", ":"):
            i += 1
    if in_group:  # unterminated group: still close it so the list stays well-formed
        out.append(Address(None, None, None))
    return out
