#!/usr/bin/env python3
"""Outbound relay throughput: tinymail next to Postfix, both relaying to the same loopback sink.

Run it as root (`python3 bench/outbound.py`): N messages (default 2,000, one recipient each) to
20 remote domains dNN.bench.test are injected over SMTP (C concurrent connections, several
messages per connection) into the relay under test, whose [transport] map (Postfix:
transport_maps) sends domain NN to smtp:[127.0.0.(40+NN)]:2626, one sink address per domain, so
each domain is its own destination for both relays. The sink (a small asyncio SMTP server in a
child process, PIPELINING, no TLS) counts connections and messages; it answers every command
that arrived in one read with one write, as a pipelining server does.

Reported per relay: the injection rate, the delivered rate (sink-side count of the N messages,
timed from the first injected message to the last delivered one), sink connections and messages
per connection (connection reuse). Postfix is started as a private instance (its own config,
queue_directory and data_directory under a temp dir, `postfix -c CONF start/stop`,
smtp_dns_support_level = disabled), the way ../shared/bench/tmbench/targets.py does; it is
skipped when not installed. Target: tinymail delivered msgs/s >= 1.0x Postfix's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import multiprocessing.sharedctypes
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

DOMAINS = 20
SINK_PORT = 2626
LISTEN = re.compile(r"listening service=smtp address=[\d.]+:(\d+)")
ROOT = Path(__file__).resolve().parents[1]


def sink_ip(n: int) -> str:
    """The sink address of domain n (0-based)."""
    return f"127.0.0.{41 + n}"


def domain(n: int) -> str:
    return f"d{n + 1:02d}.bench.test"


# -- the sink ----------------------------------------------------------------------------------


class SinkSession(asyncio.Protocol):
    """One sink connection. Replies to everything that arrived in one read go out in one write,
    as a PIPELINING server does (RFC 2920 3.2: a server flushes when its input runs dry)."""

    def __init__(self, count: Callable[[str], None]) -> None:
        self.count = count
        self.buffer = b""
        self.in_data = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.count("connections")
        transport.write(b"220 sink.bench.test ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        out: list[bytes] = []
        while True:
            if self.in_data:
                if self.buffer.startswith(b".\r\n"):
                    end = 0
                else:
                    end = self.buffer.find(b"\r\n.\r\n")
                    if end < 0:
                        break
                    end += 2
                self.buffer = self.buffer[end + 3 :]
                self.in_data = False
                self.count("messages")
                out.append(b"250 2.0.0 Ok: queued\r\n")
                continue
            line, sep, rest = self.buffer.partition(b"\r\n")
            if not sep:
                break
            self.buffer = rest
            verb = line[:4].upper()
            if verb == b"EHLO":
                out.append(b"250-sink.bench.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n")
                out.append(b"250 SIZE 104857600\r\n")
            elif verb == b"DATA":
                out.append(b"354 go ahead\r\n")
                self.in_data = True
            elif verb == b"QUIT":
                out.append(b"221 2.0.0 Bye\r\n")
                self.transport.write(b"".join(out))
                self.transport.close()
                return
            else:  # HELO, MAIL, RCPT, RSET, NOOP
                out.append(b"250 2.0.0 Ok\r\n")
        if out:
            self.transport.write(b"".join(out))


def run_sink(
    messages: multiprocessing.sharedctypes.Synchronized[int],
    connections: multiprocessing.sharedctypes.Synchronized[int],
    ready: multiprocessing.synchronize.Event,
) -> None:
    """Child process: an SMTP sink on every sink address, counting connections and messages."""
    counters = {"messages": messages, "connections": connections}

    def count(what: str) -> None:
        counter = counters[what]
        with counter.get_lock():
            counter.value += 1

    async def main() -> None:
        loop = asyncio.get_running_loop()
        servers = [
            await loop.create_server(lambda: SinkSession(count), sink_ip(n), SINK_PORT, backlog=512)
            for n in range(DOMAINS)
        ]
        ready.set()
        await asyncio.gather(*(s.serve_forever() for s in servers))

    asyncio.run(main())


# -- injection ---------------------------------------------------------------------------------


def corpus(count: int) -> list[tuple[str, bytes]]:
    """(recipient, message) pairs: about 3 KB each, round-robin over the domains."""
    body = b"".join(
        b"line %04d of a plain text body for the relay benchmark\r\n" % i for i in range(50)
    )
    out = []
    for i in range(count):
        rcpt = f"user{i % 7}@{domain(i % DOMAINS)}"
        head = f"From: bench@example.net\r\nTo: {rcpt}\r\nSubject: outbound {i}\r\n"
        out.append((rcpt, head.encode() + b"Message-ID: <%d@bench>\r\n\r\n" % i + body))
    return out


async def inject(port: int, batch: list[tuple[str, bytes]]) -> None:
    """Send `batch` over one SMTP connection, one transaction per message."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def expect(code: bytes) -> None:
        while True:
            line = await reader.readline()
            if line[3:4] != b"-":
                if not line.startswith(code):
                    raise RuntimeError(f"injection: {line!r}")
                return

    await expect(b"220")
    writer.write(b"EHLO bench.example.net\r\n")
    await expect(b"250")
    for rcpt, message in batch:
        writer.write(b"MAIL FROM:<bench@example.net>\r\nRCPT TO:<%s>\r\nDATA\r\n" % rcpt.encode())
        await expect(b"250")
        await expect(b"250")
        await expect(b"354")
        writer.write(message + b".\r\n")
        await expect(b"250")
    writer.write(b"QUIT\r\n")
    await writer.drain()
    writer.close()


async def inject_all(port: int, messages: list[tuple[str, bytes]], clients: int) -> None:
    await asyncio.gather(*(inject(port, messages[i::clients]) for i in range(clients)))


# -- the relays --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Tinymail:
    name = "tinymail"

    def __init__(self, work: Path):
        self.work = work / "tinymail"
        self.work.mkdir()
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self) -> None:
        routes = "".join(
            f'"{domain(n)}" = "smtp:[{sink_ip(n)}]:{SINK_PORT}"\n' for n in range(DOMAINS)
        )
        config = self.work / "tinymail.toml"
        config.write_text(
            f'hostname = "relay.bench.test"\ndomains = ["relay.bench.test"]\n'
            f'data_dir = "{self.work / "data"}"\n\n'
            '[listen]\nsmtp = ["127.0.0.1:0"]\nsubmission = []\nimap = []\npop3 = []\n\n'
            f"[transport]\n{routes}\n[server]\nallow_root = true\n"
        )
        log = self.work / "serve.log"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tinymail", "-c", str(config), "serve"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            text = log.read_text()
            if (m := LISTEN.search(text)) and "tinymail started" in text:
                self.port = int(m.group(1))
                return
            time.sleep(0.05)
        raise RuntimeError(f"tinymail did not start:\n{log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


MASTER_CF = """\
{listen} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class Postfix:
    name = "postfix"

    def __init__(self, work: Path):
        self.work = work / "postfix"
        self.conf = self.work / "conf"
        self.port = free_port()

    def start(self) -> None:
        queue, data = self.work / "queue", self.work / "data"
        for d in (self.conf, queue, data):
            d.mkdir(parents=True)
        pf = pwd.getpwnam("postfix")
        os.chown(data, pf.pw_uid, pf.pw_gid)
        (self.conf / "transport").write_text(
            "".join(f"{domain(n)} smtp:[{sink_ip(n)}]:{SINK_PORT}\n" for n in range(DOMAINS))
        )
        (self.conf / "main.cf").write_text(
            f"""# generated by bench/outbound.py: private Postfix instance
compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
meta_directory = /etc/postfix
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = relay.bench.test
mydomain = bench.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
transport_maps = texthash:{self.conf}/transport
alias_maps =
alias_database =
local_recipient_maps =
relay_domains =
biff = no
maillog_file_prefixes = /var, /dev/stdout, /tmp
maillog_file = {self.work}/maillog
"""
        )
        (self.conf / "master.cf").write_text(MASTER_CF.format(listen=f"127.0.0.1:{self.port}"))
        subprocess.run(["postfix", "-c", str(self.conf), "check"], check=True, timeout=60)
        with open(self.work / "start.out", "w") as out:
            subprocess.run(
                ["postfix", "-c", str(self.conf), "start"],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                check=True,
                timeout=60,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return
            time.sleep(0.1)
        raise RuntimeError(f"postfix did not listen (see {self.work}/maillog)")

    def stop(self) -> None:
        subprocess.run(["postfix", "-c", str(self.conf), "stop"], capture_output=True, timeout=60)

    @property
    def version(self) -> str:
        out = subprocess.run(
            ["postconf", "-c", str(self.conf), "-h", "mail_version"], capture_output=True, text=True
        )
        return out.stdout.strip()


# -- the run -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    name: str
    injected_per_s: float
    delivered_per_s: float
    connections: int
    delivered: int


def measure(
    relay: Tinymail | Postfix,
    messages: list[tuple[str, bytes]],
    clients: int,
    counters: tuple[Callable[[], int], Callable[[], int], Callable[[], None]],
    timeout: float,
) -> Result:
    delivered, connections, reset = counters
    relay.start()
    try:
        reset()
        start = time.monotonic()
        asyncio.run(inject_all(relay.port, messages, clients))
        injected = time.monotonic()
        deadline = start + timeout
        while delivered() < len(messages) and time.monotonic() < deadline:
            time.sleep(0.01)
        done = time.monotonic()
        count = delivered()
        return Result(
            relay.name,
            len(messages) / (injected - start),
            count / (done - start),
            connections(),
            count,
        )
    finally:
        relay.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--messages", type=int, default=2000)
    parser.add_argument("-c", "--clients", type=int, default=16, help="injecting connections")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--no-postfix", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("outbound.py: run as root (Postfix and the 127.0.0.x sinks need it)", file=sys.stderr)
        return 77

    ctx = multiprocessing.get_context("fork")
    sink_messages = ctx.Value("q", 0)
    sink_connections = ctx.Value("q", 0)
    ready = ctx.Event()
    sink = ctx.Process(target=run_sink, args=(sink_messages, sink_connections, ready), daemon=True)
    sink.start()
    if not ready.wait(10):
        print("outbound.py: the sink did not start", file=sys.stderr)
        return 70

    def reset() -> None:
        with sink_messages.get_lock(), sink_connections.get_lock():
            sink_messages.value = sink_connections.value = 0

    counters = (lambda: int(sink_messages.value), lambda: int(sink_connections.value), reset)
    messages = corpus(args.messages)
    results: list[Result] = []
    notes: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="tm-outbound-"))
    work.chmod(0o755)  # Postfix's daemons (user postfix) must reach their data_directory
    try:
        results.append(measure(Tinymail(work), messages, args.clients, counters, args.timeout))
        if args.no_postfix:
            notes.append("postfix: skipped (--no-postfix)")
        elif shutil.which("postfix") is None:
            notes.append("postfix: not installed (apt-get install postfix), no comparison")
        else:
            postfix = Postfix(work)
            results.append(measure(postfix, messages, args.clients, counters, args.timeout))
            notes.append(f"postfix {postfix.version}")
    finally:
        sink.terminate()
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"outbound relay: {args.messages} messages, 1 recipient each, {DOMAINS} domains, "
        f"{args.clients} injecting connections, sink on 127.0.0.41-{40 + DOMAINS}:{SINK_PORT}"
    )
    print(f"{'relay':<10} {'injected/s':>11} {'delivered/s':>12} {'delivered':>10} "
          f"{'sink conns':>11} {'msgs/conn':>10}")  # fmt: skip
    for r in results:
        per_conn = r.delivered / r.connections if r.connections else 0.0
        print(
            f"{r.name:<10} {r.injected_per_s:>11.1f} {r.delivered_per_s:>12.1f} "
            f"{r.delivered:>10} {r.connections:>11} {per_conn:>10.1f}"
        )
    if len(results) == 2 and results[1].delivered_per_s:
        ratio = results[0].delivered_per_s / results[1].delivered_per_s
        print(f"tinymail / postfix delivered rate: {ratio:.2f}x (target >= 1.0x)")
    for note in notes:
        print(note)
    incomplete = [r.name for r in results if r.delivered < args.messages]
    if incomplete:
        print(f"INCOMPLETE within {args.timeout:.0f}s: {', '.join(incomplete)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
