"""`mailq` / `tinymail queue list|show`: the queue as Postfix's mailq shows it."""

from __future__ import annotations

import time
from pathlib import Path

from tinymail.queue.model import RcptStatus
from tinymail.queue.spool import CorruptQueueFile, Spool


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
