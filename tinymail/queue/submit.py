"""Queueing a locally submitted message whose content names its own queue ID (sync).

Like Postfix's pickup, a local submission gets a Received field carrying the queue ID and the
submitting uid, so the ID must be known before the content is final. The content is then
queued with `Spool.enqueue(..., incoming=msg)`, which keeps the ID.
"""

import time


def rfc5322_date(when: float | None = None) -> str:
    """An RFC 5322 3.3 date-time in local time, e.g. "Tue, 24 Nov 2026 18:40:00 +0100".

    Python never calls setlocale() on its own, so %a and %b are the English names.
    """
    return time.strftime("%a, %d %b %Y %H:%M:%S %z", time.localtime(when))


def received_by(hostname: str, uid: int, qid: str, date: str) -> bytes:
    """The Received field of a local submission (Postfix pickup's form, RFC 5321 4.4)."""
    return f"Received: by {hostname} (tinymail, from userid {uid})\n\tid {qid}; {date}\n".encode()
