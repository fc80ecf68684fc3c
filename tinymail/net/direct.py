"""Direct local delivery at the end of DATA: the mailbox itself is the durable copy.

When every recipient of a small message is a local mailbox (no forwarding
alias, no relay), the session stores it in the mailboxes (file fsynced, new/
fsynced) before answering 250, and skips the queue: half the fsyncs and none
of the spool work. Anything it could not deliver this way goes through the
queue as usual, so nothing is lost and nothing is acknowledged before it is on
disk.

The mailboxes are those the session resolved at RCPT time. Maildir stores go
to a server's MailboxWriter: up to two threads, each taking every message
waiting and handling them as a batch: write all, fsync all, link all
(store/maildir.py deliver_many), then fsync each new/ directory once, then
wake all their sessions with one call into the event loop. Compared with a
worker thread per message this is group commit for the file and the directory
fsyncs alike, and two threads instead of sixteen taking turns at the GIL with
the event loop between system calls (each system call hands the GIL over).
The mbox store keeps the plain path: a worker thread per message and GroupSync
for the directories.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from tinymail.delivery.courier import Status
from tinymail.delivery.local import LocalDelivery
from tinymail.delivery.resolve import Resolution
from tinymail.queue.model import Envelope
from tinymail.store import maildir
from tinymail.store.layout import mailbox_path
from tinymail.store.safeio import fsync_dir

if TYPE_CHECKING:
    from tinymail.net.context import ServerState

log = logging.getLogger("tinymail.queue")

BATCH_MAX = 64  # messages per batch: bounds the wait of the last one
# Two threads: while one waits for the journal commit of its directory fsyncs, the other's
# file fsyncs can join the next commit; more would only add turns at the GIL.
WRITERS = 2
IDLE_EXIT = 10.0  # seconds without work before the writer thread ends (restarted on demand)


async def deliver_direct(
    state: ServerState,
    envelope: Envelope,
    content: bytes,
    local: LocalDelivery,
    resolve: Callable[[str], Resolution | None],
) -> set[str]:
    """Deliver to the eligible local recipients; return those now durably in their mailbox.

    `local` is the session's view of users and aliases for this transaction and `resolve`
    its (remembered) resolution of a recipient under that view.
    """
    owners_by_rcpt: dict[str, tuple[str, ...]] = {}
    for rcpt in envelope.recipients:
        if not state.outbound.is_local(rcpt):
            continue
        res = resolve(rcpt)
        if res is not None and not res.forwards:
            owners_by_rcpt[rcpt] = res.mailboxes
    if not owners_by_rcpt:
        return set()
    if local.store_format != "maildir":
        return await _deliver_mbox(state, envelope, content, local, list(owners_by_rcpt))
    owners = sorted({o for group in owners_by_rcpt.values() for o in group})
    job = _Job(
        envelope=envelope,
        maildirs=[_mailbox(local.data_dir, o) for o in owners],
        content=content,
        rcpts=sorted(owners_by_rcpt),
    )
    await state.mailbox_writer.store(job)
    return job.done


async def _deliver_mbox(
    state: ServerState, envelope: Envelope, content: bytes, local: LocalDelivery, rcpts: list[str]
) -> set[str]:
    result = await trio.to_thread.run_sync(
        partial(local.deliver, envelope.sender, rcpts, content, plain_only=True)
    )
    done = {r for r, o in result.outcomes.items() if o.status is Status.OK}
    if not done:
        return set()
    try:
        await state.group_sync.sync_all(result.dirs_to_sync)
    except OSError as exc:
        log.error("qid=%s mailbox fsync failed, queueing instead: %s", envelope.qid, exc)
        return set()
    _log_delivered(envelope, sorted(done))
    return done


@functools.lru_cache(maxsize=4096)
def _mailbox(data_dir: Path, owner: str) -> Path:
    return mailbox_path(data_dir, owner)


def _log_delivered(envelope: Envelope, rcpts: Sequence[str]) -> None:
    delay = time.time() - envelope.arrival
    for rcpt in rcpts:
        log.info(
            "qid=%s to=<%s> relay=local delay=%.2f dsn=2.0.0 status=sent (delivered to mailbox)",
            envelope.qid,
            rcpt,
            delay,
        )


@dataclass(slots=True, eq=False)
class _Job:
    """One message for the writer: where it goes, and (once woken) which recipients got it."""

    envelope: Envelope
    maildirs: list[Path]
    content: bytes
    rcpts: list[str]
    done: set[str] = field(default_factory=set)
    task: trio.lowlevel.Task | None = None
    token: trio.lowlevel.TrioToken | None = None


class MailboxWriter:
    """The thread that stores direct Maildir deliveries in batches (see the module docstring)."""

    def __init__(self, threads: int = WRITERS) -> None:
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._max_threads = threads
        self._threads = 0  # running writer threads
        self._waiting = 0  # of them, those waiting for a job

    async def store(self, job: _Job) -> None:
        """Store `job` and fsync its directories; on return `job.done` holds the recipients
        durably delivered (empty when anything failed: the caller queues them instead).

        Not cancellable once submitted, like a worker thread: the disk work runs to its end.
        """
        job.task = trio.lowlevel.current_task()
        job.token = trio.lowlevel.current_trio_token()
        self._jobs.put(job)
        with self._lock:
            if self._waiting == 0 and self._threads < self._max_threads:
                self._threads += 1
                threading.Thread(
                    target=self._run, name="tinymail-mailbox-writer", daemon=True
                ).start()
        await trio.lowlevel.wait_task_rescheduled(lambda _: trio.lowlevel.Abort.FAILED)

    def _run(self) -> None:
        while True:
            with self._lock:
                self._waiting += 1
            try:
                batch = [self._jobs.get(timeout=IDLE_EXIT)]
            except queue.Empty:
                with self._lock:
                    self._waiting -= 1
                    if self._jobs.empty():
                        self._threads -= 1
                        return
                continue
            with self._lock:
                self._waiting -= 1
            while len(batch) < BATCH_MAX:
                try:
                    batch.append(self._jobs.get_nowait())
                except queue.Empty:
                    break
            try:
                _store_batch(batch)
            except Exception:  # a bug here must not stop the thread: the queue takes them
                log.exception("mailbox writer: batch of %d not delivered", len(batch))
            finally:
                _wake(batch)


def _store_batch(batch: list[_Job]) -> None:
    """Write, fsync and link every message, fsync each new/ once; fill in `done` and log."""
    headers = [maildir.return_path_header(job.envelope.sender) for job in batch]
    results = maildir.deliver_many(
        [(job.maildirs, head + job.content) for job, head in zip(batch, headers, strict=True)]
    )
    failed_dirs: dict[Path, OSError] = {}
    for directory in sorted({p.parent for r in results if isinstance(r, list) for p in r}):
        try:
            fsync_dir(directory)
        except OSError as exc:
            failed_dirs[directory] = exc
    for job, result in zip(batch, results, strict=True):
        if isinstance(result, OSError):
            continue  # nothing of it was left behind: the queue takes the message
        bad = next((failed_dirs[p.parent] for p in result if p.parent in failed_dirs), None)
        if bad is not None:
            log.error("qid=%s mailbox fsync failed, queueing instead: %s", job.envelope.qid, bad)
            continue
        job.done = set(job.rcpts)
        _log_delivered(job.envelope, job.rcpts)


def _wake(batch: list[_Job]) -> None:
    """Reschedule every waiting session, one call into each event loop."""
    by_token: dict[trio.lowlevel.TrioToken, list[trio.lowlevel.Task]] = {}
    for job in batch:
        if job.token is not None and job.task is not None:
            by_token.setdefault(job.token, []).append(job.task)
    for token, tasks in by_token.items():
        token.run_sync_soon(_reschedule_all, tasks)


def _reschedule_all(tasks: list[trio.lowlevel.Task]) -> None:
    for task in tasks:
        trio.lowlevel.reschedule(task)
