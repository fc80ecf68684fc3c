"""Local delivery: recipients -> mailbox owners -> the store (blocking; run in a thread).

One call delivers one queued message to all its local recipients: the content
is written once and linked into each owner's Maildir. It returns the new/
directories that must be fsynced before any outcome counts (the runner
group-commits them) and an Outcome per recipient.
"""

from __future__ import annotations

import pwd
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tinymail.delivery.courier import Outcome, Status
from tinymail.delivery.resolve import Resolution, resolve_local
from tinymail.store import maildir, mbox
from tinymail.store.aliases import Aliases
from tinymail.store.layout import mailbox_path
from tinymail.store.users import UserDB


def system_account_exists(name: str) -> bool:
    """True when `name` is an account in the system password database."""
    try:
        pwd.getpwnam(name)
    except (KeyError, UnicodeEncodeError):
        return False
    return True


@dataclass(slots=True)
class LocalResult:
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    dirs_to_sync: set[Path] = field(default_factory=set)
    forwards: dict[str, tuple[str, ...]] = field(default_factory=dict)  # rcpt -> remote addresses


@dataclass(frozen=True, slots=True)
class LocalDelivery:
    data_dir: Path
    users: UserDB
    aliases: Aliases
    local_domains: Collection[str]
    system_account: Callable[[str], bool] = system_account_exists
    store_format: str = "maildir"  # or "mbox"

    def resolve(self, address: str) -> Resolution | None:
        """The mailboxes and forwards of a local address; None when nobody has it."""
        return resolve_local(
            address,
            users=self.users,
            aliases=self.aliases,
            local_domains=self.local_domains,
            system_account=self.system_account,
        )

    def deliver(
        self,
        sender: str,
        recipients: Sequence[str],
        content: bytes,
        *,
        plain_only: bool = False,
    ) -> LocalResult:
        """Deliver `content` (LF line ends, no Return-Path yet) to local `recipients`.

        With `plain_only`, recipients that are unknown or that an alias also forwards
        elsewhere are left out (no outcome): they need the queue.
        """
        result = LocalResult()
        owners_by_rcpt: dict[str, tuple[str, ...]] = {}
        for rcpt in recipients:
            res = self.resolve(rcpt)
            if plain_only and (res is None or res.forwards):
                continue
            if res is None:
                result.outcomes[rcpt] = Outcome(
                    Status.PERM, "5.1.1", "user unknown (no such user or alias)", "local"
                )
                continue
            owners_by_rcpt[rcpt] = res.mailboxes
            if res.forwards:
                result.forwards[rcpt] = res.forwards
        owners = sorted({o for group in owners_by_rcpt.values() for o in group})
        full = maildir.return_path_header(sender) + content
        failed: dict[str, str] = {}  # owner -> why
        if owners and self.store_format == "mbox":
            for owner in owners:
                path = mbox.folder_path(self.data_dir, owner)
                try:
                    mbox.deliver(path, full, sender)
                except OSError as exc:
                    failed[owner] = f"mailbox write failed: {exc.strerror or exc}"
                else:
                    result.dirs_to_sync.add(path.parent)  # a first delivery creates the file
        elif owners:
            boxes = [mailbox_path(self.data_dir, o) for o in owners]
            try:
                written = maildir.deliver(boxes, full)
            except OSError as exc:
                failed = dict.fromkeys(owners, f"mailbox write failed: {exc.strerror or exc}")
            else:
                result.dirs_to_sync.update(p.parent for p in written)
        for rcpt, rcpt_owners in owners_by_rcpt.items():
            why = next((failed[o] for o in rcpt_owners if o in failed), None)
            if why is None:
                result.outcomes[rcpt] = Outcome(Status.OK, "2.0.0", "delivered to mailbox", "local")
            else:
                result.outcomes[rcpt] = Outcome(Status.TEMP, "4.3.0", why, "local")
        return result
