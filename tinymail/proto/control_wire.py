"""The control protocol's wire format as the client sees it: request lines and the reply line.

Split from control.py (which re-exports all of it) so that `sendmail`, which nudges the daemon
on its start-up path, imports no `re`, `enum` or dataclasses (bench/sendmail_latency.py).
See control.py for the protocol. Pure: no I/O.
"""

from tinymail.record import Record

MAX_LINE = 2048
EX_USAGE = 64
EX_DATAERR = 65
EX_NOUSER = 67
EX_TEMPFAIL = 75
EX_NOPERM = 77


class Reply(Record):
    """The daemon's answer."""

    __slots__ = ("ok", "status", "text")

    def __init__(self, ok: bool, status: int, text: str) -> None:
        self.ok = ok
        self.status = status  # 0 when ok, else a sysexits code
        self.text = text


def nudge(qid: str) -> bytes:
    """The NUDGE request for a just-queued message."""
    return b"NUDGE " + qid.encode("ascii") + b"\n"


def flush(qid: str | None = None) -> bytes:
    """The FLUSH request (all messages, or one)."""
    return b"FLUSH" + (b" " + qid.encode("ascii") if qid else b"") + b"\n"


def submit(recipients: tuple[str, ...], content: bytes) -> bytes:
    """The SUBMIT request; recipients must be checked addresses (no space, no control)."""
    head = b"SUBMIT\n" + b"".join(b"RCPT " + r.encode("utf-8") + b"\n" for r in recipients)
    return head + b"DATA %d\n" % len(content) + content


def encode_reply(reply: Reply) -> bytes:
    """One reply line; the text is flattened so it can never add a line."""
    text = " ".join(reply.text.split())
    if reply.ok:
        return (f"OK {text}".rstrip() + "\n").encode("utf-8")
    return f"ERR {reply.status} {text}\n".encode()


def parse_reply(line: bytes) -> Reply:
    """Client side: read the daemon's reply line (a malformed one is a temporary failure)."""
    text = line.decode("utf-8", "replace").strip()
    if text == "OK" or text.startswith("OK "):
        return Reply(True, 0, text[3:])
    verb, _, rest = text.partition(" ")
    status, _, why = rest.partition(" ")
    if verb == "ERR" and status.isdigit():
        return Reply(False, int(status), why)
    return Reply(False, EX_TEMPFAIL, f"bad reply from the daemon: {text[:60]!r}")
