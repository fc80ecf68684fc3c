"""The synchronous client of the daemon's control socket and trigger FIFO (sendmail, no loop).

The trigger (data_dir/run/trigger, format in proto/trigger.py) nudges the daemon without an
answer; the socket, data_dir/run/control.sock, carries requests that need one. A socket path
longer than sun_path allows (108 octets on Linux) is reached through
/proc/self/fd/N/control.sock, N being an O_PATH descriptor of its directory, so deep data
directories still work.

sendmail calls this on its start-up path, and usually only `trigger`: `request` imports what
it needs when called. The socket comes from `_socket`, the C module behind `socket`: the
`socket` module adds nothing used here (a blocking AF_UNIX connect, send, recv) but its import
(enum conversion of every constant, selectors, array) costs a few ms. For the same reason
nothing here imports pathlib, contextlib or typing.
"""

import errno
import os
import stat

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: importing typing costs ~2 ms; mypy knows both
if TYPE_CHECKING:
    from pathlib import Path
    from types import TracebackType

    from tinymail.proto import control_wire as control

SOCKET_NAME = "control.sock"
TRIGGER_NAME = "trigger"
_SUN_PATH_MAX = 107  # sizeof(sun_path) - 1 on Linux


def socket_path(data_dir: "Path") -> "Path":
    """Where the daemon listens: data_dir/run/control.sock."""
    return data_dir / "run" / SOCKET_NAME


class bindable:  # lowercase: used like the function it was, `with bindable(path) as name`
    """A name for `path` short enough for AF_UNIX (see the module docstring).

    A class, not a contextlib.contextmanager: sendmail would pay ~1 ms to import contextlib.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = os.fspath(path)
        self._fd = -1

    def __enter__(self) -> str:
        if len(os.fsencode(self._path)) <= _SUN_PATH_MAX:
            return self._path
        directory, name = os.path.split(self._path)
        self._fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        return f"/proc/self/fd/{self._fd}/{name}"

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: "TracebackType | None",
    ) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)


def trigger_path(data_dir: "Path") -> "Path":
    """The daemon's trigger FIFO: data_dir/run/trigger."""
    return data_dir / "run" / TRIGGER_NAME


def trigger(data_dir: str | os.PathLike[str], qid: str) -> bool | None:
    """Nudge the daemon about `qid` through its FIFO, without waiting.

    True when a daemon holds the FIFO open (it reads the line), False when none does (no FIFO,
    or no reader: the daemon stopped), None when this caller cannot tell (e.g. the FIFO is
    not its to write, or is full): then `request` with a NUDGE is the way to ask.
    """
    path = os.path.join(data_dir, "run", TRIGGER_NAME)
    try:
        # O_NONBLOCK: fails with ENXIO at once when nobody reads, instead of waiting for one.
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        return False if exc.errno == errno.ENXIO else None
    try:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return None
        os.write(fd, qid.encode("ascii") + b"\n")  # one write: lines never interleave
    except BrokenPipeError:
        return False  # the reader closed it between our open and write
    except OSError:
        return None  # full (a daemon that is far behind) or another failure
    finally:
        os.close(fd)
    return True


def request(
    data_dir: str | os.PathLike[str], payload: bytes, *, timeout: float = 30.0
) -> "control.Reply | None":
    """Send one request and read the reply; None when no daemon listens (or it is not there).

    OSError other than "nobody listens" propagates (e.g. EACCES on the socket).
    """
    import _socket

    from tinymail.proto import control_wire as control

    path = os.path.join(data_dir, "run", SOCKET_NAME)
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        try:
            with bindable(path) as name:
                sock.connect(name)
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
            return None
        sock.sendall(payload)
        sock.shutdown(_socket.SHUT_WR)
        reply = bytearray()
        while b"\n" not in reply and len(reply) < control.MAX_LINE:
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
        if not reply:
            return None  # the daemon went away mid-request
        return control.parse_reply(bytes(reply).split(b"\n", 1)[0])
    finally:
        sock.close()
