"""The daemon's trigger FIFO (data_dir/run/trigger): queue IDs to deliver now, from sendmail.

The format is tinymail.proto.trigger; this adapter only moves bytes.
Theory:
- Mode 0600, owned by the daemon's user (created after the privilege drop): only the queue's
  owner and root write the queue themselves, and only they trigger; every other caller hands
  its message over the control socket, which nudges the runner itself.
- The daemon also holds a write descriptor of its own, so the reader never sees end-of-file
  when the last writer closes. A writer that finds no reader (ENXIO) knows no daemon runs and
  starts a one-shot delivery run instead.
- A FIFO left by a killed daemon is replaced at start. A line written while the daemon is
  stopping may go unread; the message stays queued and the next start's spool scan finds it.
"""

from __future__ import annotations

import contextlib
import os

import trio

from tinymail.control_client import trigger_path
from tinymail.net.context import ServerState
from tinymail.proto.trigger import TriggerParser


async def serve_trigger(
    state: ServerState, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Read the trigger FIFO until cancelled; `started()` once writers can reach it."""
    path = trigger_path(state.config.data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    os.mkfifo(path, 0o600)
    os.chmod(path, 0o600)  # whatever the umask
    flags = os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC
    parser = TriggerParser()
    # FdStream owns the reader from here; the keeper can only be opened once a reader exists.
    async with trio.lowlevel.FdStream(os.open(path, os.O_RDONLY | flags)) as stream:
        keeper = os.open(path, os.O_WRONLY | flags)
        try:
            task_status.started()
            while chunk := await stream.receive_some(4096):
                for qid in parser.receive(chunk):
                    state.runner.notify(qid)
        finally:
            # Unlinked first: from here a writer finds no FIFO and starts a one-shot run,
            # which waits for this daemon's runner lock and then delivers.
            with contextlib.suppress(OSError):
                path.unlink()
            os.close(keeper)
