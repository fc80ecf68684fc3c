"""`mailq` / `tinymail queue list|show|delete|hold|release`: the queue as an admin sees it.

Listing and showing only read. `change` (delete, hold, release) writes the spool, so its caller
must be the one deliverer of the queue or have excluded it: the daemon's runner calls it between
attempts on that message, the CLI without a daemon calls it holding queue/runner.lock.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

from tinymail.proto.control import QueueAction, valid_qid
from tinymail.queue.model import QueueState, RcptStatus
from tinymail.queue.spool import CorruptQueueFile, Spool

log = logging.getLogger("tinymail.queue")


def format_queue(queue_dir: Path) -> str:
    """Postfix-style listing; "Mail queue is empty" when there is nothing."""
    spool = Spool(queue_dir)
    rows: list[str] = []
    total_size = 0
    count = 0
    for qid in spool.scan(sweep=False):
        try:
            item = spool.load(qid)
        except (FileNotFoundError, CorruptQueueFile):
            continue
        env, state = item.envelope, item.state
        count += 1
        total_size += env.size
        mark = "!" if state.hold else " "
        arrival = time.strftime("%a %b %d %H:%M:%S", time.localtime(env.arrival))
        rows.append(f"{qid + mark:<16} {env.size:>8} {arrival}  {env.sender or 'MAILER-DAEMON'}")
        for rcpt in state.recipients:
            if rcpt.status is not RcptStatus.PENDING:
                continue
            if rcpt.last_error:
                rows.append(f"{'':<45}({rcpt.last_error[:70]})")
            rows.append(f"{'':<45}{rcpt.address}")
        rows.append("")
    if not count:
        return "Mail queue is empty\n"
    header = "-Queue ID-       --Size-- ----Arrival Time---- -Sender/Recipient-------"
    kbytes = (total_size + 1023) // 1024
    footer = f"-- {kbytes} Kbytes in {count} Request{'s' if count != 1 else ''}."
    return "\n".join([header, *rows, footer]) + "\n"


def show_item(queue_dir: Path, qid: str) -> str:
    """Envelope, per-recipient status and headers of one queued message."""
    spool = Spool(queue_dir)
    try:
        item = spool.load(qid)
    except (FileNotFoundError, CorruptQueueFile, OSError):
        raise LookupError(qid) from None
    env, state = item.envelope, item.state
    lines = [
        f"queue_id: {qid}",
        f"arrival: {time.strftime('%Y-%m-%d %H:%M:%S %z', time.localtime(env.arrival))}",
        f"sender: <{env.sender}>",
        f"size: {env.size}",
        f"origin: {env.origin}",
        f"hold: {'yes' if state.hold else 'no'}",
        f"attempts: {state.attempts}",
    ]
    if state.next_attempt:
        due = time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(state.next_attempt))
        lines.append(f"next_attempt: {due}")
    for r in state.recipients:
        err = f" ({r.last_error})" if r.last_error else ""
        lines.append(f"recipient: <{r.address}> {r.status.value} {r.dsn}{err}".rstrip())
    with open(item.path, "rb") as f:
        head = f.read(min(env.size, 64 * 1024))
    header_block = head.split(b"\n\n", 1)[0].decode("utf-8", "replace")
    return "\n".join(lines) + "\n\n" + header_block + "\n"


def change(spool: Spool, qid: str, action: QueueAction) -> QueueState | None:
    """Delete, hold or release `qid` (blocking); the new state, None once deleted.

    DELETE removes the message without a DSN (as `postsuper -d`). HOLD keeps it out of delivery;
    RELEASE clears that, keeping its retry schedule (due at once when its next attempt passed).
    Raises LookupError when `qid` is not a queued message (a corrupt file is left to the runner).
    """
    if not valid_qid(qid):  # a spool file name: never a path
        raise LookupError(qid)
    try:
        item = spool.load(qid)
    except (FileNotFoundError, CorruptQueueFile):
        raise LookupError(qid) from None
    if action is QueueAction.DELETE:
        spool.remove(qid, durable=True)
        log.info("qid=%s removed by the administrator (queue delete, no DSN)", qid)
        return None
    state = replace(item.state, hold=action is QueueAction.HOLD)
    if state != item.state:
        spool.save_state(qid, state)
    log.info("qid=%s %s by the administrator", qid, "held" if state.hold else "released")
    return state
