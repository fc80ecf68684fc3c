"""The real `tinymail serve` process: signals, restart recovery, the zipapp."""

from __future__ import annotations

import os
import smtplib
import subprocess
import sys
from pathlib import Path

from tests.e2e.helpers import ServerProcess, delivered_qids, queue_empty, wait_until
from tinymail.queue.spool import Spool

ROOT = Path(__file__).resolve().parents[2]


def test_sigterm_stops_cleanly_with_exit_0(config_path: Path, tmp_path: Path) -> None:
    server = ServerProcess(config_path, tmp_path / "serve.log").wait_ready()
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as client:
        client.sendmail("a@example.net", ["root@example.test"], b"Subject: t\r\n\r\nx\r\n")
    assert server.terminate() == 0
    assert "tinymail stopped" in server.log_text()


def test_messages_queued_before_start_are_delivered(config_path: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    spool = Spool(data_dir / "queue").create()
    envs = [
        spool.enqueue("a@example.net", ("root@example.test",), b"Subject: %d\n\nbody\n" % i)
        for i in range(5)
    ]
    server = ServerProcess(config_path, tmp_path / "serve.log").wait_ready()
    try:
        wait_until(lambda: queue_empty(data_dir))
        # Seeded files have no Received header: check the bodies instead.
        new = data_dir / "mail" / "root" / "new"
        subjects = sorted(f.read_bytes().split(b"\n")[1] for f in new.iterdir())
        assert subjects == sorted(b"Subject: %d" % i for i in range(5))
        assert len(envs) == 5
    finally:
        server.terminate()


def test_idle_session_gets_421_on_shutdown(config_path: Path, tmp_path: Path) -> None:
    server = ServerProcess(config_path, tmp_path / "serve.log").wait_ready()
    client = smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10)
    client.ehlo("idle.example.net")
    assert server.terminate() == 0
    code, _ = client.getreply()
    assert code == 421
    client.close()


def test_zipapp_builds_and_serves_from_another_directory(config_path: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([str(ROOT / "zipapp.sh")], check=True, env=env, capture_output=True)
    pyz = ROOT / "dist" / "tinymail.pyz"
    isolated = [sys.executable, "-I", str(pyz)]
    version = subprocess.run(
        [*isolated, "--version"], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert version.stdout.startswith("tinymail ")
    server = ServerProcess(config_path, tmp_path / "zip.log", cmd=isolated).wait_ready()
    try:
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as client:
            client.sendmail("a@example.net", ["root@example.test"], b"Subject: z\r\n\r\nzip\r\n")
        data_dir = tmp_path / "data"
        wait_until(lambda: len(delivered_qids(data_dir / "mail" / "root")) == 1)
    finally:
        assert server.terminate() == 0
