"""Run `tinymail serve` as a real subprocess and talk to it (for crash, signal and zipapp tests)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

LISTEN_LINE = re.compile(r"listening service=(\w+) address=([\d.:a-f]+):(\d+)")


def require_tool(name: str) -> str:
    """Path of a Debian tool; skip locally when missing, fail in CI (which installs it)."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is required in CI (.ci/run installs it)")
        pytest.skip(f"{name} is not installed")
    return path


class ServerProcess:
    """A `tinymail serve` child process; ports are read from its log."""

    def __init__(
        self, config: Path, log_path: Path, prefix: Sequence[str] = (), cmd: Sequence[str] = ()
    ):
        self.log_path = log_path
        command = [
            *prefix,
            *(cmd or [sys.executable, "-m", "tinymail"]),
            "-c",
            str(config),
            "serve",
        ]
        self.log_file = open(log_path, "ab")  # noqa: SIM115 - closed in kill()/terminate()
        self.offset = log_path.stat().st_size
        self.proc = subprocess.Popen(
            command, stdout=self.log_file, stderr=subprocess.STDOUT, cwd=str(config.parent)
        )
        self.ports: dict[str, int] = {}

    def wait_ready(self, timeout: float = 20.0) -> ServerProcess:
        """Block until the server logged its SMTP listener (bounded by `timeout`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_text()
            for service, _host, port in LISTEN_LINE.findall(text):
                self.ports.setdefault(service, int(port))
            if "tinymail started" in text:
                return self
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{text}")
            time.sleep(0.05)
        raise AssertionError(f"server not ready after {timeout}s:\n{self.log_text()}")

    def log_text(self) -> str:
        """What this process logged so far."""
        with open(self.log_path, "rb") as f:
            f.seek(self.offset)
            return f.read().decode("utf-8", "replace")

    def kill(self) -> None:
        """SIGKILL and reap."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self.log_file.close()

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; returns the exit status."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.log_file.close()


def wait_until(predicate: object, timeout: float = 20.0, interval: float = 0.05) -> None:
    """Poll `predicate()` until true (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def queue_empty(data_dir: Path) -> bool:
    """True when the spool holds no message."""
    active = data_dir / "queue" / "active"
    return active.is_dir() and not any(active.iterdir())


def delivered_qids(maildir: Path) -> set[str]:
    """Queue IDs named in the Received headers of every message in a Maildir."""
    found: set[str] = set()
    for sub in ("new", "cur"):
        d = maildir / sub
        if not d.is_dir():
            continue
        for f in d.iterdir():
            head = f.read_bytes()[:2000]
            m = re.search(rb"\(tinymail\) with \w+ id (\w+)", head)
            if m:
                found.add(m.group(1).decode())
    return found
