"""A scripted adapter for the POP3 core: answers its decisions from a dict-backed maildrop."""

from __future__ import annotations

from dataclasses import dataclass, field

from tinymail.proto import pop3
from tinymail.proto.pop3 import content

UIDVALIDITY = 0x5F5E100


@dataclass
class FakeMaildrop:
    """Users, stored messages (LF line ends) and the adapter's decisions, recorded for asserts."""

    passwords: dict[str, str] = field(default_factory=lambda: {"bob@example.test": "secret"})
    messages: dict[int, bytes] = field(default_factory=dict)  # uid -> stored bytes
    locked: bool = False
    missing: set[int] = field(default_factory=set)  # uids expunged under the session
    update_fails: bool = False
    updates: list[tuple[int, ...]] = field(default_factory=list)
    list_fails: bool = False
    eager: bool = False  # answer the lock and the listing at once (maildrop_opened)
    decisions: list[pop3.Decision] = field(default_factory=list)

    def listing(self) -> pop3.Listing:
        """The maildrop listing with CRLF sizes, as an adapter computes it."""
        stored = sorted(self.messages.items())
        sizes = [len(data) + data.count(b"\n") for _, data in stored]
        return pop3.Listing(UIDVALIDITY, [uid for uid, _ in stored], sizes)

    def answer(self, conn: pop3.ServerConnection, event: pop3.Decision) -> None:
        """Settle one decision the way the real adapter would."""
        self.decisions.append(event)
        if isinstance(event, pop3.Authenticate):
            if self.passwords.get(event.username) == event.password:
                conn.auth_ok(event.username)
            else:
                conn.auth_failed()
        elif isinstance(event, pop3.OpenMaildrop):
            if self.locked:
                conn.maildrop_in_use()
            elif self.eager:
                conn.maildrop_opened(self.listing())
            else:
                conn.maildrop_locked()
        elif isinstance(event, pop3.ListMaildrop):
            if self.list_fails:
                conn.maildrop_failed()
            else:
                conn.maildrop_listed(self.listing())
        elif isinstance(event, pop3.FetchMessage):
            if event.uid in self.missing:
                conn.message_missing()
            elif event.top_lines is None:
                conn.message_encoded(content.encode(self.messages[event.uid]))
            else:
                conn.message(self.messages[event.uid])
        elif isinstance(event, pop3.Update):
            self.updates.append(event.deleted)
            if self.update_fails:
                conn.update_failed()
            else:
                conn.update_done()
        else:
            conn.tls_started()


def run(
    conn: pop3.ServerConnection, drop: FakeMaildrop, data: bytes, *, eof: bool = False
) -> bytes:
    """Feed ``data`` (and EOF if asked), answer every decision, return everything sent."""
    conn.receive_data(data)
    if eof:
        conn.receive_data(b"")
    out = bytearray()
    for _ in range(10_000):  # bounded: each round consumes a line or ends
        event = conn.next_event()
        out += conn.data_to_send()
        if event is pop3.NEED_DATA or event is pop3.CLOSED:
            return bytes(out)
        drop.answer(conn, event)
    raise AssertionError("core did not settle")


def connection(
    *, plaintext_auth: bool = True, tls_available: bool = False, tls_active: bool = False
) -> pop3.ServerConnection:
    """A core on loopback-like terms (plaintext auth allowed) unless overridden."""
    return pop3.ServerConnection(
        hostname="mx.example.test",
        plaintext_auth=plaintext_auth,
        tls_available=tls_available,
        tls_active=tls_active,
    )
