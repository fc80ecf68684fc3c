"""Heap tuning for the long-running daemon: big freed buffers go back to the OS (glibc's
malloc), and the start-up heap is kept out of the cyclic collector's way.

Why: a password check with {SCRYPT} needs a 16 MiB work area (passwords.py). glibc serves
the first such block with mmap, but freeing it raises the mmap threshold to its size, so
later blocks come from a thread's heap arena and stay there when freed: measured +32 MiB
of resident memory after a few concurrent logins (about 80 kB per held IMAP connection in
the shared bench's M workload, which counts 200 of them). Fixing the threshold at 1 MiB
keeps every block that big on mmap, returned to the OS by free().

Why freeze: CPython runs a full collection once objects promoted since the last one reach
a quarter of the heap. Right after start that is soon, so the first command that allocates
some thousands of objects (the first SELECT of a big folder) paid a walk of the whole
start-up heap: 20-40 ms measured. Modules, classes and config live as long as the process;
frozen, no collection walks them again.
"""

from __future__ import annotations

import ctypes
import gc

M_MMAP_THRESHOLD = -3  # glibc <malloc.h>
MMAP_THRESHOLD = 1 << 20


def return_big_buffers() -> bool:
    """Fix the C heap's mmap threshold at 1 MiB; False where the C library has no mallopt."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl, other systems): nothing to tune
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))


def freeze_startup_heap() -> None:
    """Collect once, then keep every object alive now out of later collections (gc.freeze)."""
    gc.collect()
    gc.freeze()
