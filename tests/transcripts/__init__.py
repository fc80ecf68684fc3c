"""Protocol dialogues as data, run against the sans-I/O cores and against a live server.

File format (``tests/transcripts/<protocol>/*.txt``, UTF-8, one directive per line):

- ``C: text``   the client sends ``text`` + CRLF (a bare ``C:`` sends an empty line).
  Consecutive ``C:`` lines are sent together in one write (pipelined), so put an ``S:`` line
  wherever the client must wait (e.g. for 354).
- ``S: prefix`` the next complete server reply (all lines of a multi-line reply) must start
  with ``prefix`` on its first line. ``S: 220`` before any ``C:`` checks the greeting.
- ``S: EOF``    the server closes the connection after the replies above.
- ``# needs: word ...``  capabilities the server under test must be configured with
  (``auth``: AUTH PLAIN/LOGIN with user ``alice@example.test`` password ``secret``).
- Other lines starting with ``#`` and blank lines are ignored. Transcripts assume the local
  domain ``example.test`` and a deliverable ``postmaster@example.test``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).parent


@dataclass(frozen=True, slots=True)
class Exchange:
    """One client write and the replies it must produce, in order."""

    sent: bytes
    expected: tuple[str, ...]
    closed: bool = False


@dataclass(frozen=True, slots=True)
class Transcript:
    """A whole dialogue, loaded from one file."""

    name: str
    needs: frozenset[str]
    exchanges: tuple[Exchange, ...]


def parse(text: str, name: str = "<string>") -> Transcript:
    """Parse transcript ``text``; raises ValueError naming the line of a bad directive."""
    needs: set[str] = set()
    exchanges: list[Exchange] = []
    sent: list[bytes] = []
    expected: list[str] = []
    closed = False

    def flush() -> None:
        nonlocal closed
        if sent or expected or closed:
            exchanges.append(Exchange(b"".join(sent), tuple(expected), closed))
        sent.clear()
        expected.clear()
        closed = False

    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("# needs:"):
            needs.update(line[len("# needs:") :].split())
        elif not line.strip() or line.startswith("#"):
            continue
        elif line.startswith("C: ") or line == "C:":
            if expected or closed:
                flush()
            sent.append(line[3:].encode("utf-8") + b"\r\n")
        elif line == "S: EOF":
            closed = True
        elif line.startswith("S: ") and not closed:
            expected.append(line[3:])
        else:
            raise ValueError(f"{name}:{number}: bad transcript line {line!r}")
    flush()
    return Transcript(name, frozenset(needs), tuple(exchanges))


def load(protocol: str) -> list[Transcript]:
    """Load every ``tests/transcripts/<protocol>/*.txt``, sorted by file name."""
    return [
        parse(path.read_text(encoding="utf-8"), path.stem)
        for path in sorted((HERE / protocol).glob("*.txt"))
    ]


def split_replies(data: bytes) -> list[list[str]]:
    """Split server output into replies, each a list of its lines (RFC 5321 §4.2.1)."""
    replies: list[list[str]] = []
    current: list[str] = []
    for line in data.decode("utf-8", "replace").split("\r\n")[:-1]:
        current.append(line)
        if line[3:4] != "-":
            replies.append(current)
            current = []
    if current:
        replies.append(current)
    return replies


def mismatch(exchange: Exchange, replies: list[list[str]]) -> str | None:
    """Describe how ``replies`` differ from what ``exchange`` expects, or None if they match."""
    firsts = [reply[0] for reply in replies]
    if len(firsts) != len(exchange.expected):
        return f"sent {exchange.sent!r}: expected {list(exchange.expected)}, got {firsts}"
    for prefix, first in zip(exchange.expected, firsts, strict=True):
        if not first.startswith(prefix):
            return f"sent {exchange.sent!r}: expected {prefix!r}..., got {first!r}"
    return None
