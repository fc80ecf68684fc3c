"""The selected state: one session's view of a mailbox and the commands that use it.

Rules (RFC 3501 2.3.1.2, 5.2, 7.4.1):
- The session keeps the UID tuple it last told the client about; sequence
  numbers are positions in it. Updates from other sessions (new messages,
  flag changes, expunges) are announced only between commands, and EXPUNGE
  never while answering FETCH, STORE or SEARCH (their UID forms may).
  Expunges are sent highest sequence number first, so every number is still
  valid when the client reads it.
- The session's own flag changes are not echoed again as updates.
- \\Recent belongs to the one session that claimed the message (store).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache, partial
from typing import Protocol, cast, runtime_checkable

from tinymail.proto.imap import fetch, fetchdata
from tinymail.proto.imap.search import Candidate, Key, matches, resolve_numbers
from tinymail.proto.imap.seqset import SeqSet, format_set, select_indices, seq_out_of_range
from tinymail.store.mailbox import SYSTEM_FLAGS, FlagMode, Mailbox, MailboxError

_STRUCTURE = {True: fetch.structure_of(True), False: fetch.structure_of(False)}
# Flag changes by other sessions that a command on the event loop may still report; more go
# to a worker thread (formatting thousands of FETCH lines would hold up every session).
LIGHT_UPDATES = 64


def _structure(cache: fetch.DerivedCache, uid: int, extensible: bool) -> bytes:
    """BODYSTRUCTURE or BODY through the store's cache."""
    return cache.derived(uid, "B" if extensible else "N", _STRUCTURE[extensible])


@runtime_checkable
class KnownSize(Protocol):
    """A mailbox that can tell a message's size from memory."""

    def known_size(self, uid: int) -> int:
        """RFC822.SIZE if known without any file access, else -1."""
        ...


@runtime_checkable
class Holdable(Protocol):
    """A mailbox the event loop can hold without waiting (MaildirIndex.try_hold)."""

    def try_hold(self, quiet: bool = False) -> bool:
        """Hold for the calling thread if that needs no waiting (`quiet`: and no rescan)."""
        ...

    def release_hold(self, quiet: bool = False) -> None:
        """End a successful try_hold."""
        ...


@lru_cache(maxsize=64)
def _implements(cls: type, protocol: type) -> bool:
    """issubclass against a runtime-checkable Protocol, remembered per class: the
    Protocol check itself costs more than a small FETCH command."""
    return issubclass(cls, protocol)


class BadSequence(ValueError):
    """A message sequence number names no message (tagged BAD)."""


@dataclass(slots=True)
class Selection:
    """A selected (or examined) mailbox."""

    mailbox: Mailbox
    readonly: bool
    uids: tuple[int, ...] = ()
    modseq: int = 0
    recent: set[int] = field(default_factory=set)
    own: dict[int, int] = field(default_factory=dict)
    keywords: tuple[str, ...] = ()

    def _flags(self, uid: int) -> frozenset[str]:
        flags = self.mailbox.flags(uid) or frozenset()
        return flags | {"\\Recent"} if uid in self.recent else flags

    def _flags_line(self) -> list[bytes]:
        flags = " ".join((*SYSTEM_FLAGS, *self.keywords)).encode()
        perm = flags + (b" \\*" if len(self.keywords) < 26 else b"")
        return [
            b"* FLAGS (" + flags + b")\r\n",
            b"* OK [PERMANENTFLAGS (" + (perm if not self.readonly else b"") + b")] Flags\r\n",
        ]

    def open(self) -> list[bytes]:
        """The untagged responses of SELECT/EXAMINE (RFC 3501 6.3.1)."""
        view = self.mailbox.sync(claim_recent=not self.readonly)
        self.uids, self.modseq, self.keywords = view.uids, view.modseq, view.keywords
        self.recent = set(view.recent)
        out = self._flags_line()
        out.append(b"* %d EXISTS\r\n" % len(self.uids))
        out.append(b"* %d RECENT\r\n" % len(self.recent))
        for seq, uid in enumerate(self.uids, 1):
            flags = self.mailbox.flags(uid)
            if flags is not None and "\\Seen" not in flags:
                out.append(b"* OK [UNSEEN %d] First unseen\r\n" % seq)
                break
        out.append(b"* OK [UIDVALIDITY %d] UIDs valid\r\n" % view.uidvalidity)
        out.append(b"* OK [UIDNEXT %d] Predicted next UID\r\n" % view.uidnext)
        return out

    def seq_of(self, uid: int) -> int:
        """1-based sequence number of a UID in the session's view, 0 if absent."""
        i = bisect_left(self.uids, uid)
        return i + 1 if i < len(self.uids) and self.uids[i] == uid else 0

    def hold_if_small(self, number: int, by_uid: bool, limit: int) -> bool:
        """Hold the mailbox (Holdable, quiet) and return True when message `number` (a UID
        or sequence number) exists, the store knows without reading anything that it has
        at most `limit` octets, and holding needed no waiting; False holds nothing.
        A True must be followed by release() once the command is done."""
        if by_uid:
            if not self.seq_of(number):
                return False
            uid = number
        elif 1 <= number <= len(self.uids):
            uid = self.uids[number - 1]
        else:
            return False
        box = self.mailbox
        if not _implements(type(box), KnownSize) or not self.hold_quiet():
            return False
        if 0 <= cast(KnownSize, box).known_size(uid) <= limit:
            return True
        self.release()
        return False

    def hold_quiet(self) -> bool:
        """Hold the mailbox and return True when a command on the event loop would find
        little to do: nothing changed on disk since the last scan and nothing waits in new/
        to be claimed (Holdable, quiet), no message came or went in this process since the
        session last looked, and at most LIGHT_UPDATES flag changes are due to be reported.
        False holds nothing. A True must be followed by release() once the command is done."""
        box = self.mailbox
        if not (_implements(type(box), Holdable) and cast(Holdable, box).try_hold(quiet=True)):
            return False
        changes = box.flag_changes(self.modseq)
        if (
            changes is not None
            and len(changes) <= LIGHT_UPDATES
            and box.sync(claim_recent=False).uids is self.uids
        ):
            return True
        self.release()
        return False

    def release(self) -> None:
        """End the hold taken by a successful hold_quiet or hold_if_small."""
        cast(Holdable, self.mailbox).release_hold(quiet=True)

    def updates(self, allow_expunge: bool) -> list[bytes]:
        """Untagged EXPUNGE / EXISTS / RECENT / FETCH for what changed since the last call."""
        view = self.mailbox.sync(claim_recent=not self.readonly)
        out: list[bytes] = []
        if view.keywords != self.keywords:
            self.keywords = view.keywords
            out += self._flags_line()
        self.recent |= view.recent
        old = self.uids
        if view.uids is not old:
            current = set(view.uids)
            known = set(old)
            added = [u for u in view.uids if u not in known]
            if allow_expunge:
                gone = [i for i, uid in enumerate(old) if uid not in current]
                for i in reversed(gone):
                    out.append(b"* %d EXPUNGE\r\n" % (i + 1))
                    self.recent.discard(old[i])
                self.uids = view.uids  # shared with every other session at this state
            else:
                self.uids = old + tuple(added)  # expunged ones stay until allowed
            if added:
                out.append(b"* %d EXISTS\r\n" % len(self.uids))
                out.append(b"* %d RECENT\r\n" % len(self.recent))
        changes = self.mailbox.flag_changes(self.modseq)
        if changes is None:
            changes = [(uid, -1) for uid in self.uids]
        reported = set()
        for uid, seq in changes:
            if self.own.get(uid) == seq or uid in reported:
                continue
            number = self.seq_of(uid)
            flags = self.mailbox.flags(uid)
            if number and flags is not None:
                reported.add(uid)
                out.append(
                    b"* %d FETCH (FLAGS %s)\r\n" % (number, fetch.format_flags(self._flags(uid)))
                )
        self.own.clear()
        self.modseq = view.modseq
        return out

    def indices(self, seqset: SeqSet, by_uid: bool) -> list[int]:
        """0-based positions the set names; BadSequence for an unknown sequence number."""
        if not by_uid and (not self.uids or seq_out_of_range(seqset, len(self.uids))):
            raise BadSequence("Invalid message sequence number")
        return select_indices(seqset, self.uids, by_uid)

    def do_fetch(
        self, seqset: SeqSet, items: list[fetch.FetchItem], by_uid: bool
    ) -> Iterator[bytes]:
        """FETCH / UID FETCH responses one by one (so they can stream out); sets \\Seen
        where RFC 3501 6.4.5 says so. A bad set raises before the first response."""
        positions = self.indices(seqset, by_uid)
        mark_seen = fetch.sets_seen(items) and not self.readonly
        if mark_seen and "FLAGS" not in items:
            items = [*items, "FLAGS"]
        box = self.mailbox
        cls = type(box)
        cache = cast(fetch.DerivedCache, box) if _implements(cls, fetch.DerivedCache) else None
        batch = cast(fetch.BatchCache, box) if _implements(cls, fetch.BatchCache) else None
        kinds = fetch.cached_kinds(items)
        primed = None
        if kinds and batch is not None and _implements(cls, fetch.OrderedCache):
            run = [self.uids[i] for i in positions]
            primed = cast(fetch.OrderedCache, box).prime_all(run, kinds, fetchdata.derive)
        try:
            for i in positions:
                uid = self.uids[i]
                if primed is not None:
                    next(primed, None)  # this message's cached items are ready
                if box.flags(uid) is None:
                    continue  # expunged by another session: nothing to send (RFC 2180 4.1.2)
                if mark_seen and "\\Seen" not in (box.flags(uid) or ()):
                    for u, (_flags, seq) in box.store_flags(
                        [uid], frozenset({"\\Seen"}), FlagMode.ADD
                    ).items():
                        self.own[u] = seq
                if batch is not None and kinds and primed is None:
                    try:
                        batch.prime(uid, kinds, fetchdata.derive)
                    except MailboxError:
                        continue  # vanished meanwhile
                data = fetch.MessageData(
                    uid=uid,
                    flags=partial(self._flags, uid),
                    size=partial(box.size, uid),
                    internal_date=partial(box.internal_date, uid),
                    envelope=partial(box.envelope, uid, fetchdata.envelope),
                    message=partial(box.read, uid),
                    structure=None if cache is None else partial(_structure, cache, uid),
                )
                try:
                    line = fetch.build_response(i + 1, items, data, by_uid)
                except MailboxError:
                    continue  # vanished between the check and the read
                yield line
        finally:
            if primed is not None:
                primed.close()  # hands the helper process back (derive_helper)

    def do_store(
        self, seqset: SeqSet, mode: FlagMode, flags: frozenset[str], silent: bool, by_uid: bool
    ) -> list[bytes]:
        """STORE / UID STORE; returns the FETCH FLAGS responses unless .SILENT."""
        if self.readonly:
            raise MailboxError("READ-ONLY", "Mailbox is read-only")
        flags = frozenset(f for f in flags if f.lower() != "\\recent")  # \\Recent is not storable
        uids = [self.uids[i] for i in self.indices(seqset, by_uid)]
        result = self.mailbox.store_flags(uids, flags, mode)
        out = []
        for uid, (_new, seq) in result.items():
            self.own[uid] = seq
            if not silent:
                uid_part = b" UID %d" % uid if by_uid else b""
                line = fetch.format_flags(self._flags(uid))
                out.append(b"* %d FETCH (FLAGS %s%s)\r\n" % (self.seq_of(uid), line, uid_part))
        return out

    def do_search(self, key: Key, by_uid: bool) -> bytes:
        """`* SEARCH ...` for the matching messages."""
        box = self.mailbox
        found = []
        key = resolve_numbers(key, self.uids)
        largest_uid = self.uids[-1] if self.uids else 0
        for i, uid in enumerate(self.uids):
            if box.flags(uid) is None:
                continue
            cand = Candidate(
                seq=i + 1,
                uid=uid,
                largest_seq=len(self.uids),
                largest_uid=largest_uid,
                recent=uid in self.recent,
                flags=partial(self._flags, uid),
                size=partial(box.size, uid),
                internal_date=partial(box.internal_date, uid),
                read_header=partial(box.read_header, uid),
                read_message=partial(box.read, uid),
            )
            try:
                if matches(key, cand):
                    found.append(uid if by_uid else i + 1)
            except MailboxError:
                continue
        return b"* SEARCH" + b"".join(b" %d" % n for n in found) + b"\r\n"

    def do_copy(self, seqset: SeqSet, target: Mailbox, by_uid: bool) -> tuple[str, list[int]]:
        """COPY; returns the COPYUID response code text and the source UIDs copied."""
        uids = [self.uids[i] for i in self.indices(seqset, by_uid)]
        pairs = self.mailbox.copy_to(uids, target)
        if not pairs:
            return "", []
        validity = target.sync(claim_recent=False).uidvalidity
        src = format_set(p[0] for p in pairs)
        dst = format_set(p[1] for p in pairs)
        return f"COPYUID {validity} {src} {dst}", [p[0] for p in pairs]

    def do_expunge(self, only: set[int] | None) -> list[bytes]:
        """Remove \\Deleted messages (restricted to `only` for UID EXPUNGE) and report them."""
        if self.readonly:
            raise MailboxError("READ-ONLY", "Mailbox is read-only")
        doomed = [
            uid
            for uid in self.uids
            if (only is None or uid in only) and "\\Deleted" in (self.mailbox.flags(uid) or ())
        ]
        self.mailbox.expunge(doomed)
        return self.updates(allow_expunge=True)

    def expunge_uids(self, uids: list[int]) -> list[bytes]:
        """Expunge exactly these UIDs (MOVE, RFC 6851 3.3) and report them."""
        self.mailbox.expunge(uids)
        return self.updates(allow_expunge=True)
