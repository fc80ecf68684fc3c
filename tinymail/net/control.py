"""The daemon's local control socket (data_dir/run/control.sock): nudge, flush, submit, and the
administrator's delete, hold and release.

The protocol is tinymail.proto.control; this adapter only moves bytes and acts on requests.
Theory:
- The socket is mode 0666 in a 0755 run/ directory (data_dir gets search permission): every
  local user may connect, as every local user may run sendmail. Who the caller is comes only
  from SO_PEERCRED (the kernel's record of the connecting process), never from the request.
- SUBMIT (a caller that cannot write the queue) is queued by the daemon with the envelope
  sender <account@hostname> of the peer's uid and a Received field naming that uid, like
  Postfix's pickup; the message is acknowledged only after Spool.enqueue returned (fsynced).
- DELETE, HOLD and RELEASE change the queue, so only root and the daemon's own user (the
  queue's owner, who could edit the spool anyway) may send them; others get EX_NOPERM.
- Each connection gets a deadline for its request; one misbehaving client cannot hold the
  daemon. A queue change is then applied without that deadline: it waits for the attempt in
  flight on its message (bounded by the SMTP timeouts), and a client that stopped waiting does
  not undo it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import socket
import struct
import time
from functools import partial
from pathlib import Path

import trio

from tinymail.control_client import bindable, socket_path
from tinymail.mail.compose import ComposeError, qualify, received_by, rfc5322_date
from tinymail.net.context import ServerState
from tinymail.proto import control
from tinymail.queue.runlock import RunnerLock

log = logging.getLogger("tinymail.control")

CLIENT_TIMEOUT = 60.0
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


async def hold_runner_lock(
    queue_dir: Path, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Take queue/runner.lock (waiting in a thread while a one-shot run delivers), hold it
    until cancelled; `started()` once it is held."""
    with RunnerLock(queue_dir) as lock:
        await trio.to_thread.run_sync(lock.acquire, abandon_on_cancel=True)
        task_status.started()
        await trio.sleep_forever()


async def serve_control(
    state: ServerState, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Listen on the control socket until cancelled; `started()` once it accepts."""
    path = socket_path(state.config.data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o755)
    # Other users must reach run/: data_dir gets search permission only (no listing); what
    # lies below keeps its own modes (queue/ and mail/ are 0700, the users file 0600).
    data_mode = os.stat(state.config.data_dir).st_mode
    os.chmod(state.config.data_dir, (data_mode & 0o7777) | 0o011)
    # A socket file left by a killed daemon refuses connections: replace it.
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with bindable(path) as name:
            await sock.bind(name)
        os.chmod(path, 0o666)
        sock.listen(64)
        listener = trio.SocketListener(sock)
    except BaseException:
        sock.close()
        raise
    log.info("control socket listening path=%s", path)
    try:
        async with trio.open_nursery() as nursery:
            task_status.started()
            await trio.serve_listeners(partial(_handle, state), [listener], handler_nursery=nursery)
    finally:
        with contextlib.suppress(OSError):
            path.unlink()


async def _handle(state: ServerState, stream: trio.SocketStream) -> None:
    reply = control.Reply(False, control.EX_TEMPFAIL, "internal error")
    try:
        request: control.Request | None = None
        with trio.move_on_after(CLIENT_TIMEOUT):
            request = await _read_request(state, stream)
            if not isinstance(request, control.Change):
                reply = await _act(state, stream, request)
                await stream.send_all(control.encode_reply(reply))
        if isinstance(request, control.Change):
            reply = await _change(state, stream, request)
            with trio.move_on_after(CLIENT_TIMEOUT):
                await stream.send_all(control.encode_reply(reply))
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    except Exception:
        log.exception("control request failed")
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await stream.send_all(control.encode_reply(reply))
    finally:
        await stream.aclose()


async def _read_request(state: ServerState, stream: trio.SocketStream) -> control.Request:
    smtp = state.config.smtp
    parser = control.RequestParser(
        max_size=smtp.max_message_size, max_recipients=smtp.max_recipients
    )
    while isinstance(event := parser.next_event(), control.NeedData):
        parser.receive_data(await stream.receive_some(65536))
    return event


async def _act(
    state: ServerState, stream: trio.SocketStream, request: control.Request
) -> control.Reply:
    if isinstance(request, control.Refused):
        return control.Reply(False, request.status, request.text)
    if isinstance(request, control.Nudge):
        state.runner.notify(request.qid)
        return control.Reply(True, 0, "")
    if isinstance(request, control.Flush):
        if request.qid is None:
            await state.runner.flush()
        else:
            state.runner.notify(request.qid, force=True)
        return control.Reply(True, 0, "")
    if isinstance(request, control.Change):
        return await _change(state, stream, request)
    return await _submit(state, stream, request)


async def _change(
    state: ServerState, stream: trio.SocketStream, request: control.Change
) -> control.Reply:
    _pid, uid, _gid = _peer(stream)
    if uid not in (0, os.geteuid()):
        log.warning("control: %s qid=%s refused for uid=%d", request.action.value, request.qid, uid)
        return control.Reply(False, control.EX_NOPERM, "only root or the queue owner may do that")
    try:
        new = await state.runner.change(request.qid, request.action)
    except LookupError:
        return control.Reply(False, control.EX_NOUSER, f"no queued message {request.qid}")
    except OSError as exc:
        return control.Reply(False, control.EX_TEMPFAIL, f"cannot change the queue: {exc}")
    log.info("qid=%s control: %s by uid=%d", request.qid, request.action.value.lower(), uid)
    return control.Reply(
        True, 0, "deleted" if new is None else ("held" if new.hold else "released")
    )


def _peer(stream: trio.SocketStream) -> tuple[int, int, int]:
    """(pid, uid, gid) of the connected process, from the kernel (SO_PEERCRED)."""
    creds = stream.socket.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, gid = _UCRED.unpack(creds)
    return pid, uid, gid


async def _submit(
    state: ServerState, stream: trio.SocketStream, request: control.Submit
) -> control.Reply:
    pid, uid, _gid = _peer(stream)
    hostname = state.config.hostname
    try:
        account = pwd.getpwuid(uid).pw_name
    except KeyError:
        log.warning("control: submit refused: uid=%d has no account", uid)
        return control.Reply(False, 67, f"no login name for user ID {uid}")
    try:
        recipients = tuple(qualify(r, hostname) for r in request.recipients)
        sender = qualify(account, hostname)
    except ComposeError as exc:
        return control.Reply(False, control.EX_DATAERR, str(exc))

    def work() -> str:
        msg = state.spool.incoming_message()
        content = received_by(hostname, uid, msg.qid, rfc5322_date(time.time())) + request.content
        origin = f"sendmail uid={uid}"
        return state.spool.enqueue(sender, recipients, content, origin=origin, incoming=msg).qid

    try:
        qid = await trio.to_thread.run_sync(work)
    except OSError as exc:
        log.error("control: submit from uid=%d not queued: %s", uid, exc)
        return control.Reply(False, control.EX_TEMPFAIL, f"cannot write the queue: {exc}")
    log.info(
        "qid=%s from=<%s> size=%d nrcpt=%d proto=sendmail uid=%d pid=%d",
        qid, sender, len(request.content), len(recipients), uid, pid,
    )  # fmt: skip
    state.runner.notify(qid)
    return control.Reply(True, 0, qid)
