"""The synchronous client of the daemon's control socket (used by sendmail, no event loop).

The socket is data_dir/run/control.sock. A path longer than sun_path allows (108 octets on
Linux) is reached through /proc/self/fd/N/control.sock, N being an O_PATH descriptor of its
directory, so deep data directories still work.

sendmail calls this on its start-up path, so the socket comes from `_socket`, the C module
behind `socket`: the `socket` module adds nothing used here (a blocking AF_UNIX connect, send,
recv) but its import (enum conversion of every constant, selectors, array) costs a few ms.
For the same reason nothing here imports pathlib, contextlib or typing.
"""

import _socket
import os

from tinymail.proto import control_wire as control

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: importing typing costs ~2 ms; mypy knows both
if TYPE_CHECKING:
    from pathlib import Path
    from types import TracebackType

SOCKET_NAME = "control.sock"
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


def request(
    data_dir: str | os.PathLike[str], payload: bytes, *, timeout: float = 30.0
) -> control.Reply | None:
    """Send one request and read the reply; None when no daemon listens (or it is not there).

    OSError other than "nobody listens" propagates (e.g. EACCES on the socket).
    """
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
