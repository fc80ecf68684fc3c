"""The daemon's C heap gives big freed buffers back (tinymail/heap.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import tinymail

ROOT = str(Path(tinymail.__file__).parent.parent)
SCRIPT = textwrap.dedent(
    """
    import hashlib, os, sys, threading
    sys.path.insert(0, sys.argv[1])
    from tinymail import heap
    from tinymail.store.passwords import hash_password, verify_password

    def rss_kb():
        pages = int(open("/proc/self/statm").read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") // 1024

    applied = heap.return_big_buffers()
    stored = hash_password("secret")
    base = rss_kb()
    for _ in range(3):  # concurrent logins, each in its own worker thread
        threads = [
            threading.Thread(target=verify_password, args=("secret", stored)) for _ in range(2)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    print(applied, rss_kb() - base)
    """
)


def test_scrypt_work_areas_do_not_stay_resident() -> None:
    """Without the fixed threshold glibc keeps 16 MiB per arena after such logins."""
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, ROOT], capture_output=True, check=True, text=True
    ).stdout.split()
    applied, growth_kb = out[0] == "True", int(out[1])
    assert applied  # Debian's glibc has mallopt
    assert growth_kb < 8 * 1024


FREEZE_SCRIPT = textwrap.dedent(
    """
    import gc, sys
    sys.path.insert(0, sys.argv[1])
    import tinymail.net.serve  # the daemon's modules: its start-up heap
    from tinymail import heap

    heap.freeze_startup_heap()
    print(gc.get_freeze_count(), len(gc.get_objects()))
    """
)


def test_start_up_heap_is_out_of_later_full_collections() -> None:
    """A full collection (the first one after start came during the first SELECT of a big
    folder) walks only what was made since start, not the modules and classes."""
    out = subprocess.run(
        [sys.executable, "-c", FREEZE_SCRIPT, ROOT], capture_output=True, check=True, text=True
    ).stdout.split()
    frozen, walked = int(out[0]), int(out[1])
    assert frozen > 10000 and walked < frozen // 10
