"""The queue runner: a trio task that delivers what the spool holds.

Theory:
- It wakes at once for a new queue ID (`notify`, called by SMTP sessions and
  the sendmail nudge) and at the due time of deferred messages; it never polls
  the spool. At start it scans the spool, so whatever a crash left is retried.
- Deliveries run in its own nursery, bounded by a CapacityLimiter. A message
  is handled by one task at a time; a notify for a busy message re-runs it.
- Per recipient: local ones go to LocalDelivery (in a thread), whose new/
  directories are group-fsynced before any outcome counts; remote ones go to
  the remote courier when there is one, else stay queued.
- One thread hop loads a message: envelope and state, the local deliveries,
  and the content of a small message bound for remote recipients, which then
  goes out from memory (no more file I/O for it). Finished messages leave the
  spool in batches: removals requested while one batch is in its thread go
  together in the next (a message stays busy until its files are gone).
- An SMTP session that just queued a message still holds its envelope (and the
  content of a small one): it hands them over with the notify, and a first
  attempt for remote recipients only then skips the loading hop. An admin
  change drops the preload, so a changed or held message is read from the spool.
- Outcomes land in the state file before anything else happens, so a crash
  repeats a delivery (at-least-once) and never loses one. A message leaves the
  spool only when every recipient is sent or failed-and-bounced, or when an
  administrator deletes it.
- Admin changes (`change`: delete, hold, release) never race an attempt: the
  message is fenced (no new attempt starts), a running attempt is waited for
  (it is not cancelled: a half-sent DATA would only be sent again), then the
  change is applied to the spool and only then acknowledged. So once `delete`
  or `hold` has returned, no attempt on that message is running or will start;
  what the attempt in flight delivered stays delivered. A notify or due time
  that arrives while fenced is replayed afterwards (a deleted message is then
  simply gone, a held one skipped).
"""

from __future__ import annotations

import heapq
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import trio

from tinymail.delivery.courier import Outcome, Status
from tinymail.delivery.local import LocalDelivery, LocalResult
from tinymail.mail.dsn import DsnKind
from tinymail.proto.control import QueueAction
from tinymail.queue.bounce import queue_dsn
from tinymail.queue.groupsync import GroupSync
from tinymail.queue.mailq import change
from tinymail.queue.model import Envelope, QueueItem, QueueState, RcptStatus, Recipient
from tinymail.queue.schedule import Action, RetryPolicy, plan_retry
from tinymail.queue.spool import CorruptQueueFile, Spool, read_content

log = logging.getLogger("tinymail.queue")

INLINE_CONTENT = 256 * 1024  # remote messages up to this size are sent from memory
# Preloads waiting for their attempt, and the bytes of content they may hold: past these (a
# backlog) further messages read the spool, so a burst of arrivals cannot pin its contents in
# memory (1,024 sessions' in-memory contents could be 256 MiB).
PRELOAD_MAX = 1024
PRELOAD_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class _Loaded:
    """What the loading thread hop found; `result` None: not due (or held)."""

    item: QueueItem
    result: LocalResult | None
    remote: list[str] = field(default_factory=list)
    content: bytes | None = None  # the content, when small enough to keep in memory


class RemoteDelivery(Protocol):
    """Delivers one message to remote recipients (delivery.outbound.Outbound is the real one)."""

    async def deliver(
        self, item: QueueItem, recipients: Sequence[str], content: bytes | None = None
    ) -> dict[str, Outcome]:
        """Outcomes per recipient; `content` is the message content if already read."""
        ...


class QueueRunner:
    """Delivers queued messages; see the module docstring."""

    def __init__(
        self,
        spool: Spool,
        local: Callable[[], LocalDelivery],
        *,
        hostname: str,
        is_local: Callable[[str], bool],
        retry: RetryPolicy,
        remote: RemoteDelivery | None = None,
        # Attempts in flight. Remote ones mostly wait on the network (a loaded relay keeps a
        # few per destination busy); local ones also queue for trio's worker threads.
        concurrency: int = 48,
        group_sync: GroupSync | None = None,
    ):
        self.spool = spool
        self._local = local
        self._hostname = hostname
        self._is_local = is_local
        self._retry = retry
        self._remote = remote
        self._limiter = trio.CapacityLimiter(concurrency)
        self._sync = group_sync or GroupSync()
        self._removals = _Batched(self._remove_all)
        self._send, self._recv = trio.open_memory_channel[tuple[str, bool]](math.inf)
        self._due: list[tuple[float, str]] = []
        self._sleep: trio.CancelScope | None = None  # the run loop's wait for the next due time
        self._busy: dict[str, trio.Event] = {}  # qid -> set when its attempt ends
        self._fenced: dict[str, int] = {}  # qid -> admin changes waiting for or applying
        self._again: dict[str, bool] = {}
        self._preloads: dict[str, tuple[Envelope, bytes | None]] = {}
        self._preload_bytes = 0  # of the contents in _preloads
        self.idle = trio.Event()

    def notify(
        self,
        qid: str,
        *,
        force: bool = False,
        preload: tuple[Envelope, bytes | None] | None = None,
    ) -> None:
        """A message was queued (or must be retried now with force=True).

        `preload` is the envelope just committed and its content (None when not in memory),
        for the first attempt; see the module docstring.
        """
        if preload is not None and len(self._preloads) < PRELOAD_MAX:
            envelope, content = preload
            if content is not None and len(content) > PRELOAD_BYTES - self._preload_bytes:
                content = None  # over the budget: the attempt reads the file
            self._preload_bytes += len(content) if content is not None else 0
            self._preloads[qid] = (envelope, content)
        self._send.send_nowait((qid, force))

    async def flush(self) -> None:
        """Retry every queued message now (`tinymail queue flush`, `sendmail -q`)."""
        qids = await trio.to_thread.run_sync(self.spool.scan)
        for qid in qids:
            self.notify(qid, force=True)

    async def change(self, qid: str, action: QueueAction) -> QueueState | None:
        """Delete, hold or release `qid` between attempts (see the module docstring).

        Returns the new state (None once deleted); raises LookupError when `qid` is not queued,
        which includes a message whose attempt in flight finished delivering it.
        """
        self._fenced[qid] = self._fenced.get(qid, 0) + 1
        self._take_preload(qid)  # the next attempt must see the changed spool
        try:
            while (running := self._busy.get(qid)) is not None:
                await running.wait()
            state = await trio.to_thread.run_sync(change, self.spool, qid, action)
        finally:
            self._fenced[qid] -= 1
            if not self._fenced[qid]:
                del self._fenced[qid]
                if qid in self._again:  # replay what arrived while fenced
                    self.notify(qid, force=self._again.pop(qid))
        if action is QueueAction.RELEASE:
            self.notify(qid)  # back on its schedule: due now, or queued for its time
        return state

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve forever: scan the spool, then deliver new and due messages."""
        qids = await trio.to_thread.run_sync(self.spool.scan)
        for qid in qids:
            self.notify(qid)
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                wait = self._due[0][0] - time.time() if self._due else math.inf
                with trio.move_on_after(max(0.0, wait)) as self._sleep:
                    qid, force = await self._recv.receive()
                    self._start(nursery, qid, force)
                    continue
                now = time.time()
                while self._due and self._due[0][0] <= now:
                    _, qid = heapq.heappop(self._due)
                    self._start(nursery, qid, False)

    def _schedule(self, when: float, qid: str) -> None:
        """Attempt `qid` at wall-clock time `when`."""
        heapq.heappush(self._due, (when, qid))
        # The run loop sleeps until the earliest due time it knew of (or forever): wake it
        # sooner when this one comes first.
        if self._sleep is not None:
            wake = trio.current_time() + max(0.0, when - time.time())
            self._sleep.deadline = min(self._sleep.deadline, wake)

    def _start(self, nursery: trio.Nursery, qid: str, force: bool) -> None:
        if qid in self._busy or qid in self._fenced:
            self._again[qid] = self._again.get(qid, False) or force
            return
        self._busy[qid] = trio.Event()
        if self.idle.is_set():  # keep the event a waiter holds until all work is done
            self.idle = trio.Event()
        nursery.start_soon(self._run_one, nursery, qid, force)

    async def _run_one(self, nursery: trio.Nursery, qid: str, force: bool) -> None:
        try:
            async with self._limiter:
                await self._process(qid, force)
        except Exception:
            log.exception("qid=%s delivery attempt failed internally; retrying later", qid)
            self._schedule(time.time() + self._retry.retry_min, qid)
        finally:
            self._busy.pop(qid).set()
            if qid in self._again:
                self._start(nursery, qid, self._again.pop(qid))
            elif not self._busy:
                self.idle.set()

    async def _process(self, qid: str, force: bool) -> None:
        now = time.time()
        preloaded = self._from_preload(qid)
        if preloaded is not None:
            item, content = preloaded
            remote = [r.address for r in item.state.pending]
            await self._record(item, await self._deliver_remote(item, remote, content), now)
            return

        def load() -> _Loaded:
            # One thread hop for the common case (see the module docstring). LocalDelivery
            # is made here too, and only when a local recipient needs it.
            item = self.spool.load(qid)
            if not self._due_now(item, now, force):
                return _Loaded(item, None)
            local: list[str] = []
            remote: list[str] = []
            for r in item.state.pending:
                (local if self._is_local(r.address) else remote).append(r.address)
            small = item.envelope.size <= INLINE_CONTENT
            content = read_content(item) if local or (remote and small) else None
            result = LocalResult()
            if local:
                assert content is not None
                result = self._local().deliver(item.envelope.sender, local, content)
            return _Loaded(item, result, remote, content if small else None)

        try:
            loaded = await trio.to_thread.run_sync(load)
        except FileNotFoundError:
            return  # delivered or deleted meanwhile
        except CorruptQueueFile as exc:
            await trio.to_thread.run_sync(self.spool.quarantine, qid, str(exc))
            return
        item, result, remote = loaded.item, loaded.result, loaded.remote
        if result is None:
            if not item.state.hold:
                self._schedule(item.state.next_attempt, qid)
            return
        if result.dirs_to_sync:
            await self._sync_mailboxes(result)
        outcomes = dict(result.outcomes)
        if remote:
            outcomes.update(await self._deliver_remote(item, remote, loaded.content))
        for rcpt, targets in result.forwards.items():
            if outcomes[rcpt].status is Status.OK:
                await self._forward(item, rcpt, targets)
        await self._record(item, outcomes, now)

    def _take_preload(self, qid: str) -> tuple[Envelope, bytes | None] | None:
        preload = self._preloads.pop(qid, None)
        if preload is not None and preload[1] is not None:
            self._preload_bytes -= len(preload[1])
        return preload

    def _from_preload(self, qid: str) -> tuple[QueueItem, bytes | None] | None:
        """The first attempt's item and content from a session's preload, if it has one and
        every recipient is remote (local ones need the loading hop's LocalDelivery)."""
        preload = self._take_preload(qid)
        if preload is None:
            return None
        envelope, content = preload
        if any(self._is_local(r) for r in envelope.recipients):
            return None
        # What the spool holds right after the commit: the file, and no state file yet.
        item = QueueItem(envelope, QueueState.initial(envelope), str(self.spool.active / qid))
        return item, content if envelope.size <= INLINE_CONTENT else None

    async def _deliver_remote(
        self, item: QueueItem, remote: list[str], content: bytes | None
    ) -> dict[str, Outcome]:
        if self._remote is None:
            waiting = Outcome(Status.TEMP, "4.4.0", "outbound delivery is not available yet")
            return dict.fromkeys(remote, waiting)
        return await self._remote.deliver(item, remote, content)

    @staticmethod
    def _due_now(item: QueueItem, now: float, force: bool) -> bool:
        return not item.state.hold and (force or item.state.next_attempt <= now)

    async def _sync_mailboxes(self, result: LocalResult) -> None:
        """Group-fsync the new/ dirs written; if that fails, no local outcome counts."""
        try:
            await self._sync.sync_all(result.dirs_to_sync)
        except OSError as exc:
            failed = Outcome(Status.TEMP, "4.3.0", f"mailbox fsync failed: {exc}", "local")
            result.outcomes = {
                r: failed if o.status is Status.OK else o for r, o in result.outcomes.items()
            }

    async def _forward(self, item: QueueItem, rcpt: str, targets: tuple[str, ...]) -> None:
        def work() -> str:
            content = read_content(item)
            env = self.spool.enqueue(
                item.envelope.sender, targets, content, origin=f"forward qid={item.qid}"
            )
            return env.qid

        new_qid = await trio.to_thread.run_sync(work)
        log.info("qid=%s to=<%s> forwarded as qid=%s to %s", item.qid, rcpt, new_qid, targets)
        self.notify(new_qid)

    async def _record(self, item: QueueItem, outcomes: dict[str, Outcome], now: float) -> None:
        """Apply outcomes, send DSNs owed, then save the state (DSN first: never lost)."""
        env = item.envelope
        state = item.state
        failed: list[Recipient] = []
        for rcpt, outcome in outcomes.items():
            old = next(r for r in state.recipients if r.address == rcpt)
            status = {
                Status.OK: RcptStatus.SENT,
                Status.PERM: RcptStatus.FAILED,
                Status.TEMP: RcptStatus.PENDING,
            }[outcome.status]
            new = replace(
                old,
                status=status,
                attempts=old.attempts + 1,
                dsn=outcome.dsn,
                last_error="" if outcome.status is Status.OK else outcome.reply,
            )
            state = state.with_recipient(new)
            if status is RcptStatus.FAILED:
                failed.append(new)
        state = replace(state, attempts=state.attempts + 1)
        delayed: list[Recipient] = []
        expired: list[Recipient] = []
        if not state.done:
            plan = plan_retry(
                self._retry,
                queued_at=env.arrival,
                now=now,
                attempts=state.attempts,
                warned=state.warned,
            )
            if plan.action is Action.GIVE_UP:
                state, expired = _expire(state)
                failed += expired
            else:
                state = replace(state, next_attempt=plan.next_at)
                if plan.warn:
                    delayed = list(state.pending)
                    state = replace(state, warned=True)
        # One line per recipient and attempt; the attempt that hits the lifetime says bounced.
        gave_up = {r.address: r for r in expired}
        for rcpt, outcome in outcomes.items():
            if rcpt in gave_up:
                outcome = Outcome(Status.PERM, "4.4.7", gave_up[rcpt].last_error, outcome.relay)
            self._log(item, rcpt, outcome, now)
        if failed:
            await self._queue_dsn(item, failed, DsnKind.FAILED)
        if delayed:
            until = env.arrival + self._retry.lifetime
            await self._queue_dsn(item, delayed, DsnKind.DELAYED, until)
        if state.done:
            await self._removals.run(item.qid)
            log.info("qid=%s removed", item.qid)
            return
        await trio.to_thread.run_sync(self.spool.save_state, item.qid, state)
        self._schedule(state.next_attempt, item.qid)

    def _remove_all(self, qids: list[str]) -> None:
        for qid in qids:
            self.spool.remove(qid)

    def _log(self, item: QueueItem, rcpt: str, outcome: Outcome, now: float) -> None:
        log.info(
            "qid=%s to=<%s> relay=%s delay=%.2f dsn=%s status=%s (%s)",
            item.qid,
            rcpt,
            outcome.relay or "none",
            now - item.envelope.arrival,
            outcome.dsn,
            outcome.log_status,
            outcome.reply,
        )

    async def _queue_dsn(
        self,
        item: QueueItem,
        recipients: list[Recipient],
        kind: DsnKind,
        retry_until: float | None = None,
    ) -> None:
        qid = await trio.to_thread.run_sync(
            lambda: queue_dsn(
                self.spool, self._hostname, item, recipients, kind, retry_until=retry_until
            )
        )
        if qid is not None:
            self.notify(qid)


class _Batched:
    """Runs `work` in a worker thread over items submitted by many tasks, one hop per batch.

    The items submitted while a batch runs form the next batch; whoever holds the lock runs
    the batch that is open then. The open batch is only swapped under the lock, so a task
    that gets the lock finds its own batch either done or still open, and `run` returns
    once `work` has been called with its item. `work` must not raise (its errors are its own
    to log), since one item's failure must not be another's.
    """

    def __init__(self, work: Callable[[list[str]], None]) -> None:
        self._work = work
        self._open: list[str] = []
        self._lock = trio.Lock()

    async def run(self, item: str) -> None:
        batch = self._open
        batch.append(item)
        async with self._lock:
            if batch is self._open:
                self._open = []
                await trio.to_thread.run_sync(self._work, batch)


def _expire(state: QueueState) -> tuple[QueueState, list[Recipient]]:
    """Give up on every pending recipient: the lifetime is over (RFC 3463 4.4.7)."""
    expired = []
    for r in state.pending:
        why = f"delivery time expired; last error: {r.last_error or 'none'}"
        new = replace(r, status=RcptStatus.FAILED, dsn="4.4.7", last_error=why)
        state = state.with_recipient(new)
        expired.append(new)
    return state, expired
