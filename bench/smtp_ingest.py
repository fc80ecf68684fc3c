#!/usr/bin/env python3
"""SMTP ingest benchmark for tinymail alone (no peers): run it as `python3 bench/smtp_ingest.py`.

Starts `tinymail serve` on a private data dir, sends N messages (default 2,000,
~5 KB median, mixed sizes) over C concurrent connections (default 16), one
message per connection, with 1 and then 10 recipients, and prints:
accepted msgs/s, delivered msgs/s (all files in the Maildirs), server CPU ms
per message, and PSS per held SMTP connection (200 idle connections after EHLO).
For the side-by-side comparison with Postfix and aiosmtpd, use ../shared/bench.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LISTEN = re.compile(r"listening service=smtp address=[\d.]+:(\d+)")


def corpus(count: int, seed: int = 1) -> list[bytes]:
    """Deterministic messages: log-normal sizes around 5 KiB, clipped to 1-200 KiB."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        size = int(min(200 * 1024, max(1024, rng.lognormvariate(8.55, 1.1))))
        line = b"The quick brown fox jumps over the lazy dog %d.\r\n" % i
        body = (line * (size // len(line) + 1))[:size]
        body = body[: body.rfind(b"\r\n") + 2]
        head = b"From: bench@example.net\r\nTo: user01@bench.test\r\nSubject: bench %d\r\n" % i
        out.append(head + b"Message-ID: <%d@bench>\r\n\r\n" % i + body)
    return out


async def send(port: int, rcpts: list[bytes], message: bytes) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def reply() -> bytes:
        while True:
            line = await reader.readline()
            if line[3:4] != b"-":
                return line

    await reply()
    writer.write(b"EHLO bench.example.net\r\n")
    await reply()
    writer.write(b"MAIL FROM:<bench@example.net>\r\n")
    await reply()
    for r in rcpts:
        writer.write(b"RCPT TO:<" + r + b">\r\n")
        await reply()
    writer.write(b"DATA\r\n")
    await reply()
    writer.write(message.replace(b"\r\n.", b"\r\n..") + b".\r\n")
    final = await reply()
    done = time.monotonic()
    writer.write(b"QUIT\r\n")
    await reply()
    writer.close()
    if not final.startswith(b"250"):
        raise RuntimeError(f"not accepted: {final!r}")
    return done


async def load(port: int, messages: list[bytes], rcpts: list[bytes], concurrency: int) -> float:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for m in messages:
        queue.put_nowait(m)
    last = 0.0

    async def worker() -> None:
        nonlocal last
        while not queue.empty():
            msg = queue.get_nowait()
            last = max(last, await send(port, rcpts, msg))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return last


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def count_files(dirs: list[Path]) -> int:
    total = 0
    for d in dirs:
        with contextlib.suppress(FileNotFoundError):
            total += len(os.listdir(d))
    return total


async def hold_connections(port: int, n: int) -> list[asyncio.StreamWriter]:
    writers = []
    for _ in range(n):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await reader.readline()
        writer.write(b"EHLO idle.example.net\r\n")
        while (await reader.readline())[3:4] == b"-":
            pass
        writers.append(writer)
    return writers


def run(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="tinymail-bench-"))
    conf = work / "tinymail.toml"
    conf.write_text(
        f'hostname = "mx.bench.test"\ndomains = ["bench.test"]\ndata_dir = "{work / "data"}"\n'
        '[listen]\nsmtp = ["127.0.0.1:0"]\nsubmission = []\nimap = []\npop3 = []\n'
    )
    cmd = args.cmd.split() if args.cmd else [sys.executable, "-m", "tinymail"]
    users = [f"user{i:02d}@bench.test" for i in range(1, 11)]
    for u in users:
        subprocess.run(
            [*cmd, "-c", str(conf), "user", "add", u, "--password-stdin"],
            input=b"pw\n",
            check=True,
            capture_output=True,
        )
    with open(work / "serve.log", "w+b") as log:
        server = subprocess.Popen([*cmd, "-c", str(conf), "serve"], stdout=log, stderr=log)
    try:
        port = 0
        for _ in range(400):
            m = LISTEN.search((work / "serve.log").read_text())
            if m:
                port = int(m.group(1))
                break
            time.sleep(0.05)
        if not port:
            raise SystemExit("server did not start:\n" + (work / "serve.log").read_text())
        messages = corpus(args.count)
        print(
            f"tinymail SMTP ingest: {args.count} msgs, {args.concurrency} connections, "
            f"median {sorted(map(len, messages))[len(messages) // 2]} bytes"
        )
        print(
            f"{'rcpts':>5} {'accepted/s':>11} {'delivered/s':>12} {'deliveries/s':>13} "
            f"{'CPU ms/msg':>11}"
        )
        maildirs = [work / "data" / "mail" / u / "new" for u in users]
        for nrcpt in (1, 10):
            rcpts = [u.encode() for u in users[:nrcpt]]
            before_files = count_files(maildirs[:nrcpt])
            cpu0 = cpu_seconds(server.pid)
            start = time.monotonic()
            last_accept = asyncio.run(load(port, messages, rcpts, args.concurrency))
            want = before_files + args.count * nrcpt
            deadline = time.monotonic() + 300
            while count_files(maildirs[:nrcpt]) < want and time.monotonic() < deadline:
                time.sleep(0.005)
            delivered = time.monotonic()
            cpu = cpu_seconds(server.pid) - cpu0
            acc_rate = args.count / (last_accept - start)
            del_rate = args.count / (delivered - start)
            print(
                f"{nrcpt:>5} {acc_rate:>11.0f} {del_rate:>12.0f} {del_rate * nrcpt:>13.0f} "
                f"{cpu * 1000 / args.count:>11.2f}"
            )

        async def memory() -> tuple[int, int]:
            base = pss_kb(server.pid)
            writers = await hold_connections(port, args.idle)
            await asyncio.sleep(1)
            held = pss_kb(server.pid)
            for w in writers:
                w.close()
            return base, held

        base, held = asyncio.run(memory())
        print(
            f"PSS idle {base} kB; with {args.idle} idle SMTP connections {held} kB: "
            f"{(held - base) / args.idle:.1f} kB per connection"
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--idle", type=int, default=200, help="connections held for the PSS figure")
    p.add_argument("--cmd", default="", help='tinymail command, e.g. "python3 dist/tinymail.pyz"')
    p.add_argument("--keep", action="store_true", help="keep the work dir")
    run(p.parse_args())


if __name__ == "__main__":
    main()
