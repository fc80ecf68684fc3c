"""What sendmail does to a message before it is queued: input framing, header completion, -t.

Rules / theory (Postfix cleanup(8) and sendmail(1), research/smtp-anchors.md 2a):
- Input may end lines with LF or CRLF; the queue stores LF (SPEC "Promises"). Without -i/-oi a
  line holding a single "." ends the message, as in sendmail and Postfix (no dot-unstuffing:
  this is not SMTP). A leading mbox "From " line is dropped, as Postfix's sendmail does.
- The header block is the run of header fields at the top (RFC 5322 2.2, 2.2.3 folding), up to
  the first empty line. A first line that is no header field starts the body; then an empty
  line is inserted after the added headers so the body stays a body (RFC 5322 2.1).
- Missing Date, Message-ID and From are appended to the header block (RFC 5322 3.6: Date and
  From are required; 3.6.4: Message-ID SHOULD be present). When the message carries Resent-*
  fields the Resent- forms are completed instead (RFC 5322 3.6.6). Nothing else is changed.
- -t (extract): recipients come from To/Cc/Bcc, or from Resent-To/-Cc/-Bcc when any Resent-
  recipient field exists, as Postfix does; Bcc and Resent-Bcc are then removed from the stored
  copy (Postfix removes Bcc only with -t).
- A display name (-F) is written as an atom phrase, a quoted-string (RFC 5322 3.2.4) or, when
  not ASCII, RFC 2047 encoded-words; it can never end the header line.
- A local submission gets a Received field carrying the queue ID and the submitting uid, like
  Postfix's pickup's, so the ID is known before the content is final (`received_by`).
- Pure: bytes and strings in, bytes out; the clock is passed in (as ready-made strings, or
  the seconds `rfc5322_date` formats).
"""

import time

from tinymail.record import Record

# Character classes as sets, not `re` patterns: `re` (with `enum`) costs sendmail's start-up
# ~3 ms to import (bench/sendmail_latency.py); tests/mail/test_compose.py checks that these
# checks accept exactly what the RFC 5322 regular expressions do.
CONTROL_CHARACTERS = frozenset(map(chr, [*range(0x20), *range(0x7F, 0xA0)]))  # C0, DEL, C1
# RFC 5322 2.2 ftext: printable US-ASCII except ":".
_FTEXT = bytes(c for c in range(0x21, 0x7F) if c != 0x3A)
_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_ASCII_ATEXT = frozenset(_ALNUM + "!#$%&'*+/=?^_`{|}~-")  # RFC 5322 3.2.3
# RFC 5322 3.2.3 atext plus RFC 6532 UTF-8, written as "not a special, space or control".
_NOT_ATEXT = frozenset(map(chr, range(0x21))) | frozenset('"(),.:;<>@[]\\\x7f')
# Domain labels: letter, digit, "-", "_" or non-ASCII.
_NOT_LABEL = frozenset(map(chr, range(0x80))) - frozenset(_ALNUM + "-_")
_RECIPIENT_FIELDS = (b"to", b"cc", b"bcc")
_MAX_ENCODED_WORD = 75  # RFC 2047 2


class ComposeError(ValueError):
    """The message (or an address in it) cannot be queued: exit 65 (EX_DATAERR)."""


class Composed(Record):
    """A message ready for the queue."""

    __slots__ = ("content", "header_recipients")

    def __init__(self, content: bytes, header_recipients: tuple[str, ...]) -> None:
        self.content = content  # LF line ends, headers completed, Bcc removed with -t
        self.header_recipients = header_recipients  # with -t: from the header fields, as written


class _Field:
    """One header field's span. A plain slotted class: generating a dataclass costs ~1 ms of
    sendmail's start-up, and this private record needs no equality, repr or hashing."""

    __slots__ = ("end", "name", "start")

    def __init__(self, name: bytes, start: int, end: int) -> None:
        self.name = name  # lowercased
        self.start = start
        self.end = end  # just after the field's last LF


def frame_input(data: bytes, *, ignore_dots: bool) -> bytes:
    """Turn stdin bytes into LF-terminated message text (CRLF -> LF, lone-dot end, mbox From)."""
    text = data.replace(b"\r\n", b"\n")
    if text.startswith(b"From "):
        nl = text.find(b"\n")
        text = b"" if nl < 0 else text[nl + 1 :]
    if not ignore_dots:
        if text.startswith(b".\n") or text == b".":
            return b""
        cut = text.find(b"\n.\n")
        if cut >= 0:
            text = text[: cut + 1]
        elif text.endswith(b"\n."):
            text = text[:-1]
    if text and not text.endswith(b"\n"):
        text += b"\n"
    return text


def _header_fields(text: bytes) -> tuple[list[_Field], int, bool]:
    """The header fields, where the header block ends, and whether an empty line ended it."""
    fields: list[_Field] = []
    pos = 0
    while pos < len(text):
        nl = text.find(b"\n", pos)
        nxt = len(text) if nl < 0 else nl + 1
        if nl == pos:
            return fields, pos, True
        if text[pos] in (32, 9) and fields:  # RFC 5322 2.2.3: a fold continues the field
            last = fields[-1]
            fields[-1] = _Field(last.name, last.start, nxt)
        else:
            name = _field_name(text, pos, nxt)
            if name is None:
                return fields, pos, False
            fields.append(_Field(name.lower(), pos, nxt))
        pos = nxt
    return fields, pos, False


def _field_name(text: bytes, pos: int, end: int) -> bytes | None:
    """The name of the field starting at `pos` (RFC 5322 2.2: ftext, obs WSP before ":")."""
    colon = text.find(b":", pos, end)
    if colon < 0:
        return None
    name = text[pos:colon].rstrip(b" \t")
    return name if name and not name.translate(None, _FTEXT) else None


def _value(text: bytes, field: _Field) -> bytes:
    raw = text[field.start : field.end]
    return raw[raw.index(b":") + 1 :].replace(b"\n", b" ")


def compose(
    message: bytes,
    *,
    extract: bool,
    from_address: str,
    full_name: str | None,
    date: str,
    message_id: str,
    prepend: bytes = b"",
) -> Composed:
    """Complete the headers of framed `message` and, with `extract`, collect its recipients.

    `prepend` (e.g. a Received field) goes first; `date` is an RFC 5322 date-time and
    `message_id` a msg-id with its angle brackets, both used only when missing.
    """
    fields, end, blank_line = _header_fields(message)
    names = {f.name for f in fields}
    resent = any(n.startswith(b"resent-") for n in names)
    prefix = b"resent-" if resent else b""
    header_rcpts: list[str] = []
    dropped: set[int] = set()
    if extract:
        resent_rcpt = any(b"resent-" + n in names for n in _RECIPIENT_FIELDS)
        wanted = {(b"resent-" if resent_rcpt else b"") + n for n in _RECIPIENT_FIELDS}
        for index, field in enumerate(fields):
            if field.name in wanted:
                header_rcpts.extend(_addresses(_value(message, field)))
            if field.name in (b"bcc", b"resent-bcc"):
                dropped.add(index)
    added = b""
    if prefix + b"date" not in names:
        added += _line(prefix, b"Date", date)
    if prefix + b"message-id" not in names:
        added += _line(prefix, b"Message-ID", message_id)
    if prefix + b"from" not in names:
        added += _line(prefix, b"From", format_mailbox(from_address, full_name))
    head = b"".join(message[f.start : f.end] for i, f in enumerate(fields) if i not in dropped)
    separator = b"" if blank_line else b"\n"
    content = prepend + head + added + separator + message[end:]
    return Composed(content, tuple(dict.fromkeys(header_rcpts)))


def _line(prefix: bytes, name: bytes, value: str) -> bytes:
    label = (b"Resent-" + name) if prefix else name
    return label + b": " + value.encode("utf-8") + b"\n"


def _addresses(value: bytes) -> list[str]:
    """Addresses (group markers skipped) in an address-list field value, as strings."""
    # Imported here: only -t and list-syntax arguments parse address lists, so cron's
    # `sendmail -i root` does not load the parser at all.
    from tinymail.mail.addresses import MISSING_DOMAIN, MISSING_MAILBOX, parse_address_list

    out: list[str] = []
    for addr in parse_address_list(value):
        if addr.host is None:
            continue  # RFC 5322 3.4 group start/end marker
        if addr.mailbox is None or addr.mailbox == MISSING_MAILBOX:
            raise ComposeError(f"bad address in header: {value[:80].decode('utf-8', 'replace')}")
        local = _text(addr.mailbox)
        out.append(local if addr.host == MISSING_DOMAIN else f"{local}@{_text(addr.host)}")
    return out


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ComposeError("address is not valid UTF-8") from None


def parse_recipient_argument(argument: str) -> list[str]:
    """Addresses in one command-line recipient argument (an address list, as Postfix reads it).

    A plain address (the usual case) is returned as it is, for `qualify` to check strictly;
    only arguments with list or name syntax go through the lenient address-list parser.
    """
    if not any(c in argument for c in ',<>()"'):
        return [argument.strip()]
    return _addresses(argument.encode("utf-8", "surrogateescape"))


def qualify(address: str, origin: str) -> str:
    """`address` checked as an RFC 5322 addr-spec; a bare local part gets `@origin` (myorigin).

    Raises ComposeError for anything else (control characters, empty parts, junk).
    """
    if not CONTROL_CHARACTERS.isdisjoint(address):
        raise ComposeError(f"address {address!r} contains a control character")
    local, at, domain = address.rpartition("@")
    if not at:
        local, domain = address, origin
    if not valid_local_part(local) or not valid_domain(domain):
        raise ComposeError(f"bad address {address!r}")
    return f"{local}@{domain.rstrip('.')}"


def valid_local_part(local: str) -> bool:
    """RFC 5322 3.4.1 local-part: a dot-atom (RFC 6532 UTF-8 allowed) or a quoted-string."""
    if not local.startswith('"'):
        return all(atom and _NOT_ATEXT.isdisjoint(atom) for atom in local.split("."))
    if len(local) < 2 or not local.endswith('"'):
        return False
    inner, i = local[1:-1], 0
    while i < len(inner):
        char = inner[i]
        if char == "\\":  # quoted-pair: any character but a line feed
            if i + 1 == len(inner) or inner[i + 1] == "\n":
                return False
            i += 2
        elif char == '"' or char < " ":
            return False
        else:
            i += 1
    return True


def valid_domain(domain: str) -> bool:
    """Dot-separated labels (letters, digits, "-", "_", UTF-8), one final dot allowed, or a
    domain literal `[...]` of printable ASCII without brackets and backslash."""
    if domain.startswith("["):
        inner = domain[1:-1]
        closed = len(domain) >= 2 and domain.endswith("]")
        return closed and all("!" <= c <= "Z" or "^" <= c <= "~" for c in inner)
    labels = domain[:-1] if domain.endswith(".") else domain
    return all(label and _NOT_LABEL.isdisjoint(label) for label in labels.split("."))


def format_mailbox(address: str, full_name: str | None) -> str:
    """A From value: `Name <address>` with the name safely encoded, or the bare address."""
    if not full_name:
        return address
    if not CONTROL_CHARACTERS.isdisjoint(full_name):
        raise ComposeError("full name contains a control character")
    return f"{_phrase(full_name)} <{address}>"


def _phrase(name: str) -> str:
    if name and _ASCII_ATEXT.issuperset(name.replace(" ", "")) and name.strip() == name:
        return name  # RFC 5322 3.2.5 phrase of atoms
    if name.isascii():  # RFC 5322 3.2.4 quoted-string: escape DQUOTE and backslash
        return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return _encoded_words(name)


def _encoded_words(name: str) -> str:
    """RFC 2047 "B" encoded-words, each at most 75 characters, split between characters."""
    words: list[str] = []
    chunk = ""
    budget = (_MAX_ENCODED_WORD - len("=?utf-8?b??=")) // 4 * 3  # raw octets per word
    for char in name:
        if len((chunk + char).encode("utf-8")) > budget:
            words.append(chunk)
            chunk = ""
        chunk += char
    words.append(chunk)
    import binascii  # only for a non-ASCII -F

    return " ".join(
        "=?utf-8?b?" + binascii.b2a_base64(w.encode("utf-8"), newline=False).decode() + "?="
        for w in words
    )


def rfc5322_date(when: float) -> str:
    """An RFC 5322 3.3 date-time in local time, e.g. "Tue, 24 Nov 2026 18:40:00 +0100".

    Python never calls setlocale() on its own, so %a and %b are the English names.
    """
    return time.strftime("%a, %d %b %Y %H:%M:%S %z", time.localtime(when))


def received_by(hostname: str, uid: int, qid: str, date: str) -> bytes:
    """The Received field of a local submission (Postfix pickup's form, RFC 5321 4.4)."""
    return f"Received: by {hostname} (tinymail, from userid {uid})\n\tid {qid}; {date}\n".encode()
