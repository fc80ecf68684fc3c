"""A Maildir folder held by another thread, as an IMAP worker holds it mid-command."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from tinymail.store.maildir_index import MaildirIndex


@contextmanager
def held_by_another_thread(folder: MaildirIndex) -> Iterator[None]:
    """While inside, a second thread holds `folder`'s lock (released on the way out)."""
    held, done = threading.Event(), threading.Event()

    def worker() -> None:
        assert folder.try_hold()
        held.set()
        done.wait(10)
        folder.release_hold()

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        assert held.wait(10)
        yield
    finally:
        done.set()
        thread.join(10)
