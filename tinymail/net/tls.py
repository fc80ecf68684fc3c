"""Server TLS: an SSLContext from [tls], reloadable on SIGHUP without dropping sessions.

Every service (SMTP STARTTLS, IMAP STARTTLS, POP3 STLS, implicit TLS) goes through
`start_server_tls`, so the context, the TLS 1.2 floor and the handshake timeout are one policy.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import trio

from tinymail.config import ConfigError, TLSConfig


def make_server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """TLS 1.2+ server context with the given PEM chain and key."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_COMPRESSION
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"tls: cannot load certificate {cert} / key {key}: {exc}") from None
    return ctx


class TLSHolder:
    """Holds the current server SSLContext; sessions take `.context` at handshake time."""

    def __init__(self, cfg: TLSConfig, data_dir: Path):
        self.cert = data_dir / cfg.cert
        self.key = data_dir / (cfg.key or cfg.cert)
        self.context = make_server_context(self.cert, self.key)

    def reload(self) -> None:
        """Load the files again; on error keep the old context and raise ConfigError."""
        self.context = make_server_context(self.cert, self.key)

    @classmethod
    def from_config(cls, cfg: TLSConfig, data_dir: Path) -> TLSHolder | None:
        """A holder when [tls] names a certificate, else None."""
        return cls(cfg, data_dir) if cfg.cert else None


async def start_server_tls(
    stream: trio.abc.Stream, holder: TLSHolder, timeout: float
) -> trio.SSLStream[trio.abc.Stream]:
    """Wrap `stream` as the TLS server and finish the handshake within `timeout` seconds.

    Used for implicit TLS (submissions, imaps, pop3s) and after STARTTLS/STLS. The context is
    taken from `holder` now, so a SIGHUP reload applies to new handshakes only. A handshake that
    fails or takes too long (a slowloris at the TLS layer) raises trio.BrokenResourceError.
    """
    ssl_stream = trio.SSLStream(stream, holder.context, server_side=True)
    with trio.move_on_after(timeout):
        await ssl_stream.do_handshake()
        return ssl_stream
    raise trio.BrokenResourceError(f"TLS handshake not finished within {timeout:g}s")


def describe(ssl_stream: trio.SSLStream[trio.abc.Stream]) -> str:
    """The version and cipher for a Received header, e.g. "TLSv1.3 with cipher X (256 bits)"."""
    cipher = ssl_stream.cipher()
    if cipher is None:
        return ""
    name, version, bits = cipher
    return f"{version} with cipher {name} ({bits} bits)"
