"""Start-up latency of `tinymail sendmail -t -i < 1 KB message`, next to its floors and peers.

Measures the median wall and CPU time of N runs (default 50, interleaved so drift hits all alike):
  python-bare   `python3 -c pass` on the same interpreter (the floor of any Python sendmail)
  tinymail      `tinymail -c CONF sendmail -t -i`, the console script next to the interpreter,
                with a running `tinymail serve`, so each run queues, fsyncs and nudges
  python -m     the same as `python3 -m tinymail ...` (no console-script wrapper)
  via DIR       `DIR/tinymail ...` for each --program DIR/tinymail, e.g. a pyenv shim (a bash
                script that runs pyenv before Python even starts) or a venv's bin/tinymail
  pyz:NAME      `python3 NAME.pyz ...` for each --zipapp PYZ (build one with ./zipapp.sh)
  baseline      `python3 -m tinymail ...` importing the package from --baseline DIR (a copy of
                an older tree, e.g. `git archive HEAD tinymail | tar -x -C DIR`): before/after
                in one run. Every command runs in a scratch directory, so `-m` never picks up
                a tinymail/ in the current directory; the current tree must be installed
                (`pip install -e .`)
  postfix       /usr/sbin/sendmail -t -i, when Postfix is installed (its maildrop path)
and prints a table with ratios to python-bare and to Postfix, then the top `-X importtime`
entries of the sendmail path. Targets (issue 3): <= 1.3x python-bare, <= 1.5x Postfix.

Bytecode: an installed package has .pyc files (pip compiles at install); PYTHONDONTWRITEBYTECODE
is dropped and PYTHONPYCACHEPREFIX points into the bench directory, so the editable checkout is
measured the same way without writing into it.

Usage: python3 bench/sendmail_latency.py [--runs 50] [--no-daemon] [--zipapp dist/tinymail.pyz]
                                        [--program ~/.pyenv/shims/tinymail] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

CONFIG = """\
hostname = "bench.example.test"
domains = ["bench.example.test", "localhost"]
data_dir = "{data}"
[listen]
smtp = []
submission = []
imap = []
pop3 = []
"""


def message() -> bytes:
    """A 1024-byte message with To: root."""
    head = b"From: bench@example.test\nTo: root\nSubject: latency\n\n"
    line = b"x" * 63 + b"\n"
    body = line * ((1024 - len(head)) // len(line))
    return (head + body).ljust(1024, b"y")[:1023] + b"\n"


SENDMAIL = ["sendmail", "-t", "-i"]
Command = tuple[list[str], dict[str, str]]  # argv, environment


def console_script() -> Path | None:
    """The installed console script next to this interpreter."""
    script = Path(sysconfig.get_path("scripts")) / "tinymail"
    return script if script.exists() else None


def module_command(conf: Path) -> list[str]:
    """`python -m tinymail -c CONF` on this interpreter."""
    return [sys.executable, "-m", "tinymail", "-c", str(conf)]


def postfix_command() -> list[str] | None:
    """Postfix's sendmail when Postfix is installed."""
    if Path("/etc/postfix/main.cf").exists() and Path("/usr/sbin/sendmail").exists():
        return ["/usr/sbin/sendmail", "-t", "-i"]
    return None


def commands(conf: Path, env: dict[str, str], args: argparse.Namespace) -> dict[str, Command]:
    """Every variant to time, by table label."""
    tail = ["-c", str(conf), *SENDMAIL]
    found: dict[str, Command] = {"python-bare": ([sys.executable, "-c", "pass"], env)}
    script = console_script()
    if script is not None:
        found["tinymail"] = ([str(script), *tail], env)
    found["python -m"] = ([*module_command(conf), *SENDMAIL], env)
    for program in args.program:
        found[f"via {program.parent.name}"] = ([str(program), *tail], env)
    for pyz in args.zipapp:
        found[f"pyz:{pyz.stem}"] = ([sys.executable, str(pyz.resolve()), *tail], env)
    if args.baseline is not None:
        paths = [str(args.baseline.resolve()), *filter(None, [env.get("PYTHONPATH")])]
        old = dict(env, PYTHONPATH=os.pathsep.join(paths))
        found["baseline"] = ([*module_command(conf), *SENDMAIL], old)
    postfix = postfix_command()
    if postfix:
        found["postfix"] = (postfix, env)
    return found


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_runs(
    commands: dict[str, Command], runs: int, cwd: Path
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Interleaved wall and CPU (user + system) times in seconds, per command.

    CPU time is the steadier figure on a shared machine: waiting for a core is not counted.
    A failing run aborts the bench.
    """
    data = message()
    wall: dict[str, list[float]] = {name: [] for name in commands}
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, (cmd, env) in commands.items():
            cpu_start, start = _children_cpu(), time.perf_counter()
            proc = subprocess.run(cmd, input=data, env=env, cwd=cwd, capture_output=True)
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(_children_cpu() - cpu_start)
            if proc.returncode != 0:
                raise SystemExit(f"{name} failed ({proc.returncode}): {proc.stderr.decode()}")
    return wall, cpu


def import_top(cmd: list[str], env: dict[str, str], cwd: Path, count: int = 12) -> list[str]:
    """The biggest cumulative `-X importtime` entries of one run of `python ARGS...`."""
    argv = [cmd[0], "-X", "importtime", *cmd[1:]]
    proc = subprocess.run(argv, input=message(), env=env, cwd=cwd, capture_output=True)
    rows = []
    for line in proc.stderr.decode().splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (.*)", line)
        if m:
            rows.append((int(m.group(2)), int(m.group(1)), m.group(3)))
    rows.sort(reverse=True)
    return [
        f"{cum / 1000:8.2f} ms cumulative {own / 1000:7.2f} ms self  {name}"
        for cum, own, name in rows[:count]
    ]


def start_daemon(conf: Path, env: dict[str, str], work: Path) -> subprocess.Popen[bytes]:
    """`tinymail serve` on the bench config; returns once it logged that it started."""
    with open(work / "serve.log", "wb") as log:  # the child keeps its own descriptor
        server = subprocess.Popen(
            [*module_command(conf), "serve"],
            env=env,
            cwd=work,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while b"tinymail started" not in (work / "serve.log").read_bytes():
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            raise SystemExit("tinymail serve did not start: " + (work / "serve.log").read_text())
        time.sleep(0.05)
    return server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--no-daemon", action="store_true", help="measure the one-shot path")
    parser.add_argument(
        "--zipapp", type=Path, action="append", default=[], metavar="PYZ", help="also time PYZ"
    )
    parser.add_argument(
        "--program", type=Path, action="append", default=[], help="also time this tinymail"
    )
    parser.add_argument(
        "--baseline", type=Path, metavar="DIR", help="also time the tinymail package in DIR"
    )
    args = parser.parse_args()
    for given in [*args.zipapp, *args.program]:
        if not given.is_file():
            raise SystemExit(f"{given}: no such file (./zipapp.sh builds dist/tinymail.pyz)")
    if args.baseline and not (args.baseline / "tinymail" / "__main__.py").exists():
        raise SystemExit(f"{args.baseline} holds no tinymail package")
    work = Path(tempfile.mkdtemp(prefix="tm-sendmail-bench-"))
    conf = work / "tinymail.toml"
    text = CONFIG.format(data=work / "data")
    conf.write_text(text + ("[server]\nallow_root = true\n" if os.getuid() == 0 else ""))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    variants = commands(conf, env, args)
    server = None if args.no_daemon else start_daemon(conf, env, work)
    try:
        time_runs(variants, 3, work)  # warm-up: page cache, bytecode cache
        times, cpu = time_runs(variants, args.runs, work)
        top = import_top(*variants["python -m"], work)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=15)
    medians = {name: statistics.median(t) * 1000 for name, t in times.items()}
    cpu_medians = {name: statistics.median(t) * 1000 for name, t in cpu.items()}
    print(
        f"sendmail latency: median of {args.runs} runs, 1 KB message, "
        f"{'one-shot (no daemon)' if args.no_daemon else 'daemon running'}; {sys.executable}"
    )
    print(
        f"{'command':<12} {'median ms':>10} {'min ms':>8} {'x bare':>7} {'x postfix':>9}"
        f" {'cpu ms':>8} {'cpu x bare':>10}"
    )
    for name, med in medians.items():
        low = min(times[name]) * 1000
        vs_bare = med / medians["python-bare"]
        vs_postfix = f"{med / medians['postfix']:9.2f}" if "postfix" in medians else f"{'-':>9}"
        cpu_med = cpu_medians[name]
        cpu_vs_bare = cpu_med / cpu_medians["python-bare"]
        print(
            f"{name:<12} {med:10.2f} {low:8.2f} {vs_bare:7.2f} {vs_postfix}"
            f" {cpu_med:8.2f} {cpu_vs_bare:10.2f}"
        )
    print("\n-X importtime, `python -m tinymail ... sendmail` (top entries):")
    print("\n".join(top))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
