"""Which store format a data dir holds, recorded once so a config change never mixes formats.

Rules (SPEC ``[store] format``; issue 7: changing the format of an existing data dir is refused
with a clear message, never silently mixed):
- ``data_dir/mail/.format`` holds ``maildir`` or ``mbox`` and a newline, written durably at the
  first start. A name starting with ``.`` is never a mailbox owner, so it cannot collide.
- Without the file (a data dir from before it existed), the format is read off the mailboxes:
  an owner directory with ``cur/`` is a Maildir, one with an ``INBOX`` file is an mbox store.
  With no mailbox yet, the configured format is recorded.
- A mismatch is a ConfigError: one line naming both formats and the two ways out (the CLI
  turns it into exit status 78, EX_CONFIG).
"""

from __future__ import annotations

import os
from pathlib import Path

from tinymail.config import ConfigError
from tinymail.store.safeio import atomic_replace

FORMAT_FILE = ".format"
FORMATS = ("maildir", "mbox")


def detect_formats(mail_dir: Path) -> set[str]:
    """The formats of the mailboxes found under ``mail_dir`` (empty when there are none)."""
    found: set[str] = set()
    try:
        entries = list(os.scandir(mail_dir))
    except FileNotFoundError:
        return found
    for entry in entries:
        if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
            continue
        owner = Path(entry.path)
        if (owner / "cur").is_dir():
            found.add("maildir")
        if (owner / "INBOX").is_file():
            found.add("mbox")
    return found


def recorded_format(mail_dir: Path) -> str | None:
    """The format recorded in ``mail_dir/.format``; None before the first start."""
    try:
        return (mail_dir / FORMAT_FILE).read_text("utf-8", "replace").strip()
    except FileNotFoundError:
        return None


def check_store_format(mail_dir: Path, configured: str) -> None:
    """Record the store format at the first start; ConfigError when ``configured`` differs."""
    path = mail_dir / FORMAT_FILE
    recorded = recorded_format(mail_dir)
    if recorded is None:
        found = detect_formats(mail_dir)
        if len(found) > 1:
            raise ConfigError(
                f"{mail_dir} holds both Maildir and mbox mailboxes; keep one format per data dir"
            )
        recorded = found.pop() if found else configured
        mail_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_replace(path, f"{recorded}\n".encode(), mode=0o644)
    if recorded not in FORMATS:
        raise ConfigError(f'{path}: unknown store format {recorded!r} (use "maildir" or "mbox")')
    if recorded != configured:
        raise ConfigError(
            f'store.format is "{configured}" but {mail_dir} holds {recorded} mailboxes '
            f'(recorded in {path}); set [store] format = "{recorded}", or stop the server and '
            f"run `tinymail convert-store {configured}`"
        )
