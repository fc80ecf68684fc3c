"""Server TLS: an SSLContext from [tls], reloadable on SIGHUP without dropping sessions."""

from __future__ import annotations

import ssl
from pathlib import Path

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
