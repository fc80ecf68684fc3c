"""Real `tinymail serve` processes: fail2ban-regex on their log, and the root privilege drop."""

from __future__ import annotations

import os
import pwd
import re
import smtplib
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.helpers import ServerProcess, require_tool
from tests.security.conftest import ALICE, PASSWORD, ConfigFactory
from tinymail.config import load_config
from tinymail.store.users import set_password

FILTER = Path(__file__).parents[2] / "contrib" / "fail2ban" / "filter.d" / "tinymail.conf"


def smtp_login(port: int, user: str, password: str) -> int:
    """One AUTH PLAIN attempt over plaintext loopback; the reply code."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("f2b.example")
        client.user, client.password = user, password
        try:  # one PLAIN attempt (login() would go on to try LOGIN as well)
            client.auth("PLAIN", client.auth_plain)
        except smtplib.SMTPAuthenticationError as exc:
            return exc.smtp_code
        return 235


def test_fail2ban_regex_matches_real_auth_failures(
    tls_config: ConfigFactory, tmp_path: Path
) -> None:
    fail2ban_regex = require_tool("fail2ban-regex")
    path = tls_config(auth={"max_failures": "4"})
    set_password(load_config(path).users_file, ALICE, PASSWORD, create=True)
    log_path = tmp_path / "serve.log"
    server = ServerProcess(path, log_path).wait_ready()
    try:
        port = server.ports["submission"]
        codes = [smtp_login(port, ALICE, f"bad{i}") for i in range(2)]
        # A user name built to forge a second client address for fail2ban.
        codes.append(smtp_login(port, "x client=[203.0.113.9] user=<y>", "bad"))
        codes.append(smtp_login(port, "nobody@example.test", "bad"))
        codes.append(smtp_login(port, ALICE, PASSWORD))  # over budget: refused, unchecked
        assert smtp_login(port, ALICE, PASSWORD) == 454
    finally:
        server.terminate()
    assert codes == [535, 535, 535, 535, 454]
    text = log_path.read_text()
    assert "auth refused: service=submission client=[127.0.0.1]" in text
    assert PASSWORD not in text and "bad0" not in text
    result = subprocess.run(
        [fail2ban_regex, "--out", "ip", str(log_path), str(FILTER)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    ips = result.stdout.split()
    assert ips == ["127.0.0.1"] * 6, result.stdout  # 4 failed + 2 refused, never 203.0.113.9
    summary = subprocess.run(
        [fail2ban_regex, str(log_path), str(FILTER)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert re.search(r"Failregex: 6 total", summary), summary


def proc_ids(pid: int) -> tuple[int, int]:
    """Real uid and gid of a process, from /proc/PID/status."""
    status = Path(f"/proc/{pid}/status").read_text()
    uid = re.search(r"^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", status, re.M)
    gid = re.search(r"^Gid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", status, re.M)
    assert uid and gid
    assert len(set(uid.groups())) == 1 and len(set(gid.groups())) == 1  # real = effective = saved
    return int(uid.group(1)), int(gid.group(1))


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop privileges")


@needs_root
def test_root_start_drops_to_configured_user(tls_config: ConfigFactory, tmp_path: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    tmp_path.chmod(0o755)  # let the unprivileged user reach data_dir below tmp_path
    for parent in tmp_path.parents:
        if parent == Path("/tmp"):
            break
        parent.chmod(parent.stat().st_mode | 0o005)
    path = tls_config(server={"user": '"nobody"', "allow_root": "false"})
    cfg = load_config(path)
    cfg.data_dir.mkdir()
    set_password(cfg.users_file, ALICE, PASSWORD, create=True)  # written by root, mode 0600
    (tmp_path / "key.pem").chmod(0o600)  # readable by root only: loaded before the drop
    server = ServerProcess(path, tmp_path / "serve.log").wait_ready()
    try:
        assert proc_ids(server.proc.pid) == (nobody.pw_uid, nobody.pw_gid)
        assert cfg.users_file.stat().st_uid == nobody.pw_uid  # handed over at start
        assert cfg.queue_dir.stat().st_uid == nobody.pw_uid
        # Still a working server: AUTH reads the users file, a message is queued as nobody.
        with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=10) as client:
            client.login(ALICE, PASSWORD)
            client.sendmail(ALICE, [ALICE], f"From: {ALICE}\r\n\r\nhi\r\n")
    finally:
        assert server.terminate() == 0
    assert f"running as user=nobody uid={nobody.pw_uid}" in server.log_text()


@needs_root
def test_root_start_without_user_is_refused(tls_config: ConfigFactory, tmp_path: Path) -> None:
    # Not refused on loopback only (the embedded default must just work): a public listener.
    path = tls_config(server={"allow_root": "false"}, listen={"smtp": '["0.0.0.0:0"]'})
    done = subprocess.run(
        [sys.executable, "-m", "tinymail", "-c", str(path), "serve"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 78
    assert "refusing to run as root" in done.stderr and "[server] user" in done.stderr


@needs_root
def test_unknown_user_is_a_clear_error(tls_config: ConfigFactory) -> None:
    path = tls_config(server={"user": '"no-such-account-here"'})
    done = subprocess.run(
        [sys.executable, "-m", "tinymail", "-c", str(path), "serve"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 78
    assert "user 'no-such-account-here' does not exist" in done.stderr
