"""The queue's message files at the level of bytes and system calls (see spool.py's theory).

A message file is the content, then `\\n`, the JSON envelope and the footer
`\\nTMQ1 <content bytes:16> <json bytes:8>\\n`. It is written in incoming/, fsynced, renamed into
active/, and active/ is fsynced before the message counts as queued.

`sendmail` queues through `store` on its start-up path (bench/sendmail_latency.py), so this
module imports nothing but `os`, `time` and store/safeio.py (the fsync steps): paths are
strings (no pathlib), the envelope's JSON is written here (no `json`, which loads `re`), and
the daemon's Spool (dataclasses, logging) is not involved. Spool writes its files with the
same pieces.
"""

import os
import time

from tinymail.store.safeio import fsync_dir, unlink_quietly, write_file_synced

MAGIC = b"TMQ1"
FOOTER_LEN = 1 + 4 + 1 + 16 + 1 + 8 + 1
SUBDIRS = ("incoming", "active", "state", "corrupt")
ALPHABET = "0123456789BCDFGHJKLMNPQRSTVWXZ"


def new_qid() -> str:
    """A unique, time-ordered queue ID such as 4C2K9QX7BM1TZ8H."""
    n = time.time_ns() // 1000
    digits = []
    while n:
        n, r = divmod(n, len(ALPHABET))
        digits.append(ALPHABET[r])
    stamp = "".join(reversed(digits))
    # One urandom read for the 4 random characters (not `secrets`: importing it also loads
    # hashlib, hmac and base64, ~5 ms of sendmail's start-up). 256 % 30 skews the choice a
    # little; the suffix only separates IDs made in the same microsecond.
    return stamp + "".join(ALPHABET[b % len(ALPHABET)] for b in os.urandom(4))


EnvelopeFields = dict[str, str | int | float | list[str]]


def envelope_fields(
    qid: str,
    sender: str,
    recipients: "list[str]",
    arrival: float,
    size: int,
    origin: str,
    dsn_kind: str,
) -> EnvelopeFields:
    """The JSON fields of an envelope, in file order (Envelope.to_json, sendmail's queueing)."""
    return {
        "qid": qid,
        "sender": sender,
        "recipients": recipients,
        "arrival": arrival,
        "size": size,
        "origin": origin,
        "dsn_kind": dsn_kind,
    }


def encode_envelope(fields: EnvelopeFields) -> bytes:
    """`Envelope.to_json()` as json.dumps(..., separators=(",", ":")) writes it, byte for byte."""
    return ("{" + ",".join(f"{_json_str(k)}:{_json(v)}" for k, v in fields.items()) + "}").encode()


def _json_str(text: str) -> str:
    """A JSON string as json.dumps writes it (ensure_ascii)."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'  # nothing to escape: the usual address
    from _json import encode_basestring_ascii  # the C encoder behind json.dumps, without re

    return encode_basestring_ascii(text)


def _json(value: str | int | float | list[str]) -> str:
    if isinstance(value, str):
        return _json_str(value)
    if isinstance(value, list):
        return "[" + ",".join(_json_str(item) for item in value) + "]"
    if isinstance(value, bool) or value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"not an envelope value: {value!r}")
    return repr(value)


def footer(size: int, meta_len: int) -> bytes:
    """The fixed-size last line of a message file."""
    return b"\n" + MAGIC + b" %016d %08d\n" % (size, meta_len)


def create_incoming(path: str | os.PathLike[str]) -> int:
    """Open a new incoming file (exclusive, private); returns its descriptor."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)


def make_dirs(root: str) -> None:
    """Create the queue directory and its subdirectories (mode 0700) where missing."""
    for path in (root, *(os.path.join(root, name) for name in SUBDIRS)):
        os.makedirs(path, 0o700, exist_ok=True)


def store(root: str, qid: str, content: bytes, envelope: bytes) -> None:
    """Queue a whole message durably: write, fsync, rename into active/, fsync active/.

    `envelope` is `encode_envelope`'s JSON. On error nothing is left behind and OSError
    propagates: the message is not queued.
    """
    incoming = os.path.join(root, "incoming", qid)
    active_dir = os.path.join(root, "active")
    active = os.path.join(active_dir, qid)
    data = b"".join((content, b"\n", envelope, footer(len(content), len(envelope))))
    write_file_synced(incoming, data)
    try:
        os.rename(incoming, active)
    except BaseException:
        unlink_quietly(incoming)
        raise
    try:
        fsync_dir(active_dir)
    except BaseException:
        unlink_quietly(active)
        raise
