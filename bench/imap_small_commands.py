"""Round trips of small IMAP commands, tinymail next to Dovecot, with and without CPU pinning.

The shared harness's I1 times LOGOUT right after `STORE 1:1000 +FLAGS (\\Seen)` and 200 single
`UID FETCH n BODY.PEEK[]`: steps of a fraction of a millisecond, where client and server
share this host's two CPUs. This script times such commands one by one, many times, on the
same servers as bench/store_sessions.py (Dovecot with {PLAIN} users, tinymail with the same
users file lines), on the harness's 10,000-message corpus Maildir:

  logout after SELECT / after a 1,000-message STORE / after NOOP   (30 sessions each)
  NOOP, UID FETCH <random> (FLAGS), UID FETCH <random> BODY.PEEK[] (200 each, one session)

With --pin the servers run on CPU 0 (taskset on the daemon; Dovecot's per-connection
processes inherit it) and this client on CPU 1, so a reply never waits for the CPU the
server is still using: what is left is the servers' own time per command.

Prints median [min-p90] ms per metric. Run as root, under the shared lock:
  TINYMAIL_CMD=/path/to/venv/bin/tinymail flock -x /tmp/bench.lock \\
      python3 bench/imap_small_commands.py [--pin]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

from store_sessions import Ctx, DovecotStore, TinymailStore, corpus_maildir
from tmbench import imapclient
from tmbench.targets import HOST, USERS, password

SESSIONS = 30
COMMANDS = 200


def timed(conn: imapclient.IMAPConn, command: str) -> float:
    """One command's round trip in ms."""
    start = time.perf_counter()
    conn.cmd(command)
    return (time.perf_counter() - start) * 1e3


def logged_in(port: int) -> imapclient.IMAPConn:
    """A session of the corpus user with INBOX selected."""
    user = USERS[0]
    conn = imapclient.IMAPConn(HOST, port)
    conn.cmd(f'LOGIN "{user}" "{password(user)}"')
    conn.cmd("SELECT INBOX")
    return conn


def measure(port: int, count: int, rng: random.Random) -> dict[str, list[float]]:
    """Every metric's samples against the server on `port`."""
    out: dict[str, list[float]] = {}
    conn = logged_in(port)  # the first SELECT (index, UIDs) is not what this measures
    conn.cmd("FETCH 1:* (UID RFC822.SIZE)")
    conn.close()
    for i in range(SESSIONS):
        for before in ("SELECT", "STORE", "NOOP"):
            conn = logged_in(port)
            if before == "STORE":
                first = 1 + 1000 * (i % (count // 1000))
                conn.cmd(f"STORE {first}:{first + 999} {'+-'[i % 2]}FLAGS (\\Seen)")
            elif before == "NOOP":
                conn.cmd("NOOP")
            out.setdefault(f"logout after {before}", []).append(timed(conn, "LOGOUT"))
            conn.close()
    conn = logged_in(port)
    for _ in range(COMMANDS):
        out.setdefault("NOOP", []).append(timed(conn, "NOOP"))
        uid = rng.randint(1, count)
        out.setdefault("UID FETCH (FLAGS)", []).append(timed(conn, f"UID FETCH {uid} (FLAGS)"))
        body = f"UID FETCH {rng.randint(1, count)} BODY.PEEK[]"
        out.setdefault("UID FETCH BODY.PEEK[]", []).append(timed(conn, body))
    conn.close()
    return out


def pin(pids: list[int], cpu: int) -> None:
    """Move the processes (all their threads) to one CPU; their children inherit it."""
    for pid in pids:
        subprocess.run(
            ["taskset", "-a", "-p", "-c", str(cpu), str(pid)], check=True, capture_output=True
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pin", action="store_true", help="servers on CPU 0, this client on CPU 1")
    ap.add_argument("--cache", default="/tmp/tmbench/cache")
    a = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("run as root (daemons, chown, private mount namespace)", file=sys.stderr)
        return 2
    count = 10_000
    source, _info = corpus_maildir(Path(a.cache), count, 2)
    if a.pin:
        os.sched_setaffinity(0, {1})
    workroot = Path(f"/tmp/tmbench/runs/small-{time.strftime('%Y%m%d-%H%M%S')}")
    workroot.mkdir(parents=True)
    ctx = Ctx(workroot)
    targets = [
        DovecotStore(workroot / "dovecot", ctx, "maildir", source),
        TinymailStore(workroot / "tinymail", ctx, "maildir", source, plain_users=True),
    ]
    results = {}
    for target in targets:
        target.prepare(USERS[:2])
        target.start()
        try:
            if a.pin:
                pin(target.pids(), 0)
            results[target.name] = measure(target.imap_port, count, random.Random(1))
        finally:
            target.stop()
    names = list(results)
    print(f"\n### small IMAP commands, {'pinned' if a.pin else 'not pinned'} (ms)\n")
    print("| command | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for metric in results[names[0]]:
        cells = []
        for name in names:
            values = results[name][metric]
            p90 = statistics.quantiles(values, n=10)[-1]
            cells.append(f"{statistics.median(values):.3f} [{min(values):.3f}-{p90:.3f}]")
        print(f"| {metric} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
