"""sendmail as a real process: delivery with and without a daemon, other uids, the zipapp, mailx."""

from __future__ import annotations

import io
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import BASE_CONFIG
from tests.e2e.helpers import ServerProcess, queue_empty, require_tool, wait_until
from tinymail.sendmail import main as sendmail_main

ROOT = Path(__file__).resolve().parents[2]
MESSAGE = b"Subject: e2e\nTo: root\n\nhello from sendmail\n"


@pytest.fixture
def home() -> Iterator[Path]:
    """A short, world-traversable directory (other uids must reach the socket and config)."""
    path = Path(tempfile.mkdtemp(prefix="tm-sm-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def write_config(home: Path) -> Path:
    conf = home / "tinymail.toml"
    text = BASE_CONFIG.format(data_dir=home / "data")
    if "[server]" not in text and os.getuid() == 0:
        text += "\n[server]\nallow_root = true\n"  # the tests run as root
    conf.write_text(text)
    conf.chmod(0o644)
    return conf


def sendmail(
    conf: Path, *args: str, message: bytes = MESSAGE, python: str = sys.executable, **kw: object
) -> subprocess.CompletedProcess[bytes]:
    """Run `python -m tinymail -c CONF sendmail ARGS` with `message` on stdin."""
    cmd = [python, "-m", "tinymail", "-c", str(conf), "sendmail", *args]
    run: object = subprocess.run
    return run(cmd, input=message, capture_output=True, timeout=60, cwd=ROOT, **kw)  # type: ignore[operator, no-any-return]


def root_messages(home: Path) -> list[bytes]:
    new = home / "data" / "mail" / "root" / "new"
    return [p.read_bytes() for p in new.iterdir()] if new.is_dir() else []


def test_without_daemon_a_one_shot_run_delivers(home: Path) -> None:
    conf = write_config(home)
    result = sendmail(conf, "-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root@localhost")
    assert result.returncode == 0, result.stderr
    wait_until(lambda: len(root_messages(home)) == 1)
    [message] = root_messages(home)
    assert b"\nFrom: CronDaemon <root@mx.example.test>\n" in message
    assert message.endswith(b"\nhello from sendmail\n")
    wait_until(lambda: queue_empty(home / "data"))


def test_with_a_daemon_it_is_nudged(home: Path) -> None:
    conf = write_config(home)
    server = ServerProcess(conf, home / "serve.log").wait_ready()
    try:
        for caller in (["-t", "-i"], ["-oi", "-t"], ["-t"]):
            assert sendmail(conf, *caller).returncode == 0
        wait_until(lambda: len(root_messages(home)) == 3, timeout=10)
        assert "control socket listening" in server.log_text()
        assert (home / "data" / "run" / "control.sock").exists()
        fifo = os.stat(home / "data" / "run" / "trigger")
        assert stat.S_ISFIFO(fifo.st_mode) and stat.S_IMODE(fifo.st_mode) == 0o600
        flush = sendmail(conf, "-q", message=b"")
        assert flush.returncode == 0, flush.stderr
    finally:
        assert server.terminate() == 0
    assert not (home / "data" / "run" / "control.sock").exists()
    assert not (home / "data" / "run" / "trigger").exists()


def test_the_trigger_alone_reaches_the_daemon(home: Path) -> None:
    """Without its socket file the daemon is still nudged: no one-shot run is started."""
    conf = write_config(home)
    server = ServerProcess(conf, home / "serve.log").wait_ready()
    spawned: list[str] = []
    try:
        (home / "data" / "run" / "control.sock").unlink()
        status = sendmail_main(
            ["-t", "-i"],
            config_path=str(conf),
            stdin=io.BytesIO(MESSAGE),
            spawn=lambda _config, qid: spawned.append(qid),
        )
        assert status == 0
        wait_until(lambda: len(root_messages(home)) == 1, timeout=10)
        assert spawned == []
    finally:
        assert server.terminate() == 0


def _system_python() -> str:
    """An interpreter other uids may run (ours may live under root's 0700 home)."""
    for candidate in ("/usr/bin/python3", sys.executable):
        probe = subprocess.run(
            [candidate, "-c", "import sys; assert sys.version_info >= (3, 11)"],
            preexec_fn=_as_nobody,
            capture_output=True,
        )
        if probe.returncode == 0:
            return candidate
    pytest.skip("no Python >= 3.11 that the nobody account may run")


def _as_nobody() -> None:
    nobody = pwd.getpwnam("nobody")
    os.setgroups([])
    os.setgid(nobody.pw_gid)
    os.setuid(nobody.pw_uid)


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to switch to another uid")
def test_caller_that_cannot_write_the_queue_submits_through_the_daemon(home: Path) -> None:
    conf = write_config(home)
    env = {**os.environ, "HOME": "/nonexistent", "PYTHONPATH": str(ROOT)}
    python = _system_python()
    refused = sendmail(conf, "root@localhost", python=python, preexec_fn=_as_nobody, env=env)
    assert refused.returncode == 75  # no daemon: the queue (root's, 0700) is not writable
    assert b"no tinymail daemon is running" in refused.stderr
    assert refused.stderr.count(b"\n") == 1
    server = ServerProcess(conf, home / "serve.log").wait_ready()
    try:
        # The caller claims to be someone else with -f: the envelope comes from its uid anyway.
        sent = sendmail(
            conf, "-f", "root@localhost", "root@localhost", python=python, preexec_fn=_as_nobody,
            env=env,
        )  # fmt: skip
        assert sent.returncode == 0, sent.stderr
        wait_until(lambda: len(root_messages(home)) == 1, timeout=10)
    finally:
        server.terminate()
    [message] = root_messages(home)
    uid = pwd.getpwnam("nobody").pw_uid
    assert message.startswith(b"Return-Path: <nobody@mx.example.test>\n")
    assert f"(tinymail, from userid {uid})".encode() in message
    assert b"hello from sendmail" in message


def test_zipapp_through_sendmail_mailq_newaliases_links(home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([str(ROOT / "zipapp.sh")], check=True, env=env, capture_output=True)
    for name in ("sendmail", "mailq", "newaliases"):
        (home / name).symlink_to(ROOT / "dist" / "tinymail.pyz")
    conf = write_config(home)
    env["TINYMAIL_CONFIG"] = str(conf)
    run = {"env": env, "capture_output": True, "cwd": home, "timeout": 60}
    sent = subprocess.run([str(home / "sendmail"), "-t", "-i"], input=MESSAGE, **run)  # type: ignore[call-overload]
    assert sent.returncode == 0, sent.stderr
    wait_until(lambda: len(root_messages(home)) == 1)
    listing = subprocess.run([str(home / "mailq")], **run)  # type: ignore[call-overload]
    assert listing.returncode == 0 and listing.stdout in (b"Mail queue is empty\n",)
    aliases = subprocess.run([str(home / "newaliases")], **run)  # type: ignore[call-overload]
    assert aliases.returncode == 0 and b"0 aliases" in aliases.stdout


def test_s_nail_sends_through_it(home: Path) -> None:
    s_nail = require_tool("s-nail")
    conf = write_config(home)
    link_dir = home / "bin"
    link_dir.mkdir()
    (link_dir / "sendmail").write_text(
        f'#!/bin/sh\nexec {sys.executable} -m tinymail -c {conf} sendmail "$@"\n'
    )
    (link_dir / "sendmail").chmod(0o755)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(home), "MAILRC": "/dev/null"}
    result = subprocess.run(
        [s_nail, "-n", "-S", f"mta={link_dir / 'sendmail'}", "-s", "from s-nail",
         "-r", "Ops <ops@example.test>", "root@localhost"],
        input=b"body line\n.\nafter a lone dot\n", env=env, capture_output=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    wait_until(lambda: len(root_messages(home)) == 1)
    [message] = root_messages(home)
    assert b"Subject: from s-nail\n" in message
    assert b"Return-Path: <ops@example.test>" in message  # s-nail passes -f from -r
    assert b"body line\n.\nafter a lone dot\n" in message  # -i: the lone dot is data
