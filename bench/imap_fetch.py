"""Cold FETCH 1:* and 200 BODY.PEEK[] on a fresh copy of the corpus Maildir (I1's fetch steps).

The shared harness's I1 (/work/shared/bench, README "Workloads") runs LOGIN, SELECT, then
`FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE)` and 200 random
`UID FETCH n BODY.PEEK[]` on a freshly copied 10,000-message Maildir with no server index.
This script repeats just those steps against tinymail alone, each rep on a new copy and a newly
started server, and can save the whole FETCH 1:* response (every byte) for a before/after
comparison:

  python3 bench/imap_fetch.py [--reps 3] [--save /tmp/fetch.out] [--maildir PATH]

The server is `$TINYMAIL_CMD -c CONF serve` (default: this checkout's package, run by
the interpreter running this script). Take timings under the shared lock
(`flock -x /tmp/bench.lock ...`): the host is shared.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(os.environ.get("TMBENCH_DIR", "/work/shared/bench"))
sys.path.insert(0, str(SHARED))

from tmbench import imapclient  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
USER = "user01@bench.test"
PASSWORD = "pw-user01"
PORT = 31843
FETCH_ALL = b"FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE)"


def config(data: Path) -> str:
    return f"""hostname = "mx.bench.test"
domains = ["bench.test"]
data_dir = "{data}"

[listen]
smtp = ["127.0.0.1:{PORT + 1}"]
submission = []
submissions = []
imap = ["127.0.0.1:{PORT}"]
imaps = []
pop3 = []
pop3s = []

[users]
file = "users"

[store]
format = "maildir"

[dns]
nameservers = ["127.0.0.1:30053"]
"""


def command() -> list[str]:
    env = os.environ.get("TINYMAIL_CMD")
    return env.split() if env else [sys.executable, "-m", "tinymail"]


def raw_command(conn: imapclient.IMAPConn, text: bytes) -> tuple[bytes, float]:
    """Send one command and collect every byte up to its tagged completion."""
    conn.n += 1
    tag = b"A%04d" % conn.n
    t0 = time.monotonic()
    conn.sock.sendall(tag + b" " + text + b"\r\n")
    out = bytearray()
    while True:
        line = conn._line()
        out += line
        m = imapclient._LIT.search(line)
        if m:
            k = int(m.group(1))
            while len(conn.buf) < k:
                conn._fill()
            out += conn.buf[:k]
            del conn.buf[:k]
            continue
        if line.startswith(tag + b" "):
            if not line[len(tag) + 1 :].startswith(b"OK"):
                raise RuntimeError(line.decode(errors="replace"))
            return bytes(out[: -len(line)]), time.monotonic() - t0


def one_rep(maildir: Path, save: Path | None, seed: int) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="imf-", dir="/tmp"))
    try:
        data = work / "data"
        data.mkdir()
        cfg = work / "tinymail.toml"
        cfg.write_text(config(data))
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        subprocess.run(
            [*command(), "-c", str(cfg), "check"], check=True, env=env, capture_output=True
        )
        subprocess.run(
            [*command(), "-c", str(cfg), "user", "add", USER, "--password-stdin"],
            input=PASSWORD + "\n",
            text=True,
            check=True,
            env=env,
            capture_output=True,
        )
        shutil.copytree(maildir, data / "mail" / USER, symlinks=True)
        log = open(work / "serve.log", "w")  # noqa: SIM115 - open for the server's lifetime
        proc = subprocess.Popen(
            [*command(), "-c", str(cfg), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", PORT), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError((work / "serve.log").read_text()) from None
                    time.sleep(0.05)
            conn = imapclient.IMAPConn("127.0.0.1", PORT)
            out: dict[str, float] = {}
            _, out["login"] = raw_command(conn, f'LOGIN "{USER}" "{PASSWORD}"'.encode())
            _, out["select"] = raw_command(conn, b"SELECT INBOX")
            c0 = time.process_time()
            body, out["fetch_all"] = raw_command(conn, FETCH_ALL)
            out["client_cpu"] = time.process_time() - c0
            if save is not None:
                save.write_bytes(body)
            uids = [int(x) for x in imapclient._UID.findall(body)]
            pick = random.Random(seed).sample(uids, min(200, len(uids)))
            t0 = time.monotonic()
            for u in pick:
                raw_command(conn, b"UID FETCH %d BODY.PEEK[]" % u)
            out["fetch_body_200"] = time.monotonic() - t0
            _, out["fetch_all_warm"] = raw_command(conn, FETCH_ALL)
            raw_command(conn, b"LOGOUT")
            conn.close()
            return out
        finally:
            proc.terminate()
            proc.wait(20)
    finally:
        if os.environ.get("IMAP_FETCH_LOG"):
            shutil.copy(work / "serve.log", os.environ["IMAP_FETCH_LOG"])
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--maildir", type=Path, default=Path("/tmp/tmbench/cache/maildir-10000-s2"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--save", type=Path, help="write the whole cold FETCH 1:* response here")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    runs = []
    for rep in range(args.reps):
        r = one_rep(args.maildir, args.save if rep == 0 else None, args.seed + rep)
        runs.append(r)
        print(" ".join(f"{k}={v * 1e3:.0f}ms" for k, v in r.items()), flush=True)
    for key in runs[0]:
        vals = [r[key] * 1e3 for r in runs]
        print(
            f"{key:16s} median {statistics.median(vals):7.1f} ms  [{min(vals):.1f}-{max(vals):.1f}]"
        )


if __name__ == "__main__":
    main()
