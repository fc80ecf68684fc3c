"""A tiny authoritative DNS server on 127.0.0.1 for tests, built on dnspython's message classes.

Records come from a dict: {"name": {"MX": ["10 mx1.example.test."], "A": ["127.0.0.2"]}},
or from text with one record per line (`DNSServer.from_text`, as chasquid's minidns does):

    example.test     MX   10 mx1.example.test.
    mx1.example.test A    127.0.0.2
    broken.test      SERVFAIL

Names given as a `Fault` answer every query with that fault: NXDOMAIN, SERVFAIL or DROP (no
answer at all, so the client times out). A name absent from the dict is NXDOMAIN; a present name
without the asked type answers NODATA. Every query is counted in `queries` for assertions.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import trio


class Fault(enum.Enum):
    """A name that answers every query with an error."""

    NXDOMAIN = "nxdomain"
    SERVFAIL = "servfail"
    DROP = "drop"


Zone = Mapping[str, Mapping[str, Sequence[str]] | Fault]


def _key(name: str) -> str:
    return name.lower().rstrip(".")


class DNSServer:
    """Serves `zone` over UDP; start it with `await nursery.start(server.serve)`."""

    def __init__(self, zone: Zone) -> None:
        self.zone: dict[str, Mapping[str, Sequence[str]] | Fault] = {
            _key(name): records for name, records in zone.items()
        }
        self.queries: list[tuple[str, str]] = []
        self.address = ""

    @classmethod
    def from_text(cls, text: str) -> DNSServer:
        """Zone from "name TYPE rdata" lines; "name NXDOMAIN|SERVFAIL|DROP" for faults."""
        zone: dict[str, dict[str, list[str]] | Fault] = {}
        for raw in text.splitlines():
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            name, rdtype, *rdata = line.split(None, 2)
            if rdtype.lower() in {fault.value for fault in Fault}:
                zone[_key(name)] = Fault(rdtype.lower())
                continue
            records = zone.setdefault(_key(name), {})
            assert isinstance(records, dict), f"{name} is both a fault and a record"
            records.setdefault(rdtype.upper(), []).append(rdata[0] if rdata else "")
        return cls(zone)

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Bind 127.0.0.1 on an ephemeral port, report "ip:port", answer until cancelled."""
        sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        with sock:
            await sock.bind(("127.0.0.1", 0))
            host, port = sock.getsockname()
            self.address = f"{host}:{port}"
            task_status.started(self.address)
            while True:
                data, peer = await sock.recvfrom(4096)
                reply = self.answer(data)
                if reply is not None:
                    await sock.sendto(reply, peer)

    def answer(self, wire: bytes) -> bytes | None:
        """The response bytes for one query, or None to drop it."""
        query = dns.message.from_wire(wire)
        question = query.question[0]
        name = _key(question.name.to_text())
        rdtype = dns.rdatatype.to_text(question.rdtype)
        self.queries.append((name, rdtype))
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        records = self.zone.get(name)
        if records is Fault.DROP:
            return None
        if records is None or records is Fault.NXDOMAIN:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif records is Fault.SERVFAIL:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif rdtype in records:
            response.answer.append(
                dns.rrset.from_text_list(
                    question.name, 60, dns.rdataclass.IN, rdtype, list(records[rdtype])
                )
            )
        return response.to_wire()
