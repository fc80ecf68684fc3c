"""The synchronous client of the daemon's control socket (used by sendmail, no event loop).

The socket is data_dir/run/control.sock. A path longer than sun_path allows (108 octets on
Linux) is reached through /proc/self/fd/N/control.sock, N being an O_PATH descriptor of its
directory, so deep data directories still work.

sendmail calls this on its start-up path, so the socket comes from `_socket`, the C module
behind `socket`: the `socket` module adds nothing used here (a blocking AF_UNIX connect, send,
recv) but its import (enum conversion of every constant, selectors, array) costs a few ms.
"""

from __future__ import annotations

import _socket
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from tinymail.proto import control

SOCKET_NAME = "control.sock"
_SUN_PATH_MAX = 107  # sizeof(sun_path) - 1 on Linux


def socket_path(data_dir: Path) -> Path:
    """Where the daemon listens: data_dir/run/control.sock."""
    return data_dir / "run" / SOCKET_NAME


@contextlib.contextmanager
def bindable(path: Path) -> Iterator[str]:
    """A name for `path` short enough for AF_UNIX (see the module docstring)."""
    if len(os.fsencode(path)) <= _SUN_PATH_MAX:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def request(data_dir: Path, payload: bytes, *, timeout: float = 30.0) -> control.Reply | None:
    """Send one request and read the reply; None when no daemon listens (or it is not there).

    OSError other than "nobody listens" propagates (e.g. EACCES on the socket).
    """
    path = socket_path(data_dir)
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
