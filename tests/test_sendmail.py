"""`sendmail` in-process: queueing, header completion, exit codes, mailq, newaliases, -bs, -q."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import BASE_CONFIG
from tinymail import sendmail
from tinymail.config import load_config
from tinymail.queue.model import QueueItem
from tinymail.queue.spool import Spool, read_content
from tinymail.quickconfig import SendmailConfig
from tinymail.sendmail_smtp import serve_stdio

# The embedded default makes the host name a local domain; so does this config.
CONFIG = BASE_CONFIG.replace(
    'domains = ["example.test", "localhost"]',
    'domains = ["example.test", "localhost", "mx.example.test"]',
)


class Spawns:
    """A fake one-shot starter: records what would have been started."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __call__(self, config: str, qid: str) -> None:
        self.calls.append((config, qid))


@pytest.fixture
def conf(make_config: Callable[..., Path]) -> Path:
    return make_config(base=CONFIG)


def send(conf: Path, argv: list[str], message: bytes, spawns: Spawns | None = None) -> int:
    return sendmail.main(
        argv, config_path=str(conf), stdin=io.BytesIO(message), spawn=spawns or Spawns()
    )


def queued(conf: Path) -> list[QueueItem]:
    spool = Spool(load_config(conf).queue_dir)
    return [spool.load(qid) for qid in spool.scan()]


def test_cron_debian_argv_queues_for_root_and_starts_delivery(conf: Path) -> None:
    spawns = Spawns()
    message = b"From: root (Cron Daemon)\nTo: root\nSubject: Cron <root@h> ls\n\nout\n.\nmore\n"
    assert send(conf, ["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"], message, spawns) == 0
    [item] = queued(conf)
    assert item.envelope.recipients == ("root@mx.example.test",)
    assert item.envelope.sender == "root@mx.example.test"
    assert item.envelope.origin.startswith("sendmail uid=")
    content = read_content(item)
    assert content.startswith(b"Received: by mx.example.test (tinymail, from userid ")
    assert f"id {item.qid};".encode() in content
    assert b"\nSubject: Cron <root@h> ls\n" in content and content.endswith(b"\nout\n.\nmore\n")
    assert b"\nDate: " in content and b"\nMessage-ID: <" in content
    assert content.count(b"From:") == 1  # the caller's From stays, none added
    assert spawns.calls == [(str(conf), item.qid)]


def test_t_with_to_cc_bcc_adds_to_argv_recipients_and_drops_bcc(conf: Path) -> None:
    message = (
        b"To: postmaster@example.test\nCc: b@example.net\nBcc: c@example.net\nSubject: s\n\nb\n"
    )
    assert send(conf, ["-t", "-i", "root"], message) == 0
    [item] = queued(conf)
    assert item.envelope.recipients == (
        "root@mx.example.test",
        "postmaster@example.test",
        "b@example.net",
        "c@example.net",
    )
    assert b"Bcc" not in read_content(item)


def test_header_completion_uses_f_and_F(conf: Path) -> None:
    assert send(conf, ["-f", "<bob@example.net>", "-F", 'Bob "B" Smith', "root"], b"\nx\n") == 0
    [item] = queued(conf)
    assert item.envelope.sender == "bob@example.net"
    assert b'\nFrom: "Bob \\"B\\" Smith" <bob@example.net>\n' in read_content(item)


def test_null_sender(conf: Path) -> None:
    assert send(conf, ["-f", "<>", "root"], b"Subject: x\n\ny\n") == 0
    [item] = queued(conf)
    assert item.envelope.sender == ""
    assert b"\nFrom: MAILER-DAEMON@mx.example.test\n" in read_content(item)


def test_lone_dot_ends_input_without_i(conf: Path) -> None:
    assert send(conf, ["-t"], b"To: root\r\n\r\nline\r\n.\r\nafter\r\n") == 0
    [item] = queued(conf)
    assert read_content(item).endswith(b"\n\nline\n")


@pytest.mark.parametrize(
    ("argv", "message", "status", "text"),
    [
        ([], b"Subject: x\n\n", 64, "recipient addresses must be specified"),
        (["-t"], b"Subject: x\n\n", 64, "no recipient addresses found"),
        (["-Z", "root"], b"", 64, "invalid option"),
        (["-f", "a@x.test\nBcc: evil@x.test", "root"], b"", 64, "control character"),
        (["-F", "N\rBcc: evil@x.test", "root"], b"", 64, "control character"),
        (["root\nBcc: evil@x.test"], b"", 64, "control character"),
        (["a b@x.test"], b"", 64, "bad recipient"),
        (["-t"], b"To: a@b..test\n\n", 65, "bad address"),
        (["-t"], b"To: a\x01b@x.test\n\n", 65, "control character"),
        (["nobody-here@example.test"], b"x\n", 67, "no such local user"),
    ],
)
def test_refusals_exit_codes_and_queue_nothing(
    conf: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: bytes,
    status: int,
    text: str,
) -> None:
    spawns = Spawns()
    assert send(conf, argv, message, spawns) == status
    err = capsys.readouterr().err
    assert err.startswith("sendmail: ") and err.count("\n") == 1 and text in err
    assert queued(conf) == [] if Spool(load_config(conf).queue_dir).active.exists() else True
    assert spawns.calls == []


def test_config_error_is_78(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("no_such_key = 1\n")
    assert send(bad, ["root"], b"x\n") == 78
    assert "config error" in capsys.readouterr().err


def test_queue_that_cannot_be_created_is_73(
    make_config: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "data").write_text("a file where the data dir should be")
    conf = make_config(base=CONFIG)
    assert send(conf, ["root"], b"x\n") == 73
    assert "cannot create the queue" in capsys.readouterr().err


def test_known_local_names_pass_the_check(conf: Path) -> None:
    data = load_config(conf).data_dir
    data.mkdir(parents=True)
    (data / "aliases").write_text("team: root\n")
    assert send(conf, ["team", "postmaster@example.test", "root@localhost"], b"x\n") == 0
    [item] = queued(conf)
    assert len(item.envelope.recipients) == 3


def test_verbose_prints_the_queue_id(conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert send(conf, ["-v", "root"], b"x\n") == 0
    [item] = queued(conf)
    assert f"queued as {item.qid}" in capsys.readouterr().err


def test_mailq_lists_the_queue(conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert send(conf, ["-bp"], b"") == 0
    assert capsys.readouterr().out == "Mail queue is empty\n"
    assert send(conf, ["-f", "bob@example.net", "root", "x@example.net"], b"x\n") == 0
    [item] = queued(conf)
    assert send(conf, ["-bp"], b"") == 0
    out = capsys.readouterr().out
    assert out.startswith("-Queue ID-")
    assert item.qid in out and "bob@example.net" in out and "x@example.net" in out
    assert out.rstrip().endswith("in 1 Request.")


def test_newaliases_reports_errors(conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = load_config(conf).data_dir
    data.mkdir(parents=True)
    (data / "aliases").write_text("ok: root\nbad: |/bin/sh -c evil\n")
    assert send(conf, ["-bi"], b"") == 65
    err = capsys.readouterr().err
    assert err.startswith("newaliases: ") and "line 2" in err
    (data / "aliases").write_text("ok: root\n")
    assert send(conf, ["-I"], b"") == 0
    assert "1 aliases" in capsys.readouterr().out


def test_flush_without_daemon_delivers_in_the_foreground(conf: Path) -> None:
    assert send(conf, ["root"], b"Subject: q\n\nbody\n") == 0
    assert send(conf, ["-q"], b"") == 0
    assert queued(conf) == []
    new = load_config(conf).mail_dir / "root" / "new"
    [delivered] = list(new.iterdir())
    assert b"Subject: q\n" in delivered.read_bytes()


def test_bs_speaks_smtp_on_stdin_and_stdout(conf: Path) -> None:
    spawns = Spawns()
    dialogue = (
        b"EHLO localhost\r\nMAIL FROM:<bob@example.net>\r\nRCPT TO:<root@localhost>\r\n"
        b"RCPT TO:<bad address>\r\nDATA\r\nSubject: bs\r\n\r\n..dot\r\n.\r\nQUIT\r\n"
    )
    out = io.BytesIO()
    assert serve_stdio(load_config(conf), io.BytesIO(dialogue), out, spawn=spawns) == 0
    replies = out.getvalue().decode()
    assert replies.startswith("220 mx.example.test")
    assert "queued as" in replies and replies.rstrip().split("\r\n")[-1].startswith("221")
    [item] = queued(conf)
    assert item.envelope.recipients == ("root@localhost",)
    assert read_content(item).endswith(b"\n\n.dot\n")  # dot-unstuffed, LF line ends
    assert len(spawns.calls) == 1


def test_missing_queue_subdirectories_are_created(conf: Path) -> None:
    assert send(conf, ["root"], b"x\n") == 0
    queue = load_config(conf).queue_dir
    for item in queued(conf):
        (queue / "active" / item.qid).unlink()
    (queue / "active").rmdir()
    (queue / "incoming").rmdir()
    assert send(conf, ["root"], b"y\n") == 0
    [item] = queued(conf)
    assert read_content(item).endswith(b"\ny\n")


@pytest.mark.parametrize(
    ("users", "aliases", "rcpt", "known"),
    [
        ("carol@example.test:{PLAIN}x\n", "", "carol@example.test", True),
        ("carol@example.test:{PLAIN}x\n", "", "Carol@Example.TEST", True),
        ("carol@example.test:{PLAIN}x\n", "", "dave@example.test", False),
        # an alias of the same name wins over the user: the resolver decides (here: nobody)
        ("carol@example.test:{PLAIN}x\n", "carol: nobody-here\n", "carol@example.test", False),
        ("carol@example.test:{PLAIN}x\n", "carol@example.test: x\n", "carol@example.test", False),
        ("carol@example.test:{PLAIN}x\n", "ops: carol\n", "ops@example.test", True),
        ("# carol@example.test:{PLAIN}x\n", "", "carol@example.test", False),
    ],
)
def test_local_recipient_check_matches_the_resolver(
    conf: Path, users: str, aliases: str, rcpt: str, known: bool
) -> None:
    """The users-file scan (no resolver imports) only ever answers what the resolver would."""
    cfg = load_config(conf)
    cfg.users_file.parent.mkdir(parents=True, exist_ok=True)
    cfg.users_file.write_text(users)
    cfg.aliases_file.write_text(aliases)
    light = SendmailConfig.from_config(cfg)
    listed = sendmail._Listed(light)
    assert listed.plain_user(rcpt) <= known  # the scan never claims more than the resolver
    assert (sendmail.unknown_local_recipient(light, [rcpt]) is None) is known
