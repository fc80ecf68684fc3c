"""Direct local delivery at the end of DATA: the mailbox itself is the durable copy.

When every recipient of a small message is a local mailbox (no forwarding
alias, no relay), the session stores it in the mailboxes (file fsynced, new/
fsynced: group-committed) before answering 250, and skips the queue: half the
fsyncs and none of the spool work. Anything it could not deliver this way goes
through the queue as usual, so nothing is lost and nothing is acknowledged
before it is on disk.
"""

from __future__ import annotations

import logging
import time
from functools import partial

import trio

from tinymail.delivery.courier import Status
from tinymail.delivery.local import LocalDelivery
from tinymail.net.context import ServerState
from tinymail.queue.model import Envelope

log = logging.getLogger("tinymail.queue")


async def deliver_direct(
    state: ServerState, envelope: Envelope, content: bytes, local: LocalDelivery
) -> set[str]:
    """Deliver to the eligible local recipients; return those now durably in their mailbox.

    `local` is the session's view of users and aliases for this transaction.
    """
    eligible = [r for r in envelope.recipients if state.outbound.is_local(r)]
    if not eligible:
        return set()
    result = await trio.to_thread.run_sync(
        partial(local.deliver, envelope.sender, eligible, content, plain_only=True)
    )
    done = {r for r, o in result.outcomes.items() if o.status is Status.OK}
    if not done:
        return set()
    try:
        await state.group_sync.sync_all(result.dirs_to_sync)
    except OSError as exc:
        log.error("qid=%s mailbox fsync failed, queueing instead: %s", envelope.qid, exc)
        return set()
    delay = time.time() - envelope.arrival
    for rcpt in sorted(done):
        log.info(
            "qid=%s to=<%s> relay=local delay=%.2f dsn=2.0.0 status=sent (delivered to mailbox)",
            envelope.qid,
            rcpt,
            delay,
        )
    return done
