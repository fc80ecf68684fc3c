"""A helper process that reads message files and computes data derived from them (IMAP
ENVELOPE / BODYSTRUCTURE / RFC822.SIZE), so a cold FETCH of many messages uses a second core.

Rules / theory:
- Parsing is pure Python and holds the GIL, so threads cannot share it out; one process
  per server (not per session) can. It is started on the first large batch (SplitWork),
  reads requests on stdin and answers on stdout, and exits by itself at end of input
  (the server died) or after IDLE_EXIT seconds without work. Whoever cannot take it
  (another session holds it, no second CPU, a start or pipe failure) computes everything
  itself: the helper is only ever a speed-up, and every answer it gives is one the
  caller would have computed (same function, same bytes, same interpreter and code).
- The caller needs its jobs done in order (FETCH answers in order). The helper always
  has DEPTH chunks of the next jobs nobody has taken; when the caller reaches a job
  whose answer is not in yet, it does the first job nobody has (a "steal", kept for
  later) instead of waiting. So both cores stay busy to the end, whichever is faster,
  and the caller also keeps and answers the helper's results while the helper works.
- Frames are a 4-byte big-endian length and a marshal blob (builtin types only; both
  ends run the same interpreter). A request is (id, "module:function", [(k, path,
  kinds)]); the answer is (id, [(k, values or None, mtime)]). The helper opens the file
  by the path it is given: a file renamed meanwhile (a flag change) comes back None and
  the caller computes that one itself, through the store's usual retry.
- The caller never waits forever: WAIT_LIMIT without an answer kills the helper.
"""

from __future__ import annotations

import contextlib
import importlib
import marshal
import os
import select
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, cast

from tinymail.store.safeio import write_all

Compute = Callable[[bytes, str], dict[str, bytes]]
Result = tuple[dict[str, bytes], float]  # derived values, the file's mtime

MIN_JOBS = 256  # fewer jobs than this are not worth a helper
CHUNK = 32  # jobs per request
DEPTH = 2  # requests outstanding at once
IDLE_EXIT = 60.0  # seconds the helper waits for work before it exits
WAIT_LIMIT = 20.0  # seconds without an answer before the helper is given up
_FRAME = 4

_BOOT = (
    "import sys; sys.path[:] = sys.argv[1].split('\\n'); "
    "from tinymail.store.derive_helper import serve; serve()"
)


def function_ref(compute: Compute) -> str | None:
    """`module:qualname` under which the helper can import `compute`, or None if it cannot."""
    module, name = getattr(compute, "__module__", None), getattr(compute, "__qualname__", "")
    if not module or not name or "<" in name:
        return None
    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None
    return f"{module}:{name}" if found is compute else None


def _resolve(ref: str) -> Compute:
    module, _, name = ref.partition(":")
    return cast(Compute, getattr(importlib.import_module(module), name))


def read_file(path: str) -> tuple[bytes, float]:
    """A whole file and its mtime."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return read_open(fd)
    finally:
        os.close(fd)


def read_open(fd: int) -> tuple[bytes, float]:
    """All of an open file and its mtime: one fstat and, for a file that does not grow
    meanwhile, one read."""
    st = os.fstat(fd)
    want = max(st.st_size + 1, 65536)
    data = os.read(fd, want)
    if len(data) == want:  # a short read of a regular file is its end: else go on
        chunks = [data]
        while chunk := os.read(fd, want):
            chunks.append(chunk)
        data = b"".join(chunks)
    return data, st.st_mtime


def _frame(obj: Any) -> bytes:
    blob = marshal.dumps(obj)
    return len(blob).to_bytes(_FRAME, "big") + blob


def _read_exact(fd: int, n: int) -> bytes | None:
    out = bytearray()
    while len(out) < n:
        chunk = os.read(fd, n - len(out))
        if not chunk:
            return None
        out += chunk
    return bytes(out)


def serve(idle_exit: float = IDLE_EXIT) -> None:
    """The helper's main loop (run in the child process): requests on fd 0, answers on
    the original fd 1; anything printed goes to stderr, never into the answers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # ^C at the server's terminal is its job
    out_fd = os.dup(1)
    os.dup2(2, 1)
    functions: dict[str, Compute] = {}
    while True:
        ready, _, _ = select.select([0], [], [], idle_exit)
        if not ready:
            return  # idle: the next large FETCH starts a new helper
        head = _read_exact(0, _FRAME)
        blob = None if head is None else _read_exact(0, int.from_bytes(head, "big"))
        if blob is None:
            return  # the server went away
        req_id, ref, jobs = marshal.loads(blob)
        compute = functions.get(ref)
        if compute is None:
            compute = functions[ref] = _resolve(ref)
        answers: list[tuple[int, dict[str, bytes] | None, float]] = []
        for k, path, kinds in jobs:
            try:
                data, mtime = read_file(path)
                answers.append((k, compute(data, kinds), mtime))
            except Exception:  # any failure: the caller computes this one itself
                answers.append((k, None, 0.0))
        write_all(out_fd, _frame((req_id, answers)))


class Helper:
    """The parent's handle on one helper process; used by one SplitWork at a time."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.proc: subprocess.Popen[bytes] | None = None
        self._buf = bytearray()
        self._next_id = 0

    def start(self) -> bool:
        """Make sure the process runs (started if needed); False if it cannot."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            return True
        self.stop()
        if not sys.executable:
            return False
        paths = [p for p in sys.path if "\n" not in p]
        try:
            proc = subprocess.Popen(
                [sys.executable, "-E", "-c", _BOOT, "\n".join(paths)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                close_fds=True,
            )
        except OSError:
            return False
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        self.proc, self._buf = proc, bytearray()
        return True

    def stop(self) -> None:
        """Kill and reap the process (if any)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            proc.kill()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)

    def send(self, ref: str, jobs: list[tuple[int, str, str]]) -> int:
        """Queue one request; returns its id. Raises OSError if the helper is gone."""
        proc = self.proc
        if proc is None or proc.stdin is None:
            raise BrokenPipeError("no helper")
        self._next_id += 1
        write_all(proc.stdin.fileno(), _frame((self._next_id, ref, jobs)))
        return self._next_id

    def receive(self, timeout: float) -> list[tuple[int, list[tuple[int, object, float]]]]:
        """Answers complete so far, waiting up to `timeout` for the first one. Raises
        OSError when the helper is gone or fell silent for longer than `timeout` > 0."""
        proc = self.proc
        if proc is None or proc.stdout is None:
            raise BrokenPipeError("no helper")
        fd = proc.stdout.fileno()
        out = self._frames()
        while not out:
            if timeout > 0:
                ready, _, _ = select.select([fd], [], [], timeout)
                if not ready:
                    raise TimeoutError("helper did not answer")
            try:
                chunk = os.read(fd, 1 << 20)
            except BlockingIOError:
                return out
            if not chunk:
                raise BrokenPipeError("helper exited")
            self._buf += chunk
            out = self._frames()
        return out

    def _frames(self) -> list[tuple[int, list[tuple[int, object, float]]]]:
        out = []
        buf = self._buf
        while len(buf) >= _FRAME:
            size = int.from_bytes(buf[:_FRAME], "big")
            if len(buf) < _FRAME + size:
                break
            out.append(marshal.loads(bytes(buf[_FRAME : _FRAME + size])))
            del buf[: _FRAME + size]
        return out


_HELPER = Helper()


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def warm_up(jobs: int) -> None:
    """Start the helper process now if a SplitWork of `jobs` jobs will want it (and no one
    is using it), so its start overlaps the caller's own preparation."""
    if jobs >= MIN_JOBS and _cpus() > 1 and _HELPER.lock.acquire(blocking=False):
        try:
            _HELPER.start()
        finally:
            _HELPER.lock.release()


class SplitWork:
    """Jobs 0..n-1 that the caller needs done in order (ensure(k) for k = 0, 1, 2...),
    shared with the helper process: see the module comment. A job is (path, kinds) or
    None (nothing to compute). `local(k)` computes and keeps job k in the caller;
    `keep(k, result)` keeps the helper's answer for it."""

    def __init__(
        self,
        jobs: Sequence[tuple[str, str] | None],
        compute: Compute,
        local: Callable[[int], None],
        keep: Callable[[int, Result], None],
        helper: Helper | None = None,
        min_jobs: int = MIN_JOBS,
    ) -> None:
        self.jobs = jobs
        self._local, self._keep = local, keep
        self._frontier = 0  # jobs from here on are neither the helper's nor done
        self._stolen: set[int] = set()  # done by the caller ahead of its turn
        self._helper: Helper | None = None
        self._ref = function_ref(compute)
        self._sent: deque[int] = deque()  # request ids outstanding, oldest first
        self._done: dict[int, Result | None] = {}
        real = sum(1 for j in jobs if j is not None)
        if self._ref is None or real < min_jobs or _cpus() < 2:
            return
        helper = _HELPER if helper is None else helper
        if not helper.lock.acquire(blocking=False):
            return  # another session has it: everything is done here
        if not helper.start():
            helper.lock.release()
            return
        self._helper = helper

    @property
    def active(self) -> bool:
        """True while the helper takes part."""
        return self._helper is not None

    def ensure(self, k: int) -> None:
        """Job k is done (kept) when this returns. While the helper's answer for it is
        still on its way, the caller does jobs past the helper's instead of waiting."""
        if self.jobs[k] is None or k in self._stolen:
            return
        if self._helper is not None and (k in self._done or self._collect(0.0)):
            if k >= self._frontier:  # nobody has it: the caller's, the helper gets the next
                self._frontier = k + 1
            else:  # the helper's: until its answer is in, do jobs nobody has yet
                while k not in self._done and self._sent:
                    if not self._steal() and not self._collect(WAIT_LIMIT):
                        break
                    self._hand_out()
            self._hand_out()
        if k in self._done:
            result = self._done.pop(k)
            if result is not None:
                self._keep(k, result)
                return
        self._local(k)  # the caller's turn, an unreadable file, or no helper (left)

    def _steal(self) -> bool:
        """Do the first job nobody has yet; False if there is none."""
        while self._frontier < len(self.jobs):
            j = self._frontier
            self._frontier += 1
            if self.jobs[j] is not None:
                self._local(j)
                self._stolen.add(j)
                self._collect(0.0)
                return True
        return False

    def _hand_out(self) -> None:
        """Keep DEPTH chunks with the helper, taken from the frontier."""
        helper, ref = self._helper, self._ref
        if helper is None or ref is None:
            return
        while len(self._sent) < DEPTH and self._frontier < len(self.jobs):
            start, end = self._frontier, min(self._frontier + CHUNK, len(self.jobs))
            self._frontier = end
            batch = [(k, *job) for k in range(start, end) if (job := self.jobs[k]) is not None]
            if not batch:
                continue
            try:
                self._sent.append(helper.send(ref, batch))
            except OSError:
                self._fail()
                return

    def _collect(self, timeout: float) -> bool:
        """Take in what the helper answered; False if it failed (then all is the caller's)."""
        helper = self._helper
        if helper is None:
            return False
        if not self._sent:
            return True
        try:
            frames = helper.receive(timeout)
        except OSError:
            self._fail()
            return False
        for req_id, answers in frames:
            if self._sent and self._sent[0] == req_id:
                self._sent.popleft()
            for k, values, mtime in answers:
                self._done[k] = None if values is None else (cast(dict[str, bytes], values), mtime)
        return True

    def _fail(self) -> None:
        helper, self._helper = self._helper, None
        self._sent.clear()
        if helper is not None:
            helper.stop()
            helper.lock.release()

    def close(self) -> None:
        """Release the helper. Answers still in flight are read and dropped first, so the
        next user starts clean; a helper that does not answer is stopped."""
        helper = self._helper
        if helper is None:
            return
        while self._sent:
            if not self._collect(WAIT_LIMIT):
                return  # _fail released it
        self._helper = None
        self._done.clear()
        helper.lock.release()
