"""Dovecot's subscriptions file, shared by the Maildir and mbox stores.

Format (Dovecot 2.x `subscriptions`): version 2 is `V\\t2\\n\\n` then one name per
line with hierarchy levels separated by TAB; version 1 is bare names. Names are
modified UTF-7. Updates are write-new-then-rename under a dotlock.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tinymail.proto.imap import utf7
from tinymail.store.mailbox import SEPARATOR
from tinymail.store.safeio import atomic_replace
from tinymail.store.uidlist import DotLock


def read_subscriptions(path: Path) -> list[str]:
    """Subscribed names in the file at `path` (version 1 or 2); [] when there is none."""
    try:
        text = path.read_text("utf-8", "replace")
    except FileNotFoundError:
        return []
    if text.startswith("V\t2\n\n"):
        lines = [line.replace("\t", SEPARATOR) for line in text[5:].split("\n")]
    else:
        lines = text.split("\n")
    out = []
    for line in lines:
        if line:
            try:
                out.append(utf7.decode(line))
            except utf7.Utf7Error:
                continue
    return out


def set_subscribed(path: Path, name: str, subscribed: bool) -> None:
    """Add or remove the (normalised) `name` in the subscriptions file at `path`."""
    if subscribed:
        subscribe(path, [name])
        return
    with DotLock(path):
        names = read_subscriptions(path)
        if name in names:
            names.remove(name)
            _write(path, names)


def subscribe(path: Path, names: Iterable[str]) -> None:
    """Add the (normalised) `names` missing from the file at `path`, with one write."""
    with DotLock(path):
        current = read_subscriptions(path)
        missing = [name for name in dict.fromkeys(names) if name not in current]
        if missing:
            _write(path, current + missing)


def _write(path: Path, names: list[str]) -> None:
    body = "".join(utf7.encode(n).replace(SEPARATOR, "\t") + "\n" for n in names)
    atomic_replace(path, ("V\t2\n\n" + body).encode())
