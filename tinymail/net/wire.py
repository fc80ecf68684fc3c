"""Short replies to a plain-TCP client: one send(2), no trip through trio's scheduler.

trio's SocketStream.send_all ends every successful send with a checkpoint (a yield to
the scheduler). An SMTP session in lock-step sends seven replies of a few dozen bytes per
message, which the kernel always takes at once, and it reads before each of them, which
already checkpoints once per request; the yields after the sends only cost time on the
event loop. DirectSender sends on a duplicate of the connection's socket descriptor and
parks in trio (wait_writable) only when the kernel's send buffer is full.

The duplicate shares the open file description with trio's socket, so O_NONBLOCK (set by
trio) holds for both and a send here is a send on the connection.
"""

from __future__ import annotations

import errno
import os
import socket

import trio


class DirectSender:
    """send_all() for one trio.SocketStream; close() it before the stream is closed."""

    def __init__(self, stream: trio.SocketStream):
        sock = stream.socket
        fd = os.dup(sock.fileno())
        try:
            self._sock = socket.socket(sock.family, sock.type, sock.proto, fileno=fd)
        except BaseException:
            os.close(fd)
            raise
        self._parked = False  # ever waited in trio on this descriptor

    async def send_all(self, data: bytes) -> None:
        """Send every byte of `data` (errors as trio's streams raise them)."""
        sent = self._send(data)
        if sent == len(data):
            return
        view = memoryview(data)
        while sent < len(data):
            self._parked = True
            await trio.lowlevel.wait_writable(self._sock)
            sent += self._send(view[sent:])

    def _send(self, data: bytes | memoryview) -> int:
        try:
            return self._sock.send(data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            if exc.errno == errno.EBADF:
                raise trio.ClosedResourceError("the connection was already closed") from None
            raise trio.BrokenResourceError(f"socket connection broken: {exc}") from exc

    def close(self) -> None:
        """Close the duplicate descriptor (the connection stays open until the stream closes)."""
        if self._sock.fileno() >= 0:
            if self._parked:  # trio knows the descriptor: make it forget it first
                trio.lowlevel.notify_closing(self._sock)
            self._sock.close()
