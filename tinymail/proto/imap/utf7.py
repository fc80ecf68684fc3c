"""Modified UTF-7 mailbox names (RFC 3501 section 5.1.3).

Rules: printable ASCII except `&` stands for itself; `&` is written `&-`; any
other run of characters is UTF-16BE, base64 with `,` instead of `/`, no padding,
between `&` and `-`. Decoding is strict like Dovecot's imap-utf7.c
(research/reliability-security.md I9): an encoded run may not hold printable
ASCII, NUL, lone surrogates or left-over bits, and two encoded runs may not be
adjacent (the shorter form must be used), so every name has one spelling.
"""

from __future__ import annotations

import base64
import binascii


class Utf7Error(ValueError):
    """The text is not valid modified UTF-7."""


def _printable(ch: str) -> bool:
    return 0x20 <= ord(ch) <= 0x7E


def encode(name: str) -> str:
    """Encode a Unicode mailbox name as modified UTF-7."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be", "surrogatepass")
            b64 = base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",")
            out.append(f"&{b64}-")
            pending.clear()

    for ch in name:
        if _printable(ch):
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def _decode_run(run: str) -> str:
    if not run:
        raise Utf7Error("empty encoded run")
    b64 = run.replace(",", "/")
    if "/" in run or "=" in run:
        raise Utf7Error("invalid base64 character in modified UTF-7")
    bits = len(b64) * 6
    if bits % 16 >= 6:  # RFC 3501 5.1.3: only zero padding bits of less than a sextet
        raise Utf7Error("modified UTF-7 run has left-over bytes")
    try:
        raw = base64.b64decode(b64 + "=" * (-len(b64) % 4), validate=True)
    except binascii.Error as exc:
        raise Utf7Error("invalid base64 in modified UTF-7") from exc
    if len(raw) % 2:
        raise Utf7Error("modified UTF-7 run has an odd byte count")
    try:
        text = raw.decode("utf-16-be")  # strict: lone surrogates raise
    except UnicodeDecodeError as exc:
        raise Utf7Error("invalid UTF-16 in modified UTF-7") from exc
    if any(_printable(ch) or ch == "\0" for ch in text):
        raise Utf7Error("modified UTF-7 encodes printable ASCII or NUL")
    if encode(text) != f"&{run}-":  # non-zero padding bits: not the one canonical spelling
        raise Utf7Error("modified UTF-7 run is not canonical")
    return text


def decode(name: str) -> str:
    """Decode a modified UTF-7 mailbox name; raise Utf7Error when it is not canonical."""
    out: list[str] = []
    i = 0
    previous_encoded = False
    while i < len(name):
        ch = name[i]
        if not _printable(ch):
            raise Utf7Error("non-ASCII or control character in mailbox name")
        if ch != "&":
            out.append(ch)
            i += 1
            previous_encoded = False
            continue
        end = name.find("-", i + 1)
        if end < 0:
            raise Utf7Error("unterminated modified UTF-7 run")
        if end == i + 1:
            out.append("&")
            previous_encoded = False
        else:
            if previous_encoded:
                raise Utf7Error("adjacent modified UTF-7 runs")
            out.append(_decode_run(name[i + 1 : end]))
            previous_encoded = True
        i = end + 1
    return "".join(out)
