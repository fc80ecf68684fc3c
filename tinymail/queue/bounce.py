"""Bounces: turn failed or delayed recipients into an RFC 3464 DSN queued like any message.

Rules (RFC 5321 6.1, RFC 3464; Postfix's bounce/2bounce):
- A message with a null sender is never bounced. If it is itself a DSN that
  failed, postmaster gets a copy (a "double bounce") with a null sender; a
  failed double bounce is only logged, so no loop can form.
- At most one delayed and one failure DSN per message: the runner records
  `warned` and removes failed recipients from further attempts.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from tinymail.mail.dsn import DsnKind, RecipientStatus, build_dsn
from tinymail.queue.model import QueueItem, Recipient
from tinymail.queue.spool import Spool, read_content

log = logging.getLogger("tinymail.queue")

DOUBLE_BOUNCE = "double-bounce"


def queue_dsn(
    spool: Spool,
    hostname: str,
    item: QueueItem,
    recipients: Sequence[Recipient],
    kind: DsnKind,
    *,
    retry_until: float | None = None,
) -> str | None:
    """Queue a DSN about `recipients` of `item` (blocking); returns its queue ID or None."""
    env = item.envelope
    notify = env.sender
    if not notify:
        if env.dsn_kind in ("", DOUBLE_BOUNCE) or kind is DsnKind.DELAYED:
            log.info("qid=%s null sender: no DSN for %d recipients", env.qid, len(recipients))
            return None
        notify = "postmaster"
    statuses = [
        RecipientStatus(
            recipient=r.address,
            status=r.dsn or ("5.0.0" if kind is DsnKind.FAILED else "4.0.0"),
            diagnostic=r.last_error,
            remote_mta="",
        )
        for r in recipients
    ]
    now = datetime.now(UTC)
    dsn = build_dsn(
        kind=kind,
        hostname=hostname,
        qid=env.qid,
        sender=notify,
        original=read_content(item),
        recipients=statuses,
        arrival=datetime.fromtimestamp(env.arrival, UTC),
        now=now,
        retry_until=datetime.fromtimestamp(retry_until, UTC) if retry_until else None,
    )
    if dsn is None:
        return None
    dsn_kind = DOUBLE_BOUNCE if not env.sender else kind.value
    queued = spool.enqueue(
        dsn.sender, (dsn.recipient,), dsn.content, origin=f"dsn qid={env.qid}", dsn_kind=dsn_kind
    )
    log.info("qid=%s %s DSN to <%s> queued as qid=%s", env.qid, kind.value, notify, queued.qid)
    return queued.qid
