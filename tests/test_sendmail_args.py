"""sendmail option parsing: every flag, each real caller's exact argv, arguments as data."""

from __future__ import annotations

import pytest

from tinymail.sendmail_args import Mode, Options, UsageError, parse_args

# research/smtp-anchors.md 2a: the exact argv of real callers.
REAL_CALLERS = {
    "debian-cron": (["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"], False, ("root",)),
    "debian-cron-old": (["-i", "-FCronDaemon", "-B8BITMIME", "-oem", "root"], False, ("root",)),
    "cronie": (["-FCronDaemon", "-i", "-odi", "-oem", "-oi", "-t", "-f", "root"], True, ()),
    "vixie-cron": (["-FCronDaemon", "-odi", "-oem", "-oi", "-t"], True, ()),
    "systemd-cron": (["-i", "-B8BITMIME", "admin@example.test"], False, ("admin@example.test",)),
    "bsd-mailx": (["-i", "-m", "-v", "a@example.test"], False, ("a@example.test",)),
    "s-nail": (
        ["-i", "-m", "-v", "-f", "me@example.test", "-F", "Me", "--", "a@x.test", "-b@x.test"],
        False,
        ("a@x.test", "-b@x.test"),
    ),
    "mailutils": (["-oi", "-f", "me@example.test", "-t"], True, ()),
    "php": (["-t", "-i"], True, ()),
    "php-5th-arg": (["-t", "-i", "-f", "web@example.test"], True, ()),
    "unattended-upgrades": (["-oi", "-t"], True, ()),
    "logwatch-mdadm": (["-t"], True, ()),
    "git-send-email": (
        ["-f", "dev@example.test", "-i", "a@x.test", "b@x.test"],
        False,
        ("a@x.test", "b@x.test"),
    ),
}


@pytest.mark.parametrize("caller", sorted(REAL_CALLERS))
def test_real_caller_argv(caller: str) -> None:
    argv, extract, recipients = REAL_CALLERS[caller]
    opts = parse_args(argv)
    assert opts.mode is Mode.DELIVER
    assert opts.extract is extract
    assert opts.recipients == recipients
    assert opts.ignore_dots is (caller not in ("logwatch-mdadm",))


def test_cron_full_name_and_sender() -> None:
    opts = parse_args(["-FCronDaemon", "-i", "-odi", "-oem", "-oi", "-t", "-f", "root"])
    assert (opts.full_name, opts.sender) == ("CronDaemon", "root")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["-bm"], Options()),
        (["-bp"], Options(mode=Mode.MAILQ)),
        (["-bi"], Options(mode=Mode.NEWALIASES)),
        (["-I"], Options(mode=Mode.NEWALIASES)),
        (["-bs"], Options(mode=Mode.SMTP)),
        (["-q"], Options(mode=Mode.FLUSH)),
        (["-q30m"], Options(mode=Mode.FLUSH)),
        (["-qRexample.test"], Options(mode=Mode.FLUSH)),
        (["-qIABC123"], Options(mode=Mode.FLUSH, flush_qid="ABC123")),
        (["-ti"], Options(extract=True, ignore_dots=True)),
        (["-r", "x@y.test", "a"], Options(sender="x@y.test", recipients=("a",))),
        (["-fx@y.test"], Options(sender="x@y.test")),
        (["-F", "Full Name"], Options(full_name="Full Name")),
        (["-v"], Options(verbose=True)),
        (["-C", "/etc/t.toml"], Options(config="/etc/t.toml")),
        (["-B", "7BIT", "-N", "success,failure", "-R", "hdrs", "-V", "envid1"], Options()),
        (["-O", "DeliveryMode=b", "-odb", "-oA/etc/aliases", "-oem", "-oep"], Options()),
        (["-G", "-U", "-c", "-m", "-n", "-x", "-L", "tag", "-h", "17", "-X", "/tmp/l"], Options()),
        (["-A", "c", "-e", "m", "-p", "smtp"], Options()),
        (["--", "-t"], Options(recipients=("-t",))),
        (["a@x.test", "-t"], Options(extract=True, recipients=("a@x.test",))),
    ],
)
def test_flags(argv: list[str], expected: Options) -> None:
    assert parse_args(argv) == expected


@pytest.mark.parametrize(
    "argv",
    [["-bv"], ["-bd"], ["-bh"], ["-B", "BINARYMIME"], ["-qS"], ["-f"], ["-Z"], ["-k"]],
)
def test_usage_errors(argv: list[str]) -> None:
    with pytest.raises(UsageError):
        parse_args(argv)


@pytest.mark.parametrize(
    "argv",
    [
        ["-f", "a@x.test\nBcc: victim@x.test"],
        ["-F", "Name\r\nBcc: victim@x.test"],
        ["-FName\x00"],
        ["-t", "a@x.test\nTo: b@x.test"],
        ["--", "a@x.test\rX"],
        ["-F", "Evil\x85Next"],
    ],
)
def test_control_characters_in_arguments_are_refused(argv: list[str]) -> None:
    with pytest.raises(UsageError, match="control character"):
        parse_args(argv)
