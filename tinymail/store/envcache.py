"""A per-folder, on-disk cache of data derived from immutable messages (IMAP ENVELOPE,
BODYSTRUCTURE, RFC822.SIZE).

Rules: Maildir messages never change after delivery (research 3.3), so data
computed from one is valid for as long as its base name exists. Records are
appended (`<kind> <base> <length>\\n<data>\\n`, kind one capital letter) and the
file is only a cache: a missing, truncated or corrupt file is read up to the
first bad record and rebuilt as entries are computed again. Records of
expunged messages are dropped by a rewrite (tmp + rename) once they outnumber
the live ones.
"""

from __future__ import annotations

import os
from pathlib import Path

from tinymail.store.safeio import atomic_replace

CACHE_FILE = "tinymail-envelopes"
FLUSH_EVERY = 512
KINDS = frozenset("EBNS")  # ENVELOPE, BODYSTRUCTURE, BODY (non-extensible), RFC822.SIZE


def _record(kind: str, base: str, value: bytes) -> bytes:
    return b"%s %s %d\n%s\n" % (
        kind.encode(),
        base.encode("utf-8", "surrogateescape"),
        len(value),
        value,
    )


class EnvelopeCache:
    """(kind, base name) -> cached bytes for one folder; not thread-safe (the folder locks)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / CACHE_FILE
        self._data: dict[str, dict[str, bytes]] | None = None
        self._pending: list[tuple[str, str, bytes]] = []

    def _load(self) -> dict[str, dict[str, bytes]]:
        data: dict[str, dict[str, bytes]] = {kind: {} for kind in KINDS}
        try:
            blob = self.path.read_bytes()
        except FileNotFoundError:
            return data
        pos = 0
        while pos < len(blob):
            end = blob.find(b"\n", pos)
            head = blob[pos:end].split(b" ") if end >= 0 else []
            if len(head) != 3 or head[0].decode("latin-1") not in KINDS or not head[2].isdigit():
                break  # a torn or foreign tail: ignore it, it is rebuilt on demand
            size = int(head[2])
            start = end + 1
            if blob[start + size : start + size + 1] != b"\n":
                break
            base = head[1].decode("utf-8", "surrogateescape")
            data[head[0].decode("latin-1")][base] = blob[start : start + size]
            pos = start + size + 1
        return data

    def get(self, base: str, kind: str = "E") -> bytes | None:
        """The cached bytes of this kind for a message, if any."""
        data = self._data if self._data is not None else self._loaded()
        return data[kind].get(base)

    def missing(self, base: str, kinds: str) -> str:
        """Those of `kinds` not cached for a message (what get() would answer None for)."""
        data = self._data if self._data is not None else self._loaded()
        return "".join([k for k in kinds if base not in data[k]])

    def put(self, base: str, value: bytes, kind: str = "E") -> None:
        """Remember a value; written to disk in batches (see flush)."""
        self.put_all(base, {kind: value})

    def put_all(self, base: str, values: dict[str, bytes]) -> None:
        """put() each kind -> value of `values` (one message's, from one parse)."""
        data = self._data if self._data is not None else self._loaded()
        if " " in base or "\n" in base:
            return  # cannot be a record key; simply not cached
        for kind, value in values.items():
            data[kind][base] = value
            self._pending.append((kind, base, value))
        if len(self._pending) >= FLUSH_EVERY:
            self.flush()

    def _loaded(self) -> dict[str, dict[str, bytes]]:
        self._data = self._load()
        return self._data

    def flush(self) -> None:
        """Append pending records in one write (a lost batch only costs recomputation)."""
        if not self._pending:
            return
        out = b"".join(_record(kind, base, v) for kind, base, v in self._pending)
        self._pending.clear()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, out)
        finally:
            os.close(fd)

    def prune(self, live: set[str]) -> None:
        """Rewrite without records of gone messages when they are the majority."""
        if self._data is None:
            return
        bases = set().union(*(set(d) for d in self._data.values()))
        stale = [b for b in bases if b not in live]
        if len(stale) <= max(1000, len(live)):
            return
        self.flush()
        for per_kind in self._data.values():
            for base in stale:
                per_kind.pop(base, None)
        out = b"".join(
            _record(kind, base, v)
            for kind, per_kind in sorted(self._data.items())
            for base, v in per_kind.items()
        )
        atomic_replace(self.path, out)
