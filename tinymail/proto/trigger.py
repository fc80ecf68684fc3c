"""The trigger FIFO (data_dir/run/trigger): how `sendmail` tells the daemon "deliver this now".

Rules / theory:
- Like Postfix's public/pickup FIFO: a writer that may write the queue (and so has just
  queued a message) writes one line, the queue ID and LF, and does not wait for an answer
  (control_client.trigger writes it). That spares `sendmail` a round trip and the socket
  module on its start-up path; everything that needs an answer or the caller's identity goes
  over the control socket (control.py).
- A line is at most MAX_LINE octets, far below PIPE_BUF, and each writer writes it with one
  write(2), so lines of concurrent writers never interleave. The reader sees arbitrary chunks.
- Anything that is not a queue ID is dropped, and an overlong line is skipped up to its LF:
  the buffer never holds more than MAX_LINE octets. Pure: no I/O.
"""

from tinymail.proto.control import valid_qid

MAX_LINE = 64  # a queue ID is at most 40 characters (control._QID)


class TriggerParser:
    """Queue IDs out of the bytes read from the FIFO, in order."""

    def __init__(self) -> None:
        self._partial = b""
        self._skipping = False  # inside an overlong line: drop up to its LF

    def receive(self, data: bytes) -> list[str]:
        """The queue IDs completed by `data`."""
        *lines, rest = (self._partial + data).split(b"\n")
        qids: list[str] = []
        for line in lines:
            if self._skipping:
                self._skipping = False
                continue
            text = line.decode("ascii", "replace")
            if valid_qid(text):
                qids.append(text)
        if len(rest) > MAX_LINE:
            self._skipping, rest = True, b""
        self._partial = rest
        return qids
