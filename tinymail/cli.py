"""The `tinymail` command line: serve, check, user, newaliases, queue, mailq.

Errors are one line on stderr and an exit status from sysexits.h; never a
traceback. Heavy imports (trio, dnspython) happen only inside `serve`, so the
admin commands start fast.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Sequence
from pathlib import Path

from tinymail import __version__
from tinymail.config import Config, ConfigError, find_config, load_config, render
from tinymail.proto.control import QueueAction

EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_NOUSER = 67
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_CANTCREAT = 73
EX_TEMPFAIL = 75
EX_CONFIG = 78


CHANGES = {  # `tinymail queue` actions that change a queued message
    "delete": "remove queued messages without a bounce (as postsuper -d)",
    "hold": "keep queued messages out of delivery until released",
    "release": "put held messages back on their retry schedule",
}
CHANGE_WAIT = 900.0  # a delete waits for the attempt in flight; SMTP's DATA alone may take 600s
LOCK_WAIT = 30.0  # without a daemon: how long to wait for a one-shot delivery run to finish


class CLIError(Exception):
    """A one-line error for the user, with its exit status."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise CLIError(f"{self.prog}: {message}", EX_USAGE)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand except sendmail (which has its own)."""
    parser = _Parser(prog="tinymail", description="A complete mail server for small hosts.")
    parser.add_argument("-c", "--config", metavar="FILE", help="config file (TOML)")
    parser.add_argument("--version", action="version", version=f"tinymail {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.add_parser("serve", help="run the mail server")
    sub.add_parser("check", help="validate the config and print the effective config")
    sub.add_parser("newaliases", help="validate the aliases file; the server reloads it")
    sub.add_parser("mailq", help="list the mail queue")
    convert = sub.add_parser("convert-store", help="convert every mailbox (server stopped)")
    convert.add_argument("target", choices=("maildir", "mbox"))
    queue = sub.add_parser("queue", help="inspect and control the queue")
    qsub = queue.add_subparsers(dest="queue_command", metavar="ACTION", parser_class=_Parser)
    qsub.required = True
    qsub.add_parser("list", help="list queued messages")
    show = qsub.add_parser("show", help="show one queued message")
    show.add_argument("qid")
    flush = qsub.add_parser("flush", help="retry every queued message (or one) now, as sendmail -q")
    flush.add_argument("qid", nargs="?")
    for name, what in CHANGES.items():
        change = qsub.add_parser(name, help=what)
        change.add_argument("qids", nargs="+", metavar="ID")
    user = sub.add_parser("user", help="manage users")
    usub = user.add_subparsers(dest="user_command", metavar="ACTION", parser_class=_Parser)
    usub.required = True
    for name in ("add", "passwd"):
        p = usub.add_parser(name, help=f"{name} a user (password from a prompt or stdin)")
        p.add_argument("address")
        p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    delete = usub.add_parser("del", help="delete a user")
    delete.add_argument("address")
    usub.add_parser("list", help="list users")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    from tinymail.__main__ import sendmail_argv

    if (sendmail := sendmail_argv(args_list)) is not None:
        from tinymail.sendmail import main as sendmail_main

        return sendmail_main(sendmail[1], config_path=sendmail[0])
    try:
        args = build_parser().parse_args(args_list)
        if args.command is None:
            raise CLIError("tinymail: a command is required (try --help)", EX_USAGE)
        cfg = _config(args.config)
        return _dispatch(args, cfg)
    except CLIError as exc:
        print(exc, file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        return 130


def _config(path: str | None) -> Config:
    try:
        return load_config(find_config(path))
    except ConfigError as exc:
        raise CLIError(f"tinymail: config error: {exc}", EX_CONFIG) from None


def _dispatch(args: argparse.Namespace, cfg: Config) -> int:
    if args.command == "check":
        return _check(cfg)
    if args.command == "serve":
        from tinymail.net.serve import serve_forever

        try:
            return serve_forever(cfg)
        except ConfigError as exc:
            raise CLIError(f"tinymail: config error: {exc}", EX_CONFIG) from None
        except OSError as exc:
            raise CLIError(f"tinymail: cannot start: {exc}", EX_UNAVAILABLE) from None
    if args.command == "newaliases":
        return newaliases(cfg)
    if args.command == "convert-store":
        return _convert_store(cfg, args.target)
    if args.command == "mailq":
        return _queue_list(cfg)
    if args.command == "queue":
        if args.queue_command == "list":
            return _queue_list(cfg)
        if args.queue_command == "flush":
            return _queue_flush(cfg, args.qid)
        if args.queue_command in CHANGES:
            return queue_change(cfg, args.queue_command, args.qids)
        return _queue_show(cfg, args.qid)
    if args.command == "user":
        return _user(cfg, args)
    raise CLIError(f"tinymail: unknown command {args.command}", EX_USAGE)


def _check(cfg: Config) -> int:
    from tinymail.store.aliases import Aliases, AliasesError
    from tinymail.store.users import UserDB, UsersFileError

    problems: list[str] = []
    try:
        UserDB.load(cfg.users_file)
    except UsersFileError as exc:
        problems.append(str(exc))
    try:
        Aliases.load(cfg.aliases_file, frozenset(cfg.domains))
    except AliasesError as exc:
        problems.extend(exc.problems)
    if cfg.tls.cert:
        from tinymail.net.tls import TLSHolder

        try:
            TLSHolder.from_config(cfg.tls, cfg.data_dir)
        except ConfigError as exc:
            problems.append(str(exc))
    sys.stdout.write(render(cfg))
    if problems:
        for problem in problems:
            print(f"tinymail: config error: {problem}", file=sys.stderr)
        return EX_CONFIG
    return EX_OK


def newaliases(cfg: Config) -> int:
    """Validate the aliases file; a running server picks up a changed file by itself."""
    from tinymail.store.aliases import Aliases, AliasesError

    try:
        aliases = Aliases.load(cfg.aliases_file, frozenset(cfg.domains))
    except AliasesError as exc:
        for problem in exc.problems:
            print(f"newaliases: {problem}", file=sys.stderr)
        return EX_DATAERR
    print(f"newaliases: {cfg.aliases_file}: {len(aliases.table)} aliases")
    return EX_OK


def _read_password(address: str, from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
    else:
        if not sys.stdin.isatty():
            raise CLIError("tinymail: no terminal for a password prompt; use --password-stdin", 64)
        password = getpass.getpass(f"Password for {address}: ")
        if getpass.getpass("Again: ") != password:
            raise CLIError("tinymail: passwords do not match", EX_DATAERR)
    if not password:
        raise CLIError("tinymail: empty password", EX_DATAERR)
    return password


def _user(cfg: Config, args: argparse.Namespace) -> int:
    from tinymail.store import users

    path: Path = cfg.users_file
    try:
        if args.user_command == "list":
            for user in users.UserDB.load(path):
                print(user.address)
            return EX_OK
        if args.user_command == "del":
            print(f"deleted {users.delete_user(path, args.address)}")
            return EX_OK
        users.validate_address(args.address)
        password = _read_password(args.address, args.password_stdin)
        create = args.user_command == "add"
        addr = users.set_password(path, args.address, password, create=create)
        print(f"{'added' if create else 'password changed for'} {addr}")
        return EX_OK
    except LookupError as exc:
        raise CLIError(f"tinymail: {exc.args[0]}", EX_NOUSER) from None
    except ValueError as exc:
        raise CLIError(f"tinymail: {exc}", EX_DATAERR) from None
    except users.UsersFileError as exc:
        raise CLIError(f"tinymail: {exc}", EX_CONFIG) from None
    except OSError as exc:
        raise CLIError(f"tinymail: cannot write {path}: {exc.strerror}", EX_CANTCREAT) from None


def _queue_list(cfg: Config) -> int:
    from tinymail.queue.mailq import format_queue

    sys.stdout.write(format_queue(cfg.queue_dir))
    return EX_OK


def _queue_show(cfg: Config, qid: str) -> int:
    from tinymail.queue.mailq import show_item

    try:
        sys.stdout.write(show_item(cfg.queue_dir, qid))
    except LookupError:
        raise CLIError(f"tinymail: no queued message {qid}", EX_NOUSER) from None
    return EX_OK


def _queue_flush(cfg: Config, qid: str | None) -> int:
    from tinymail.proto.control import valid_qid
    from tinymail.sendmail import flush_queue

    if qid is not None and not valid_qid(qid):
        raise CLIError(f"tinymail: no queued message {qid}", EX_NOUSER)
    return flush_queue(cfg, qid)


def queue_change(cfg: Config, name: str, qids: Sequence[str]) -> int:
    """`tinymail queue delete|hold|release ID...`: through the daemon, else on the spool.

    With a daemon, each change is applied by its runner between delivery attempts and printed
    once applied. Without one, the spool is changed directly while holding queue/runner.lock,
    so no one-shot delivery run can attempt the message meanwhile. Exit status: 0, 67 when an
    ID is not queued, 75 when the change could not be made now (no daemon and the queue is not
    writable, or the daemon did not confirm in time); every ID is tried.
    """
    from tinymail.control_client import request
    from tinymail.proto import control

    action = QueueAction(name.upper())
    status = EX_OK
    direct: list[str] = []
    for qid in qids:
        if direct or not control.valid_qid(qid):
            direct.append(qid)  # a malformed ID is reported by the direct path, never sent
            continue
        try:
            reply = request(cfg.data_dir, control.change(action, qid), timeout=CHANGE_WAIT)
        except OSError as exc:
            reply = control.Reply(False, EX_TEMPFAIL, f"{qid}: no answer from the daemon: {exc}")
        if reply is None:
            direct.append(qid)  # no daemon listens: this and the rest go to the spool
        elif reply.ok:
            print(f"{qid}: {reply.text}")
        else:
            status = max(status, _report(reply.status, f"{qid}: {reply.text}"))
    if direct:
        status = max(status, _change_spool(cfg, action, direct))
    return status


def _report(status: int, text: str) -> int:
    print(f"tinymail: {text}", file=sys.stderr)
    return status


def _change_spool(cfg: Config, action: QueueAction, qids: Sequence[str]) -> int:
    import time

    from tinymail.queue.mailq import change
    from tinymail.queue.runlock import RunnerLock
    from tinymail.queue.spool import Spool

    if not cfg.queue_dir.is_dir():
        return max(_report(EX_NOUSER, f"no queued message {qid}") for qid in qids)
    try:
        lock = RunnerLock(cfg.queue_dir)
    except OSError as exc:
        why = f"cannot reach the tinymail daemon and cannot write the queue {cfg.queue_dir}"
        return _report(EX_TEMPFAIL, f"{why}: {exc.strerror}")
    with lock:
        deadline = time.monotonic() + LOCK_WAIT
        while not lock.try_acquire():  # a one-shot delivery run is busy: let it finish
            if time.monotonic() > deadline:
                return _report(EX_TEMPFAIL, "the queue is busy (queue/runner.lock); try again")
            time.sleep(0.1)
        status = EX_OK
        spool = Spool(cfg.queue_dir)
        for qid in qids:
            try:
                new = change(spool, qid, action)
            except LookupError:
                status = max(status, _report(EX_NOUSER, f"no queued message {qid}"))
            except OSError as exc:
                status = max(status, _report(EX_TEMPFAIL, f"{qid}: {exc}"))
            else:
                print(
                    f"{qid}: {'deleted' if new is None else ('held' if new.hold else 'released')}"
                )
    return status


def _convert_store(cfg: Config, target: str) -> int:
    from tinymail.queue.runlock import RunnerLock
    from tinymail.store.convert import convert_store

    try:
        cfg.queue_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock = RunnerLock(cfg.queue_dir)
    except OSError as exc:
        raise CLIError(f"tinymail: cannot lock the queue: {exc}", EX_CANTCREAT) from None
    try:
        if not lock.try_acquire():  # a running server or delivery holds the queue
            raise CLIError("tinymail: stop the server (and deliveries) first", EX_TEMPFAIL)
        done = convert_store(cfg.mail_dir, target)
    except (OSError, ValueError) as exc:
        raise CLIError(f"tinymail: cannot convert: {exc}", EX_CANTCREAT) from None
    finally:
        lock.close()
    kept = f"; old mail kept in {done.kept_at}" if done.kept_at else ""
    print(f"converted {done.messages} messages of {done.owners} owners to {target}{kept}")
    print(f'now set [store] format = "{target}" and start the server')
    return EX_OK
