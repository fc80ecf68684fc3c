"""A file the running server re-reads whenever it changes (users, aliases).

One stat per look; the file is parsed again only when its inode, mtime or size
changed. A file that no longer parses keeps the last good version in service
(and logs why), so a typo never locks every user out or drops every alias.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")

log = logging.getLogger("tinymail.server")


class WatchedFile(Generic[T]):
    """`current()` is the parsed file as it is now on disk (see the module docstring)."""

    def __init__(
        self,
        path: Path,
        load: Callable[[Path], T],
        empty: T,
        errors: tuple[type[Exception], ...],
        what: str,
    ) -> None:
        self.path = path
        self._load = load
        self._errors = errors
        self._what = what
        self._signature: tuple[int, int, int] | None = None
        self._value = empty
        self.current()

    def current(self) -> T:
        """The up-to-date parsed file."""
        try:
            st = os.stat(self.path)
            signature: tuple[int, int, int] | None = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            signature = None
        if signature != self._signature:
            try:
                self._value = self._load(self.path)
            except self._errors as exc:
                log.error("%s not reloaded: %s", self._what, exc)
            self._signature = signature
        return self._value
