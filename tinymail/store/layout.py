"""Where things live under data_dir (SPEC.md "Data dir layout")."""

from __future__ import annotations

from pathlib import Path


def mailbox_path(data_dir: Path, owner: str) -> Path:
    """The mailbox of `owner`: data_dir/mail/OWNER (a Maildir, or the mbox store's folder)."""
    if not owner or owner in (".", "..") or "/" in owner or "\0" in owner:
        raise ValueError(f"unsafe mailbox owner name {owner!r}")
    return data_dir / "mail" / owner
