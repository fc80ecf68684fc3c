"""`sendmail -bs`: an SMTP session on stdin/stdout, queueing like plain sendmail.

A blocking adapter around the sans-I/O core (tinymail.proto.smtp.server), the way the trio
adapter in net/smtp_session.py drives it, minus TLS and AUTH (the peer is a local process
that already runs as a local user, as with Postfix's `sendmail -bs`). Each accepted message
goes through the same header completion and durable queueing as `sendmail` (exit-0 promise
becomes the 250 promise), then the daemon is nudged or a one-shot run started.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, BinaryIO

from tinymail.config import Config
from tinymail.mail.compose import ComposeError, qualify
from tinymail.proto.smtp import events as ev
from tinymail.proto.smtp.events import CLOSED, NEED_DATA
from tinymail.proto.smtp.replies import Reply
from tinymail.proto.smtp.server import Limits, ServerConnection
from tinymail.quickconfig import SendmailConfig
from tinymail.sendmail import Prepared, SendmailError, queue_message

if TYPE_CHECKING:
    from tinymail.sendmail import Spawner

OK = Reply(250, "2.0.0", "Ok")
START_DATA = Reply(354, "", "End data with <CR><LF>.<CR><LF>")
_TEMPORARY = (73, 75)


def serve_stdio(cfg: Config, stdin: BinaryIO, stdout: BinaryIO, *, spawn: Spawner | None) -> int:
    """Run one SMTP session on the given streams; returns 0 (errors are SMTP replies)."""
    conn = ServerConnection(
        hostname=cfg.hostname,
        limits=Limits(
            max_message_size=cfg.smtp.max_message_size, max_recipients=cfg.smtp.max_recipients
        ),
    )
    settings = SendmailConfig.from_config(cfg)
    stdout.write(conn.greeting())
    stdout.flush()
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is NEED_DATA:
            _flush(conn, stdout)
            read1 = getattr(stdin, "read1", stdin.read)
            conn.receive_data(read1(65536))
        elif event is CLOSED:
            _flush(conn, stdout)
            return 0
        elif isinstance(event, ev.DataChunk):
            body += event.data
        elif isinstance(event, ev.DataAborted):
            body.clear()
        elif isinstance(event, ev.RcptTo):
            conn.send(_recipient(cfg, event.address))
        elif isinstance(event, ev.DataStart):
            body.clear()
            conn.send(START_DATA)
        elif isinstance(event, ev.DataEnd):
            conn.send(_queue(settings, conn, bytes(body), spawn))
            body.clear()
        elif isinstance(event, ev.MailFrom):
            conn.send(Reply(250, "2.1.0", "Ok"))
        else:  # StartTLS and AUTH are never offered here
            conn.send(Reply(502, "5.5.1", "Command not implemented"))


def _flush(conn: ServerConnection, stdout: BinaryIO) -> None:
    out = conn.data_to_send()
    if out:
        stdout.write(out)
        stdout.flush()


def _recipient(cfg: Config, address: str) -> Reply:
    try:
        qualify(address, cfg.hostname)
    except ComposeError as exc:
        return Reply(501, "5.1.3", f"Bad recipient address syntax: {exc}")
    return Reply(250, "2.1.5", "Ok")


def _queue(
    cfg: SendmailConfig, conn: ServerConnection, content: bytes, spawn: Spawner | None
) -> Reply:
    sender = conn.mail_from or ""
    try:
        recipients = tuple(qualify(r, cfg.hostname) for r in conn.recipients)
        from_sender = qualify(sender, cfg.hostname) if sender else ""
        prepared = Prepared(
            sender=from_sender,
            recipients=recipients,
            message=content.replace(b"\r\n", b"\n"),
            from_address=from_sender or f"MAILER-DAEMON@{cfg.hostname}",
            extract=False,
        )
        qid = queue_message(cfg, prepared, None, spawn=spawn)
    except ComposeError as exc:
        return Reply(554, "5.6.0", f"Message refused: {exc}")
    except SendmailError as exc:
        if exc.status in _TEMPORARY:
            return Reply(451, "4.3.0", f"Not queued: {exc}")
        return Reply(554, "5.6.0", f"Message refused: {exc}")
    return Reply(250, "2.0.0", f"Ok: queued as {qid}")
