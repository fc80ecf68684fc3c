"""Protocol errors shared by the sans-I/O cores (SMTP, IMAP, POP3).

Rules (after h11's ``_util.py``):
- ``RemoteProtocolError``: the *peer* broke the protocol. It carries the reply to send, so the
  core converts it into bytes at exactly one boundary (the command dispatcher) and never lets it
  escape to the adapter. Peer input can therefore never make a core raise.
- ``LocalProtocolError``: *our caller* (the adapter) broke the core's contract, e.g. ``send()``
  with no decision pending. That is a bug in tinymail and is raised to the adapter.
"""

from __future__ import annotations

from typing import Protocol


class WireReply(Protocol):
    """Anything a core can put on the wire as an answer (an SMTP ``Reply``, an IMAP response)."""

    def to_bytes(self) -> bytes:
        """Return the reply exactly as it is sent, line ends included."""
        ...


class ProtocolError(Exception):
    """Base class of both protocol error kinds."""


class RemoteProtocolError(ProtocolError):
    """The peer violated the protocol; ``reply`` is the answer, ``close`` ends the session."""

    def __init__(self, reply: WireReply, *, close: bool = False) -> None:
        super().__init__(reply)
        self.reply = reply
        self.close = close


class LocalProtocolError(ProtocolError):
    """The adapter used the core wrongly (a tinymail bug, never caused by peer input)."""
