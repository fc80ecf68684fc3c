"""Security fixtures: a server with real TLS (trustme), untrusted loopback clients, users."""

from __future__ import annotations

import base64
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio
import trustme

from tinymail.config import Config, load_config
from tinymail.net.context import ServerState
from tinymail.net.serve import serve
from tinymail.store.users import set_password

# Every section the security tests start from; a test overrides single keys per section.
DEFAULT_SECTIONS: dict[str, dict[str, str]] = {
    "listen": {
        "smtp": '["127.0.0.1:0"]',
        "submission": '["127.0.0.1:0"]',
        "submissions": '["127.0.0.1:0"]',
        "imap": "[]",
        "imaps": "[]",
        "pop3": "[]",
        "pop3s": "[]",
    },
    "relay": {"trusted_networks": "[]"},  # 127.0.0.1 is an untrusted client here
    "auth": {"failure_delay": '"0s"'},
    "server": {"allow_root": "true"},  # subprocess tests run as root in CI
}

ALICE = "alice@example.test"
BOB = "bob@example.test"
PASSWORD = "correct horse battery"


class TLSFiles:
    """A trustme CA and a server certificate for mx.example.test / 127.0.0.1, as PEM files."""

    def __init__(self, tmp_path: Path) -> None:
        self.ca = trustme.CA()
        cert = self.ca.issue_cert("mx.example.test", "localhost", "127.0.0.1", "127.0.0.2")
        self.cert = tmp_path / "cert.pem"
        self.key = tmp_path / "key.pem"
        cert.private_key_pem.write_to_path(str(self.key))
        cert.cert_chain_pems[0].write_to_path(str(self.cert))
        for blob in cert.cert_chain_pems[1:]:
            with open(self.cert, "ab") as f:
                f.write(blob.bytes())
        self.ca_file = tmp_path / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts only this CA."""
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        return ctx


@pytest.fixture
def tls_files(tmp_path: Path) -> TLSFiles:
    """Certificates for the test server."""
    return TLSFiles(tmp_path)


ConfigFactory = Callable[..., Path]


@pytest.fixture
def tls_config(tmp_path: Path, tls_files: TLSFiles) -> ConfigFactory:
    """Write a config with [tls] set; keyword arguments override keys per section."""

    def make(top: str = "", **overrides: dict[str, str]) -> Path:
        sections = {name: dict(keys) for name, keys in DEFAULT_SECTIONS.items()}
        sections["tls"] = {"cert": f'"{tls_files.cert}"', "key": f'"{tls_files.key}"'}
        for name, keys in overrides.items():
            sections.setdefault(name, {}).update(keys)
        lines = [
            'hostname = "mx.example.test"',
            'domains = ["example.test", "localhost"]',
            f'data_dir = "{tmp_path / "data"}"',
            top,
        ]
        for name, keys in sections.items():
            lines.append(f"\n[{name}]")
            lines.extend(f"{key} = {value}" for key, value in keys.items())
        path = tmp_path / "tinymail.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    return make


def add_users(cfg: Config, *addresses: str, password: str = PASSWORD) -> None:
    """Create users in the config's users file (scrypt hashes, as `tinymail user add`)."""
    for address in addresses:
        set_password(cfg.users_file, address, password, create=True)


Starter = Callable[[Path], Awaitable[ServerState]]


@pytest.fixture
def start_server(nursery: trio.Nursery) -> Starter:
    """Start an in-process server for a config file; it stops with the test."""

    async def start(path: Path) -> ServerState:
        state: ServerState = await nursery.start(serve, load_config(path))
        return state

    return start


def plain_auth(user: str, password: str, authzid: str = "") -> str:
    """The base64 SASL PLAIN initial response (RFC 4616)."""
    return base64.b64encode(f"{authzid}\0{user}\0{password}".encode()).decode()


class LineClient:
    """A raw client over a trio stream: send bytes, read CRLF lines or whole SMTP replies."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buffer = b""

    @classmethod
    async def connect(
        cls, port: int, host: str = "127.0.0.1", local: str | None = None
    ) -> LineClient:
        """Open a TCP connection, optionally from a chosen local address."""
        return cls(await trio.open_tcp_stream(host, port, local_address=local))

    async def send(self, data: bytes) -> None:
        """Send raw bytes in one write."""
        await self.stream.send_all(data)

    async def line(self, timeout: float = 10.0) -> bytes:
        """The next line without CRLF; b"" once the server closed."""
        with trio.fail_after(timeout):
            while b"\r\n" not in self.buffer:
                chunk = await self.stream.receive_some(65536)
                if not chunk:
                    rest, self.buffer = self.buffer, b""
                    return rest
                self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    async def reply(self, timeout: float = 10.0) -> tuple[int, str]:
        """One SMTP reply (all its lines): (code, text of the last line); (0, "") on close."""
        lines: list[str] = []
        while True:
            line = await self.line(timeout)
            if not line:
                return 0, "\n".join(lines)
            lines.append(line.decode())
            if len(line) < 4 or line[3:4] != b"-":
                return int(line[:3]), "\n".join(lines)

    async def command(self, text: str, timeout: float = 10.0) -> tuple[int, str]:
        """Send one command line and read its reply."""
        await self.send(text.encode() + b"\r\n")
        return await self.reply(timeout)

    async def starttls(self, ctx: ssl.SSLContext, server_name: str = "mx.example.test") -> None:
        """Wrap the stream in TLS (after the server said 220 to STARTTLS)."""
        assert not self.buffer, f"plaintext left over before TLS: {self.buffer!r}"
        tls = trio.SSLStream(self.stream, ctx, server_hostname=server_name)
        await tls.do_handshake()
        self.stream = tls

    async def aclose(self) -> None:
        """Close the connection."""
        with trio.move_on_after(2):
            await self.stream.aclose()
