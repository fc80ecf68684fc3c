"""Delivery without a daemon: a detached one-shot run of the queue, as dma does.

Theory:
- `sendmail` queues durably, then, when no daemon answers on the control socket, starts this
  module in a new session with stdio on /dev/null (`spawn`) and exits at once.
- Exactly one deliverer per queue: the one-shot run holds queue/runner.lock (runlock.py). If
  the daemon holds it, the run only nudges the daemon and exits; if another one-shot run holds
  it, this one waits, then looks again (the other run may have delivered everything already).
- Before importing trio (about 200 ms) the run checks whether anything is due; usually the
  previous run already picked the new message up, so most runs end here.
- The run drives the daemon's own QueueRunner (same routing, same local and remote delivery)
  until every message that was due has had its attempt, then exits. Messages queued while it
  runs are picked up too. Deferred messages wait for the next run: `sendmail -q` from cron or
  a running daemon retries them.
"""

from __future__ import annotations

import os
import sys
import time

from tinymail.control_client import request
from tinymail.proto import control_wire as control

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: sendmail imports this module for `spawn`
if TYPE_CHECKING:
    from tinymail.config import Config
    from tinymail.queue.spool import Spool

RUN_LIMIT = 3600.0  # a one-shot run never lives longer than this
IDLE_EXIT = 2.0  # seconds of an idle runner after which the run ends anyway
_POLL = 0.05
_BOOT = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from tinymail.queue.oneshot import main; sys.exit(main(sys.argv[2:]))"
)


def spawn(config_path: str, qid: str) -> None:
    """Start a detached one-shot delivery run and return at once (no trio, no subprocess)."""
    import tinymail

    root = os.path.dirname(os.path.dirname(os.path.abspath(tinymail.__file__)))
    python = sys.executable or "python3"
    devnull = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_RDWR, 0) for fd in (0, 1, 2)]
    os.posix_spawn(
        python,
        [python, "-c", _BOOT, root, config_path, qid],
        os.environ,
        setsid=True,  # its own session: the caller's terminal or cron job can end
        file_actions=devnull,
    )


def main(argv: list[str]) -> int:
    """Entry point of the detached run: argv = [config path or "", queue ID or ""]."""
    from pathlib import Path

    from tinymail.config import load_config

    config_path, qid = [*argv, "", ""][:2]
    cfg = load_config(Path(config_path) if config_path else None)
    return run_once(cfg, nudge_qid=qid or None, force=False)


def run_once(cfg: Config, *, nudge_qid: str | None = None, force: bool = False) -> int:
    """Deliver what is due (everything with `force`) unless a daemon does it; returns 0.

    When the daemon holds the runner lock it is asked instead (NUDGE, or FLUSH with force).
    """
    from tinymail.queue.runlock import RunnerLock
    from tinymail.queue.spool import Spool

    spool = Spool(cfg.queue_dir).create()
    with RunnerLock(cfg.queue_dir) as lock:
        if not lock.try_acquire():
            payload = control.flush() if force else control.nudge(nudge_qid or "")
            if (force or nudge_qid) and request(cfg.data_dir, payload) is not None:
                return 0  # the daemon delivers
            lock.acquire()  # another one-shot run (or a daemon not listening yet): wait
        start = time.time()
        if not force and not _due_qids(spool, start):
            return 0
        import trio

        trio.run(_deliver, cfg, start, force)
    return 0


def _due_qids(spool: Spool, now: float) -> dict[str, float]:
    """Queue IDs not on hold whose next attempt is due, with their next-attempt time."""
    due: dict[str, float] = {}
    for qid in spool.scan():
        state = spool.load_state(qid)
        if state is None:
            due[qid] = 0.0
        elif not state.hold and state.next_attempt <= now:
            due[qid] = state.next_attempt
    return due


def _untried(spool: Spool, start: float, snapshot: dict[str, float]) -> tuple[bool, list[str]]:
    """(whether a message of `snapshot` still waits for its attempt, new due IDs)."""
    waiting = False
    new: list[str] = []
    for qid in spool.scan():
        state = spool.load_state(qid)
        if state is not None and state.hold:
            continue
        next_attempt = state.next_attempt if state is not None else 0.0
        if qid in snapshot:
            # Every attempt rewrites next_attempt (or removes the message): unchanged = untried.
            waiting = waiting or next_attempt == snapshot[qid]
        elif next_attempt <= start:
            new.append(qid)
    return waiting, new


async def _deliver(cfg: Config, start: float, force: bool) -> None:
    import math

    import trio

    from tinymail.net.serve import build_state

    state = build_state(cfg)
    spool, runner = state.spool, state.runner
    snapshot = _due_qids(spool, math.inf if force else start)
    async with trio.open_nursery() as nursery:
        await nursery.start(runner.run)  # it scans the spool and starts what is due
        if force:
            await runner.flush()
        idle_since: float | None = None
        with trio.move_on_after(RUN_LIMIT):
            while True:
                await trio.sleep(_POLL)
                waiting, new = await trio.to_thread.run_sync(_untried, spool, start, snapshot)
                for qid in new:  # queued while we run, e.g. by a sendmail that found us busy
                    snapshot[qid] = 0.0
                    runner.notify(qid)
                if not waiting and not new:
                    break
                idle = runner.idle.is_set()
                idle_since = (idle_since or time.monotonic()) if idle else None
                if idle_since is not None and time.monotonic() - idle_since > IDLE_EXIT:
                    break  # an attempt failed internally; the runner logged it
        nursery.cancel_scope.cancel()
