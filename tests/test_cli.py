"""tinymail.cli: check, user, newaliases, mailq, queue list|show; exit codes from sysexits.h.

Most cases run in-process through `tinymail.cli.main([...])` (fast); a few run the real
`python -m tinymail` to prove the one-line, no-traceback error contract end to end.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tinymail.cli import main
from tinymail.config import load_config
from tinymail.queue.spool import Spool
from tinymail.store.users import UserDB

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    path = tmp_path / "tinymail.toml"
    path.write_text(
        'hostname = "mx.example.test"\n'
        'domains = ["example.test", "localhost"]\n'
        f'data_dir = "{tmp_path / "data"}"\n'
    )
    return path


def run(
    conf: Path, *args: str, stdin: str = "", check_clean: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TINYMAIL_CONFIG"}
    env["TINYMAIL_HOME"] = str(conf.parent / "home")
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run(
        [sys.executable, "-m", "tinymail", "-c", str(conf), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=conf.parent,
        timeout=60,
    )
    if check_clean:
        assert "Traceback" not in proc.stderr
    return proc


def cli(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    *args: str,
    stdin: str = "",
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


# --- check -------------------------------------------------------------------------------


def test_check_prints_a_config_that_loads_again(tmp_path: Path, conf: Path) -> None:
    proc = run(conf, "check")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    rendered = tmp_path / "rendered.toml"
    rendered.write_text(proc.stdout)
    again = load_config(rendered)
    original = load_config(conf)
    assert again.hostname == "mx.example.test"
    assert again.domains == original.domains
    assert again.data_dir == original.data_dir
    assert again.listen == original.listen
    assert again.queue == original.queue


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('hostname = "mx.example.test"\nbogus = 1\n', "line 2: unknown key 'bogus'"),
        ('[queue]\nretry_min = "5x"\n', "line 2: queue.retry_min: bad duration"),
        ('hostname = "unterminated\n', "config error"),
    ],
)
def test_check_bad_config_is_one_line_exit_78(tmp_path: Path, text: str, fragment: str) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    proc = run(bad, "check")
    assert proc.returncode == 78
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("tinymail: config error: ")
    assert fragment in lines[0]


def test_missing_config_file_is_78(tmp_path: Path) -> None:
    proc = run(tmp_path / "missing.toml", "mailq")
    assert proc.returncode == 78
    assert len(proc.stderr.splitlines()) == 1
    assert "cannot read config" in proc.stderr


def test_check_reports_bad_users_and_aliases_files(
    conf: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = conf.parent / "data"
    data.mkdir()
    (data / "users").write_text("ok@example.test:{PLAIN}x\nbroken\n")
    (data / "aliases").write_text("a: |/bin/sh\n")
    status, out, err = cli(capsys, monkeypatch, "-c", str(conf), "check")
    assert status == 78
    assert "hostname = " in out
    assert f"{data / 'users'}, line 2" in err
    assert f"{data / 'aliases'}, line 1" in err
    assert all(line.startswith("tinymail: config error: ") for line in err.splitlines())


def test_embedded_default_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TINYMAIL_CONFIG", raising=False)
    monkeypatch.setenv("TINYMAIL_HOME", str(tmp_path / "home"))
    monkeypatch.setattr("tinymail.quickconfig.DEFAULT_CONFIG_FILE", str(tmp_path / "no-such.toml"))
    status, out, _ = cli(capsys, monkeypatch, "check")
    assert status == 0
    assert "# effective configuration (from embedded default)" in out
    assert f'data_dir = "{tmp_path / "home"}"' in out


def test_config_from_environment(
    conf: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TINYMAIL_CONFIG", str(conf))
    status, out, _ = cli(capsys, monkeypatch, "check")
    assert status == 0
    assert f"(from {conf})" in out


def test_usage_errors_are_64(
    conf: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    status, _, err = cli(capsys, monkeypatch, "-c", str(conf))
    assert status == 64
    assert "command is required" in err
    status, _, err = cli(capsys, monkeypatch, "-c", str(conf), "frobnicate")
    assert status == 64
    assert len(err.splitlines()) == 1
    status, _, _ = cli(capsys, monkeypatch, "-c", str(conf), "user")
    assert status == 64


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("tinymail ")


# --- user ----------------------------------------------------------------------------------


def test_user_lifecycle_subprocess(conf: Path) -> None:
    users_file = conf.parent / "data" / "users"
    proc = run(conf, "user", "add", "Alice@Example.Test", "--password-stdin", stdin="s3cret\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "added alice@example.test\n"
    assert users_file.stat().st_mode & 0o777 == 0o600
    assert UserDB.load(users_file).verify("alice@example.test", "s3cret")

    proc = run(conf, "user", "add", "bob", "--password-stdin", stdin="pw")  # no final newline
    assert proc.returncode == 0, proc.stderr
    assert UserDB.load(users_file).verify("bob@localhost", "pw") == "bob"

    proc = run(conf, "user", "list")
    assert (proc.returncode, proc.stdout) == (0, "alice@example.test\nbob\n")

    proc = run(conf, "user", "passwd", "alice@example.test", "--password-stdin", stdin="new pw\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "password changed for alice@example.test\n"
    db = UserDB.load(users_file)
    assert db.verify("alice@example.test", "new pw")
    assert not db.verify("alice@example.test", "s3cret")

    proc = run(conf, "user", "del", "alice@example.test")
    assert (proc.returncode, proc.stdout) == (0, "deleted alice@example.test\n")
    assert run(conf, "user", "list").stdout == "bob\n"


def test_user_add_existing_is_65(conf: Path) -> None:
    proc = run(conf, "user", "add", "a@example.test", "--password-stdin", stdin="x\n")
    assert proc.returncode == 0
    proc = run(conf, "user", "add", "A@example.test", "--password-stdin", stdin="y\n")
    assert proc.returncode == 65
    assert proc.stderr == "tinymail: user a@example.test already exists\n"
    db = UserDB.load(conf.parent / "data" / "users")
    assert db.verify("a@example.test", "x")  # unchanged


def test_user_errors(
    conf: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    c = ("-c", str(conf))
    status, _, err = cli(capsys, monkeypatch, *c, "user", "passwd", "ghost@x", "--password-stdin",
                         stdin="pw\n")  # fmt: skip
    assert (status, err) == (67, "tinymail: no such user ghost@x\n")
    status, _, err = cli(capsys, monkeypatch, *c, "user", "del", "ghost@x")
    assert (status, err) == (67, "tinymail: no such user ghost@x\n")
    status, _, err = cli(capsys, monkeypatch, *c, "user", "add", "a@x", "--password-stdin")
    assert (status, err) == (65, "tinymail: empty password\n")
    status, _, err = cli(capsys, monkeypatch, *c, "user", "add", "a:b@x", "--password-stdin",
                         stdin="pw\n")  # fmt: skip
    assert status == 65
    assert "forbidden character" in err
    # No terminal and no --password-stdin: a usage error, not a hang on the prompt.
    status, _, err = cli(capsys, monkeypatch, *c, "user", "add", "a@x", stdin="pw\n")
    assert status == 64
    assert "--password-stdin" in err
    status, out, _ = cli(capsys, monkeypatch, *c, "user", "list")
    assert (status, out) == (0, "")
    assert not (conf.parent / "data" / "users").exists()


def test_user_commands_on_a_bad_users_file_are_78(
    conf: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    users_file = conf.parent / "data" / "users"
    users_file.parent.mkdir()
    users_file.write_text("good@x:{PLAIN}x\nnot a valid line\n")
    status, _, err = cli(capsys, monkeypatch, "-c", str(conf), "user", "list")
    assert status == 78
    assert "line 2" in err
    status, _, _ = cli(capsys, monkeypatch, "-c", str(conf), "user", "add", "n@x",
                       "--password-stdin", stdin="pw\n")  # fmt: skip
    assert status == 78
    assert users_file.read_text() == "good@x:{PLAIN}x\nnot a valid line\n"


# --- newaliases -----------------------------------------------------------------------------


def test_newaliases_ok_and_bad(conf: Path) -> None:
    aliases = conf.parent / "data" / "aliases"
    aliases.parent.mkdir()
    aliases.write_text("# admins\npostmaster: root\nstaff: alice,\n  bob\n")
    proc = run(conf, "newaliases")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"newaliases: {aliases}: 2 aliases\n"

    aliases.write_text("ok: a\nloop1: loop2\nloop2: loop1\nbad: |/bin/sh\n")
    proc = run(conf, "newaliases")
    assert proc.returncode == 65
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert any(f"{aliases}, line 4: " in line and "pipe" in line for line in lines)
    assert any(f"{aliases}, line 2: alias loop" in line for line in lines)
    assert any(f"{aliases}, line 3: alias loop" in line for line in lines)
    assert all(line.startswith("newaliases: ") for line in lines)


def test_newaliases_without_a_file(
    conf: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    status, out, _ = cli(capsys, monkeypatch, "-c", str(conf), "newaliases")
    assert status == 0
    assert out.endswith(": 0 aliases\n")


# --- mailq / queue -----------------------------------------------------------------------------


def test_mailq_empty_and_with_a_message(conf: Path) -> None:
    proc = run(conf, "mailq")
    assert (proc.returncode, proc.stdout) == (0, "Mail queue is empty\n")
    spool = Spool(load_config(conf).queue_dir).create()
    env = spool.enqueue("sender@example.test", ("rcpt@remote.test",), b"Subject: x\n\nbody\n")
    proc = run(conf, "mailq")
    assert proc.returncode == 0
    assert env.qid in proc.stdout
    assert "sender@example.test" in proc.stdout
    assert "rcpt@remote.test" in proc.stdout
    assert proc.stdout.endswith("-- 1 Kbytes in 1 Request.\n")
    assert run(conf, "queue", "list").stdout == proc.stdout


def test_queue_show(
    conf: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(load_config(conf).queue_dir).create()
    env = spool.enqueue("s@example.test", ("r@remote.test",), b"Subject: hi\n\nbody\n")
    status, out, _ = cli(capsys, monkeypatch, "-c", str(conf), "queue", "show", env.qid)
    assert status == 0
    assert f"queue_id: {env.qid}\n" in out
    assert "recipient: <r@remote.test> pending" in out
    assert out.endswith("\n\nSubject: hi\n")
    status, _, err = cli(capsys, monkeypatch, "-c", str(conf), "queue", "show", "NOSUCH")
    assert (status, err) == (67, "tinymail: no queued message NOSUCH\n")
