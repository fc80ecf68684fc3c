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
- Outcomes land in the state file before anything else happens, so a crash
  repeats a delivery (at-least-once) and never loses one. A message leaves the
  spool only when every recipient is sent or failed-and-bounced.
"""

from __future__ import annotations

import heapq
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import trio

from tinymail.delivery.courier import Outcome, Status
from tinymail.delivery.local import LocalDelivery, LocalResult
from tinymail.delivery.resolve import split_address
from tinymail.queue.groupsync import GroupSync
from tinymail.queue.model import QueueItem, RcptStatus, Recipient
from tinymail.queue.spool import CorruptQueueFile, Spool, read_content

log = logging.getLogger("tinymail.queue")


class RemoteCourier(Protocol):
    """Delivers one message to remote recipients (issue 4 provides the real one)."""

    async def deliver(self, item: QueueItem, recipients: Sequence[str]) -> dict[str, Outcome]: ...


Bouncer = Callable[[QueueItem, Sequence[Recipient], str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    retry_min: float = 300.0
    retry_max: float = 3600.0
    lifetime: float = 5 * 86400.0

    def next_delay(self, attempts: int) -> float:
        """Exponential backoff from retry_min, capped at retry_max."""
        return min(self.retry_max, self.retry_min * 2.0 ** max(0, attempts - 1))


class QueueRunner:
    """Delivers queued messages; see the module docstring."""

    def __init__(
        self,
        spool: Spool,
        local: Callable[[], LocalDelivery],
        *,
        is_local_domain: Callable[[str], bool],
        retry: RetryPolicy = RetryPolicy(),
        remote: RemoteCourier | None = None,
        bounce: Bouncer | None = None,
        concurrency: int = 16,
        group_sync: GroupSync | None = None,
    ):
        self.spool = spool
        self._local = local
        self._is_local_domain = is_local_domain
        self._retry = retry
        self._remote = remote
        self._bounce = bounce
        self._limiter = trio.CapacityLimiter(concurrency)
        self._sync = group_sync or GroupSync()
        self._send, self._recv = trio.open_memory_channel[tuple[str, bool]](math.inf)
        self._due: list[tuple[float, str]] = []
        self._busy: set[str] = set()
        self._again: dict[str, bool] = {}
        self.idle = trio.Event()

    def notify(self, qid: str, *, force: bool = False) -> None:
        """A message was queued (or must be retried now with force=True)."""
        self._send.send_nowait((qid, force))

    async def flush(self) -> None:
        """Retry every queued message now (`tinymail queue flush`, `sendmail -q`)."""
        qids = await trio.to_thread.run_sync(self.spool.scan)
        for qid in qids:
            self.notify(qid, force=True)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve forever: scan the spool, then deliver new and due messages."""
        qids = await trio.to_thread.run_sync(self.spool.scan)
        for qid in qids:
            self.notify(qid)
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                wait = self._due[0][0] - time.time() if self._due else math.inf
                with trio.move_on_after(max(0.0, wait)):
                    qid, force = await self._recv.receive()
                    self._start(nursery, qid, force)
                    continue
                now = time.time()
                while self._due and self._due[0][0] <= now:
                    _, qid = heapq.heappop(self._due)
                    self._start(nursery, qid, False)

    def _start(self, nursery: trio.Nursery, qid: str, force: bool) -> None:
        if qid in self._busy:
            self._again[qid] = self._again.get(qid, False) or force
            return
        self._busy.add(qid)
        self.idle = trio.Event()
        nursery.start_soon(self._run_one, nursery, qid, force)

    async def _run_one(self, nursery: trio.Nursery, qid: str, force: bool) -> None:
        try:
            async with self._limiter:
                await self._process(qid, force)
        except Exception:
            log.exception("qid=%s delivery attempt failed internally; retrying later", qid)
            heapq.heappush(self._due, (time.time() + self._retry.retry_min, qid))
        finally:
            self._busy.discard(qid)
            if qid in self._again:
                self._start(nursery, qid, self._again.pop(qid))
            elif not self._busy:
                self.idle.set()

    async def _process(self, qid: str, force: bool) -> None:
        try:
            item = await trio.to_thread.run_sync(self.spool.load, qid)
        except FileNotFoundError:
            return  # delivered or deleted meanwhile
        except CorruptQueueFile as exc:
            await trio.to_thread.run_sync(self.spool.quarantine, qid, str(exc))
            return
        state = item.state
        if state.hold:
            return
        now = time.time()
        if not force and state.next_attempt > now:
            heapq.heappush(self._due, (state.next_attempt, qid))
            return
        pending = [r.address for r in state.pending]
        local = [a for a in pending if self._is_local(a)]
        remote = [a for a in pending if not self._is_local(a)]
        outcomes: dict[str, Outcome] = {}
        forwards: dict[str, tuple[str, ...]] = {}
        if local:
            result = await self._deliver_local(item, local)
            outcomes.update(result.outcomes)
            forwards = result.forwards
        if remote and self._remote is not None:
            outcomes.update(await self._remote.deliver(item, remote))
        elif remote:
            waiting = Outcome(Status.TEMP, "4.4.0", "outbound delivery is not available yet")
            outcomes.update(dict.fromkeys(remote, waiting))
        for rcpt, targets in forwards.items():
            if outcomes.get(rcpt, Outcome(Status.OK, "", "")).status is Status.OK:
                await self._forward(item, rcpt, targets)
        await self._record(item, outcomes, now)

    def _is_local(self, address: str) -> bool:
        _, domain = split_address(address)
        return not domain or self._is_local_domain(domain)

    async def _deliver_local(self, item: QueueItem, rcpts: list[str]) -> LocalResult:
        delivery = self._local()

        def work() -> LocalResult:
            content = read_content(item)
            return delivery.deliver(item.envelope.sender, rcpts, content)

        result = await trio.to_thread.run_sync(work)
        if result.dirs_to_sync:
            try:
                await self._sync.sync_all(result.dirs_to_sync)
            except OSError as exc:
                failed = Outcome(Status.TEMP, "4.3.0", f"mailbox fsync failed: {exc}", "local")
                result.outcomes = {
                    r: failed if o.status is Status.OK else o for r, o in result.outcomes.items()
                }
        return result

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
        state = item.state
        failed: list[Recipient] = []
        delay = now - item.envelope.arrival
        for rcpt, outcome in outcomes.items():
            old = next(r for r in state.recipients if r.address == rcpt)
            status = {
                Status.OK: RcptStatus.SENT,
                Status.PERM: RcptStatus.FAILED,
                Status.TEMP: RcptStatus.PENDING,
            }[outcome.status]
            if status is RcptStatus.PENDING and now - item.envelope.arrival > self._retry.lifetime:
                status = RcptStatus.FAILED
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
            log.info(
                "qid=%s to=<%s> relay=%s delay=%.2f dsn=%s status=%s (%s)",
                item.qid,
                rcpt,
                outcome.relay or "none",
                delay,
                outcome.dsn,
                "bounced" if status is RcptStatus.FAILED else outcome.log_status,
                outcome.reply,
            )
        if failed:
            await self._send_bounce(item, failed)
        if state.done:
            await trio.to_thread.run_sync(self.spool.remove, item.qid)
            log.info("qid=%s removed", item.qid)
            return
        attempts = state.attempts + 1 if outcomes else state.attempts
        due = now + self._retry.next_delay(max(1, attempts))
        state = replace(state, attempts=attempts, next_attempt=due)
        await trio.to_thread.run_sync(self.spool.save_state, item.qid, state)
        heapq.heappush(self._due, (due, item.qid))

    async def _send_bounce(self, item: QueueItem, failed: list[Recipient]) -> None:
        if item.envelope.sender == "":
            log.info("qid=%s null sender: no bounce for %d recipients", item.qid, len(failed))
            return
        if self._bounce is None:
            log.error("qid=%s cannot bounce: no bounce service configured", item.qid)
            return
        await self._bounce(item, failed, "failed")
