"""sendmail(1) command-line options, parsed the way Postfix's sendmail does.

Rules / theory (research/smtp-anchors.md 2b):
- getopt semantics with Postfix's option string "A:B:C:F:GIL:N:O:R:UV:X:b:ce:f:h:imno:p:r:q:tvx":
  flags may be clustered (`-ti`), an option argument may be attached (`-FCronDaemon`) or the
  next word (`-F CronDaemon`); `--` ends the options. Unlike getopt, options after the first
  recipient are still options, as Postfix's GNU-getopt build accepts them (`-oi -t rcpt -f x`).
- Options that mean nothing here (`-oem`, `-odi`, `-m`, `-G`, `-U`, `-L`, ...) are accepted
  and ignored; we are more lenient than Postfix's code, which exits 64 on `-n` and `-X file`
  although its own man page calls both ignored.
- `-B` takes only 7BIT or 8BITMIME (Postfix: anything else is EX_USAGE).
- Arguments are data: a control character in `-f`, `-F` or a recipient is a usage error, so
  nothing given on the command line can ever become a header line or an envelope field.
- Pure: no I/O. `parse_args` raises `UsageError` with a one-line message.
"""

from tinymail.mail.compose import CONTROL_CHARACTERS
from tinymail.record import Record

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: importing typing costs ~2 ms; mypy knows both
if TYPE_CHECKING:
    from collections.abc import Sequence

# Options that take an argument (Postfix getopt string, plus -r as an alias of -f).
_WITH_ARG = frozenset("ABCFLNORVXbefhopr")
_NO_ARG = frozenset("GIUcimntvx")
# Control characters (C0, DEL, C1): never allowed in argument data.


class UsageError(ValueError):
    """A bad command line: one line for the user, exit status 64 (EX_USAGE)."""


class Mode:
    """What the invocation does (the `-b` family, `-q` and `-I`): `Options.mode` is one of these.

    Plain strings, not an enum: `enum` (and `re`, which needs it) cost sendmail ~2 ms to import.
    """

    DELIVER = "deliver"  # -bm, the default: read a message from stdin and queue it
    MAILQ = "mailq"  # -bp
    NEWALIASES = "newaliases"  # -bi, -I
    SMTP = "smtp"  # -bs: SMTP on stdin/stdout
    FLUSH = "flush"  # -q: run the queue now


class Options(Record):
    """The parsed command line."""

    __slots__ = (
        "config",
        "extract",
        "flush_qid",
        "full_name",
        "ignore_dots",
        "mode",
        "recipients",
        "sender",
        "verbose",
    )

    def __init__(
        self,
        *,
        mode: str = Mode.DELIVER,
        extract: bool = False,
        ignore_dots: bool = False,
        sender: str | None = None,
        full_name: str | None = None,
        verbose: bool = False,
        config: str | None = None,
        flush_qid: str | None = None,
        recipients: tuple[str, ...] = (),
    ) -> None:
        self.mode = mode
        self.extract = extract  # -t: recipients from the headers too
        self.ignore_dots = ignore_dots  # -i / -oi: a lone "." does not end the message
        self.sender = sender  # -f / -r, as given (None: the invoking user)
        self.full_name = full_name  # -F
        self.verbose = verbose  # -v
        self.config = config  # -C FILE: the tinymail config file
        self.flush_qid = flush_qid  # -qIQID
        self.recipients = recipients


def check_text(what: str, value: str) -> str:
    """Refuse control characters (newline, CR, NUL, ...) in argument data; returns `value`."""
    if not CONTROL_CHARACTERS.isdisjoint(value):
        raise UsageError(f"{what} contains a control character: refused")
    return value


def parse_args(argv: "Sequence[str]") -> Options:
    """Parse sendmail arguments (without the program name) into `Options`."""
    opts: dict[str, object] = {}
    recipients: list[str] = []
    words = list(argv)
    i = 0
    only_recipients = False
    while i < len(words):
        word = words[i]
        i += 1
        if only_recipients or not word.startswith("-") or word == "-":
            recipients.append(check_text("recipient", word))
            continue
        if word == "--":
            only_recipients = True
            continue
        pos = 1
        while pos < len(word):
            flag = word[pos]
            pos += 1
            if flag in _WITH_ARG:
                if pos < len(word):
                    value, pos = word[pos:], len(word)
                elif i < len(words):
                    value, i = words[i], i + 1
                else:
                    raise UsageError(f"option requires an argument -- '{flag}'")
                _option_with_arg(flag, value, opts)
            elif flag in _NO_ARG:
                _flag(flag, opts)
            elif flag == "q":
                # -q takes an optional attached argument only (getopt "q::" style in practice).
                _queue_option(word[pos:], opts)
                pos = len(word)
            else:
                raise UsageError(f"invalid option -- '{flag}'")
    return Options(recipients=tuple(recipients), **opts)  # type: ignore[arg-type]


def _flag(flag: str, opts: dict[str, object]) -> None:
    if flag == "t":
        opts["extract"] = True
    elif flag == "i":
        opts["ignore_dots"] = True
    elif flag == "v":
        opts["verbose"] = True
    elif flag == "I":
        opts["mode"] = Mode.NEWALIASES
    # -G -U -c -m -n -x: accepted and ignored (research 2b).


def _option_with_arg(flag: str, value: str, opts: dict[str, object]) -> None:
    if flag in "fr":
        opts["sender"] = check_text("sender (-f)", value)
    elif flag == "F":
        opts["full_name"] = check_text("full name (-F)", value)
    elif flag == "C":
        opts["config"] = value
    elif flag == "b":
        opts["mode"] = _b_mode(value)
    elif flag == "B":
        if value.upper() not in ("7BIT", "8BITMIME"):
            raise UsageError(f"-B: bad body type {value!r} (use 7BIT or 8BITMIME)")
    elif flag == "o":
        # -oi is -i (sendmail's IgnoreDots option); -oem, -odi, -oA... mean nothing here.
        if value == "i":
            opts["ignore_dots"] = True
    elif flag == "N":
        check_text("-N", value)
    elif flag == "V":
        check_text("-V", value)
    # -A -L -O -R -X -e -h -p: accepted and ignored.


def _b_mode(value: str) -> str:
    modes = {"m": Mode.DELIVER, "p": Mode.MAILQ, "i": Mode.NEWALIASES, "s": Mode.SMTP}
    if value in modes:
        return modes[value]
    if value in ("h", "H"):
        raise UsageError(f"-b{value}: no persistent host status in tinymail")
    raise UsageError(f"-b{value}: unsupported mode (use -bm, -bp, -bi, -bs)")


def _queue_option(value: str, opts: dict[str, object]) -> None:
    if value.startswith("I"):
        opts["mode"] = Mode.FLUSH
        opts["flush_qid"] = check_text("-qI", value[1:]) or None
    elif value.startswith("S"):
        raise UsageError("-qS: unsupported (use -q or -qR)")
    else:
        # -q, -qRsite (one queue: flush everything) and -q<interval> (sendmail's daemon
        # interval; a one-off flush is the useful meaning without a sendmail daemon).
        opts["mode"] = Mode.FLUSH
