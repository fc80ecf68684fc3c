"""`sendmail` (and `-bp` mailq, `-bi` newaliases, `-bs`, `-q`): the drop-in /usr/sbin/sendmail.

Theory:
- Synchronous and light: the queueing path (-bm, the default) must start about as fast as a
  bare interpreter (bench/sendmail_latency.py, tests/test_sendmail_imports.py), so it imports
  only modules the interpreter has already loaded, builtins (marshal, pwd) and tinymail
  modules written for it: quickconfig (the config values it needs, usually from a per-user
  cache), qfile (the queue file), control_client (the trigger), compose, addresses (-t),
  record. The control socket's modules load only when a request is made.
  No trio, argparse, email, re, enum, typing, dataclasses, pathlib, json or tomllib, and not
  even __future__: these modules quote the annotations that name types imported only for
  type checking. The other modes load the whole config (config.py).
- Exit 0 only after the message file and queue/active/ are fsynced (Spool promise). Every
  error is one line on stderr with a sysexits.h status: 64 usage, 65 data, 67 unknown local
  recipient, 73/75 queue not writable, 78 config.
- After queueing, the daemon is nudged through its trigger FIFO, data_dir/run/trigger (the
  control socket when the FIFO cannot tell); without a daemon a detached one-shot delivery
  run is started (queue/oneshot.py) and we return at once.
- When the queue cannot be written by the caller (system install, queue owned by the tinymail
  user), the message goes to the daemon over the control socket (SUBMIT), which takes the
  caller's identity from SO_PEERCRED; without a daemon that is exit 75.
- Recipients and senders without a domain get @hostname, like Postfix's append_at_myorigin
  with myorigin = $myhostname; so cron's `root` is root@hostname, a local system account.
"""

import errno
import os
import pwd
import sys
import time

from tinymail import quickconfig
from tinymail.control_client import request, trigger
from tinymail.mail.compose import (
    ComposeError,
    compose,
    frame_input,
    parse_recipient_argument,
    qualify,
    received_by,
    rfc5322_date,
)
from tinymail.queue import qfile
from tinymail.quickconfig import ConfigError, SendmailConfig
from tinymail.record import Record
from tinymail.sendmail_args import Mode, Options, UsageError, parse_args

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: importing typing costs ~2 ms; mypy knows both
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import BinaryIO

    from tinymail.config import Config

    Spawner = Callable[[str, str], None]  # (config path or "", queue ID): start a one-shot run

EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_NOUSER = 67
EX_CANTCREAT = 73
EX_TEMPFAIL = 75
EX_NOPERM = 77
EX_CONFIG = 78


class SendmailError(Exception):
    """One line for stderr, with its exit status."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class Prepared(Record):
    """A composed message and its envelope, before it reaches the queue."""

    __slots__ = ("extract", "from_address", "message", "recipients", "sender")

    def __init__(
        self,
        *,
        sender: str,
        recipients: tuple[str, ...],
        message: bytes,
        from_address: str,
        extract: bool,
    ) -> None:
        self.sender = sender
        self.recipients = recipients
        self.message = message  # framed input (LF line ends), headers not yet completed
        self.from_address = from_address  # for a missing From: the sender, or MAILER-DAEMON
        self.extract = extract  # -t


def main(
    argv: "Sequence[str]",
    *,
    prog: str = "sendmail",
    config_path: str | None = None,
    stdin: "BinaryIO | None" = None,
    spawn: "Spawner | None" = None,
) -> int:
    """Run sendmail with `argv` (options and recipients, no program name); returns the status."""
    try:
        opts = parse_args(argv)
        path = opts.config or config_path
        if opts.mode == Mode.DELIVER:
            settings = _settings(path)
            return _deliver(opts, settings, stdin or sys.stdin.buffer, spawn)
        return _run(opts, _config(path), stdin or sys.stdin.buffer, spawn)
    except UsageError as exc:
        return _fail(prog, str(exc), EX_USAGE)
    except SendmailError as exc:
        return _fail(prog, str(exc), exc.status)
    except KeyboardInterrupt:
        return 130


def _fail(prog: str, message: str, status: int) -> int:
    print(f"{prog}: {message}", file=sys.stderr)
    return status


def _settings(path: str | None) -> SendmailConfig:
    """What queueing needs of the config: quickconfig, not the whole of config.py."""
    try:
        return quickconfig.load(path)
    except ConfigError as exc:
        raise SendmailError(f"config error: {exc}", EX_CONFIG) from None


def _config(path: str | None) -> "Config":
    from tinymail.config import find_config, load_config

    try:
        return load_config(find_config(path))
    except ConfigError as exc:
        raise SendmailError(f"config error: {exc}", EX_CONFIG) from None


def _deliver(opts: Options, cfg: SendmailConfig, stdin: "BinaryIO", spawn: "Spawner | None") -> int:
    """The default mode (-bm): read the message, queue it, get it delivered."""
    prepared = prepare(opts, cfg, _read_input(stdin, cfg.max_message_size))
    qid = queue_message(cfg, prepared, opts.full_name, spawn=spawn)
    if opts.verbose:
        print(f"sendmail: queued as {qid}", file=sys.stderr)
    return EX_OK


def _run(opts: Options, cfg: "Config", stdin: "BinaryIO", spawn: "Spawner | None") -> int:
    """-bp, -bi, -q and -bs, with the whole config."""
    if opts.mode == Mode.MAILQ:
        return mailq(cfg)
    if opts.mode == Mode.NEWALIASES:
        from tinymail.cli import newaliases

        return newaliases(cfg)
    if opts.mode == Mode.FLUSH:
        return flush_queue(cfg, opts.flush_qid)
    from tinymail.sendmail_smtp import serve_stdio

    return serve_stdio(cfg, stdin, sys.stdout.buffer, spawn=spawn)


def _read_input(stdin: "BinaryIO", limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := stdin.read(65536):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit + 65536:  # framing (CRLF -> LF, lone dot) only shrinks the text
            raise SendmailError(f"message too large (limit {limit} bytes)", EX_DATAERR)
    return b"".join(chunks)


def login_name() -> str:
    """The invoking user's account name (Postfix: "no login name found" is fatal)."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        raise SendmailError(f"no login name found for user ID {os.getuid()}", EX_USAGE) from None


def prepare(opts: Options, cfg: SendmailConfig, data: bytes) -> Prepared:
    """Frame the input and settle the envelope (sender, recipients) from arguments and -t."""
    origin = cfg.hostname
    if opts.sender is not None:
        given = opts.sender.strip()
        given = given[1:-1] if given.startswith("<") and given.endswith(">") else given
        sender = _qualify_arg(given, origin, "sender") if given else ""
    else:
        sender = _qualify_arg(login_name(), origin, "sender")
    recipients: list[str] = []
    for argument in opts.recipients:
        try:
            found = parse_recipient_argument(argument)
        except ComposeError as exc:
            raise SendmailError(f"bad recipient {argument!r}: {exc}", EX_USAGE) from None
        recipients.extend(_qualify_arg(a, origin, "recipient") for a in found)
    message = frame_input(data, ignore_dots=opts.ignore_dots)
    from_address = sender or f"MAILER-DAEMON@{origin}"
    return Prepared(
        sender=sender,
        recipients=tuple(recipients),
        message=message,
        from_address=from_address,
        extract=opts.extract,
    )


def _qualify_arg(address: str, origin: str, what: str) -> str:
    try:
        return qualify(address, origin)
    except ComposeError as exc:
        raise SendmailError(f"bad {what}: {exc}", EX_USAGE) from None


def queue_message(
    cfg: SendmailConfig, prepared: Prepared, full_name: str | None, *, spawn: "Spawner | None"
) -> str:
    """Complete, check and queue the message, then get it delivered; returns its queue ID."""
    root = cfg.queue_dir
    try:
        try:
            owner = os.stat(root).st_uid
        except FileNotFoundError:
            qfile.make_dirs(root)
            owner = os.stat(root).st_uid
        if owner != os.geteuid():
            # A system queue owned by the tinymail user: even root must not leave files there
            # that the daemon cannot read (and must not deliver as root): hand it over.
            return _submit_to_daemon(cfg, prepared, full_name)
    except PermissionError:
        return _submit_to_daemon(cfg, prepared, full_name)
    except OSError as exc:
        raise SendmailError(f"cannot create the queue {root}: {exc}", EX_CANTCREAT) from None
    qid = qfile.new_qid()
    now = time.time()
    date = rfc5322_date(now)
    composed, recipients = _compose(cfg, prepared, full_name, qid, date)
    content = received_by(cfg.hostname, os.getuid(), qid, date) + composed
    origin = f"sendmail uid={os.getuid()}"
    fields = qfile.envelope_fields(
        qid, prepared.sender, list(recipients), now, len(content), origin, ""
    )
    meta = qfile.encode_envelope(fields)
    try:
        try:
            qfile.store(root, qid, content, meta)
        except FileNotFoundError:  # a subdirectory is missing: create it, then try again
            qfile.make_dirs(root)
            qfile.store(root, qid, content, meta)
    except PermissionError:
        return _submit_to_daemon(cfg, prepared, full_name)
    except OSError as exc:
        status = EX_CANTCREAT if exc.errno in (errno.EROFS, errno.ENOTDIR) else EX_TEMPFAIL
        raise SendmailError(f"cannot write the queue: {exc.strerror or exc}", status) from None
    _deliver_soon(cfg, qid, spawn)
    return qid


def _compose(
    cfg: SendmailConfig, prepared: Prepared, full_name: str | None, qid: str, date: str
) -> tuple[bytes, tuple[str, ...]]:
    """Header completion and -t, the recipient checks; returns (content, recipients)."""
    extract = prepared.extract
    try:
        composed = compose(
            prepared.message,
            extract=extract,
            from_address=prepared.from_address,
            full_name=full_name,
            date=date,
            message_id=f"<{date_stamp()}.{qid}@{cfg.hostname}>",
        )
        extracted = [qualify(a, cfg.hostname) for a in composed.header_recipients]
    except ComposeError as exc:
        raise SendmailError(str(exc), EX_DATAERR) from None
    recipients = tuple(dict.fromkeys([*prepared.recipients, *extracted]))
    if not recipients:
        why = (
            "no recipient addresses found in message header"
            if extract
            else "recipient addresses must be specified on the command line or via the -t option"
        )
        raise SendmailError(why, EX_USAGE)
    if len(composed.content) > cfg.max_message_size:
        raise SendmailError(f"message too large (limit {cfg.max_message_size} bytes)", EX_DATAERR)
    unknown = unknown_local_recipient(cfg, recipients)
    if unknown is not None:
        raise SendmailError(f"<{unknown}>: no such local user or alias", EX_NOUSER)
    return composed.content, recipients


def _deliver_soon(cfg: SendmailConfig, qid: str, spawn: "Spawner | None") -> None:
    """Nudge the daemon; without one, start a detached one-shot delivery run."""
    running = trigger(cfg.data_dir, qid)
    if running is None:  # cannot tell through the FIFO: ask over the control socket
        from tinymail.proto import control_wire as control

        try:
            running = request(cfg.data_dir, control.nudge(qid), timeout=10.0) is not None
        except OSError:
            running = False  # queued anyway; the one-shot run will find the daemon or deliver
    if not running:
        if spawn is None:
            from tinymail.queue.oneshot import spawn as spawn_oneshot

            spawn = spawn_oneshot
        try:
            spawn(cfg.config_arg, qid)
        except OSError as exc:
            # Queued is queued: exit 0 stays true; the next run or the daemon delivers it.
            print(f"sendmail: queued as {qid}, but no delivery started: {exc}", file=sys.stderr)


def _submit_to_daemon(cfg: SendmailConfig, prepared: Prepared, full_name: str | None) -> str:
    """The caller cannot write the queue: hand the message to the daemon (SO_PEERCRED)."""
    from tinymail.proto import control_wire as control

    date = rfc5322_date(time.time())
    content, recipients = _compose(cfg, prepared, full_name, qfile.new_qid(), date)
    try:
        reply = request(cfg.data_dir, control.submit(recipients, content))
    except OSError as exc:
        raise SendmailError(f"cannot reach the tinymail daemon: {exc}", EX_TEMPFAIL) from None
    if reply is None:
        raise SendmailError(
            f"cannot write the queue {cfg.queue_dir} and no tinymail daemon is running "
            "to accept the message (start `tinymail serve`)",
            EX_TEMPFAIL,
        )
    if not reply.ok:
        raise SendmailError(f"the daemon refused the message: {reply.text}", reply.status)
    return reply.text


def mailq(cfg: "Config") -> int:
    """`mailq` / `sendmail -bp`: the Postfix-style queue listing."""
    from tinymail.queue.mailq import format_queue

    try:
        listing = format_queue(cfg.queue_dir)
    except PermissionError:
        return _fail("mailq", f"cannot read the queue {cfg.queue_dir}: permission denied", 77)
    sys.stdout.write(listing)
    return EX_OK


def flush_queue(cfg: "Config", qid: str | None = None) -> int:
    """`sendmail -q` / `tinymail queue flush`: retry now, by the daemon or in the foreground."""
    from tinymail.proto import control_wire as control

    try:
        reply = request(cfg.data_dir, control.flush(qid))
    except OSError as exc:
        return _fail("sendmail", f"cannot reach the tinymail daemon: {exc}", EX_TEMPFAIL)
    if reply is not None:
        return EX_OK if reply.ok else _fail("sendmail", reply.text, reply.status)
    from tinymail.queue.oneshot import run_once

    try:
        return run_once(cfg, force=True)
    except PermissionError as exc:
        return _fail("sendmail", f"cannot run the queue: {exc}", EX_NOPERM)


def date_stamp() -> str:
    """YYYYMMDDhhmmss in local time, the first part of Postfix-style Message-IDs."""
    return time.strftime("%Y%m%d%H%M%S")


def unknown_local_recipient(cfg: SendmailConfig, recipients: "Sequence[str]") -> str | None:
    """The first recipient in a local domain that nobody has, or None.

    System accounts are checked first (cheap, and cron mails root), then whether the users
    file plainly lists the address with no alias in the way (a scan of two small files,
    without the resolver's imports); only other recipients go through the full resolver.
    Files this caller cannot read are skipped.
    """
    from_files: Callable[[str], bool] | None = None
    listed: _Listed | None = None
    for rcpt in recipients:
        local, _, domain = rcpt.rpartition("@")
        if not cfg.is_local_domain(domain) or _system_account(local.lower()):
            continue
        if listed is None:
            listed = _Listed(cfg)
        if listed.plain_user(rcpt):
            continue
        if from_files is None:
            from_files = _file_resolver(cfg)
        if not from_files(rcpt):
            return rcpt
    return None


class _Listed:
    """The user addresses and alias names of the users and aliases files, read as text.

    A recipient that is a user and no alias resolves to that user's mailbox (resolve_local);
    this answers that question without importing the resolver, users and aliases modules,
    which cost more than the rest of a sendmail run. Anything else is for the resolver.
    """

    def __init__(self, cfg: SendmailConfig) -> None:
        self.users = _names(cfg.users_file, skip_indented=False)
        self.aliases = _names(cfg.aliases_file, skip_indented=True)

    def plain_user(self, rcpt: str) -> bool:
        """True when `rcpt` is listed in the users file and no alias could rewrite it."""
        addr = rcpt.lower()
        local = addr.rpartition("@")[0]
        return (
            self.users is not None
            and self.aliases is not None
            and addr in self.users
            and addr not in self.aliases
            and local not in self.aliases
        )


def _names(path: str, skip_indented: bool) -> "set[str] | None":
    """The lower-cased names before the first ':' of each entry; None if unreadable."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return set()
    except OSError:
        return None
    names = set()
    for raw in data.split(b"\n"):
        line = raw.strip()
        if not line or line.startswith(b"#") or (skip_indented and raw[:1] in (b" ", b"\t")):
            continue
        names.add(line.partition(b":")[0].strip().decode("utf-8", "replace").lower())
    return names


def _system_account(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except (KeyError, UnicodeEncodeError):
        return False
    return True


def _file_resolver(cfg: SendmailConfig) -> "Callable[[str], bool]":
    from pathlib import Path

    from tinymail.delivery.resolve import resolve_local
    from tinymail.store.aliases import Aliases, AliasesError
    from tinymail.store.users import UserDB, UsersFileError

    try:
        users = UserDB.load(Path(cfg.users_file))
        aliases = Aliases.load(Path(cfg.aliases_file), frozenset(cfg.domains))
    except (OSError, UsersFileError, AliasesError):
        return lambda _rcpt: True  # cannot tell here: the delivery agent will decide

    def known(rcpt: str) -> bool:
        found = resolve_local(
            rcpt,
            users=users,
            aliases=aliases,
            local_domains=cfg.domains,
            system_account=_system_account,
        )
        return found is not None

    return known
