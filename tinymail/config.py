"""TOML config -> frozen dataclasses.

Rules: every key is optional; an unknown key, a wrong type, a bad duration,
size or listen address is a `ConfigError` whose one-line message names the key
and, where the file has it, the line. Paths that are relative are relative to
`data_dir` (SPEC.md).

`sendmail` does not import this module on its start-up path: it reads the few values it needs
through quickconfig.py, which calls `read_raw` and `build` here only when its cache misses.
Modules that only some configs need (tomllib, ipaddress) are imported where they are used, and
patterns are compiled by `re`'s own cache on first use.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from tinymail import quickconfig
from tinymail.quickconfig import ConfigError as ConfigError  # defined there for sendmail


@dataclass(frozen=True, slots=True)
class ListenConfig:
    """[listen]: the addresses each service binds."""

    smtp: tuple[str, ...] = ("127.0.0.1:2525",)
    submission: tuple[str, ...] = ("127.0.0.1:2587",)
    submissions: tuple[str, ...] = ()
    imap: tuple[str, ...] = ("127.0.0.1:2143",)
    imaps: tuple[str, ...] = ()
    pop3: tuple[str, ...] = ("127.0.0.1:2110",)
    pop3s: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """[tls]: certificate and key files (PEM)."""

    cert: str = ""
    key: str = ""


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """[store]: the mailbox format."""

    format: str = "maildir"


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """[relay]: who may relay, and the optional smarthost."""

    trusted_networks: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    smarthost: str = ""
    smarthost_user: str = ""
    smarthost_password_file: str = ""


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """[queue]: retry schedule and lifetime, in seconds."""

    retry_min: float = 300.0
    retry_max: float = 3600.0
    lifetime: float = 5 * 86400.0
    warn_after: float = 4 * 3600.0


@dataclass(frozen=True, slots=True)
class DNSConfig:
    """[dns]: resolvers (empty: the system's)."""

    nameservers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SMTPConfig:
    """[smtp]: message size, recipient count and timeouts."""

    max_message_size: int = 35 * 1024 * 1024
    max_recipients: int = 1000
    command_timeout: float = 300.0  # RFC 5321 4.5.3.2.7: server timeout >= 5 minutes
    data_timeout: float = 600.0


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """[auth]: where AUTH may run without TLS, and the per-client failure penalties."""

    plaintext_networks: tuple[str, ...] = ("127.0.0.0/8", "::1/128")  # may AUTH without TLS
    failure_delay: float = 2.0  # Dovecot auth_failure_delay; doubles per recent failure
    max_delay: float = 15.0  # Dovecot's penalty cap
    max_failures: int = 10  # per client (IPv6: /64) within failure_window, then refused
    failure_window: float = 600.0
    ban_time: float = 600.0  # fail2ban's default bantime


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """[limits]: connection caps and the slowloris defence, for every service."""

    connections: int = 256  # all services together
    connections_per_ip: int = 20  # per client (IPv6: /64); trusted_networks are exempt
    min_data_rate: int = 500  # bytes/s that extend a request deadline (Postfix smtpd_min_data_rate)
    tls_handshake_timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """[server]: the process itself (privileges after binding)."""

    user: str = ""  # started as root: drop to this user once the ports are bound
    group: str = ""  # default: the user's primary group
    allow_root: bool = False  # started as root without `user`: refuse unless this is true


@dataclass(frozen=True, slots=True)
class Config:
    """The whole validated configuration."""

    hostname: str
    domains: tuple[str, ...]
    data_dir: Path
    users_file: Path
    aliases_file: Path
    listen: ListenConfig = field(default_factory=ListenConfig)
    tls: TLSConfig = field(default_factory=TLSConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    relay: RelayConfig = field(default_factory=RelayConfig)
    transport: tuple[tuple[str, str], ...] = ()
    queue: QueueConfig = field(default_factory=QueueConfig)
    dns: DNSConfig = field(default_factory=DNSConfig)
    smtp: SMTPConfig = field(default_factory=SMTPConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    source: str = "embedded default"

    @property
    def queue_dir(self) -> Path:
        """Where the durable queue lives."""
        return self.data_dir / "queue"

    @property
    def mail_dir(self) -> Path:
        """Where mailboxes live, one per owner."""
        return self.data_dir / "mail"

    def is_local_domain(self, domain: str) -> bool:
        """True when mail for `domain` is delivered here."""
        return domain.lower().rstrip(".") in self.domains


def find_config(cli_path: str | None) -> Path | None:
    """Config lookup per SPEC: -c FILE, $TINYMAIL_CONFIG, /etc/tinymail/tinymail.toml, else None."""
    found = quickconfig.config_file(cli_path)
    return Path(found) if found else None


def default_data_dir() -> Path:
    """$TINYMAIL_HOME, else ~/.local/share/tinymail."""
    return Path(quickconfig.default_data_dir())


def load_config(path: Path | None) -> Config:
    """Read and validate the config at `path`, or build the embedded default when None."""
    if path is None:
        return build({}, "", "embedded default")
    raw, text = read_raw(path)
    return build(raw, text, str(path))


def read_raw(path: Path) -> tuple[dict[str, Any], str]:
    """The parsed TOML table of the file at `path` and its text (for error line numbers)."""
    import tomllib  # not needed for the embedded default (sendmail without a config file)

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: config is not UTF-8") from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None


# --- value parsers -------------------------------------------------------------

_DURATION = r"(\d+)([smhd])"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_SIZE = r"(\d+)\s*([kKmMgG]?)[bB]?"


def parse_duration(value: str) -> float:
    """Parse "30s", "5m", "4h", "5d" or combinations like "1h30m" into seconds."""
    text = value.strip()
    if not text or re.sub(_DURATION, "", text):
        raise ValueError(f"bad duration {value!r} (use e.g. 30s, 5m, 4h, 5d)")
    return float(sum(int(n) * _UNITS[u] for n, u in re.findall(_DURATION, text)))


def parse_size(value: int | str) -> int:
    """Parse a byte count: an integer or a string like "35M", "512k"."""
    if isinstance(value, bool):
        raise ValueError("bad size (use e.g. 35M)")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError("size must be positive")
        return value
    m = re.fullmatch(_SIZE, value.strip())
    if not m:
        raise ValueError(f"bad size {value!r} (use e.g. 35M, 512k or a byte count)")
    mult = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[m.group(2).lower()]
    size = int(m.group(1)) * mult
    if size <= 0:
        raise ValueError("size must be positive")
    return size


def parse_listen(value: str) -> tuple[str, int]:
    """Split "addr:port" or "[v6]:port" into (addr, port), validating both."""
    import ipaddress

    if value.startswith("["):
        host, sep, port = value[1:].partition("]:")
    else:
        host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"bad listen address {value!r} (use e.g. 127.0.0.1:25 or [::1]:25)")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"bad listen address {value!r}: {host!r} is not an IP address") from None
    return host, int(port)


def _network(value: str) -> str:
    import ipaddress

    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise ValueError(f"bad network {value!r} (use e.g. 192.0.2.0/24)") from None


def _hostport(value: str) -> str:
    if value:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"bad host:port {value!r}")
    return value


def _nameserver(value: str) -> str:
    """Accept "ip", "ip:port" or "[ipv6]:port" (the forms net/dns.py understands)."""
    import ipaddress

    bad = f"bad nameserver {value!r} (use an IP, IP:port or [IPv6]:port)"
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        port_given, port = rest.startswith(":"), rest[1:]
        if not sep or (rest and not port_given):
            raise ValueError(bad)
    elif value.count(":") == 1:
        host, _, port = value.partition(":")
        port_given = True
    else:
        host, port, port_given = value, "", False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(bad) from None
    if port_given and not (port.isascii() and port.isdigit() and 0 < int(port) <= 65535):
        raise ValueError(f"bad nameserver port in {value!r}")
    return value


def _domain(value: str) -> str:
    d = value.strip().lower().rstrip(".")
    if not d or any(c.isspace() or c in "@/\\" for c in d):
        raise ValueError(f"bad domain {value!r}")
    return d


def _store_format(value: str) -> str:
    if value not in ("maildir", "mbox"):
        raise ValueError(f'bad format {value!r} (use "maildir" or "mbox")')
    return value


def _route(value: str) -> str:
    if value == "local" or re.fullmatch(r"smtp:(\[[^\]]+\]|[A-Za-z0-9.-]+)(:\d+)?", value):
        return value
    raise ValueError(f"bad route {value!r} (use local, smtp:host, smtp:[host]:port)")


# --- the schema ------------------------------------------------------------------

_Parser = Callable[[Any], Any]


def _str(check: Callable[[str], Any] | None = None) -> _Parser:
    def parse(v: Any) -> Any:
        if not isinstance(v, str):
            raise TypeError("must be a string")
        return check(v) if check else v

    return parse


def _str_list(check: Callable[[str], str] | None = None) -> _Parser:
    def parse(v: Any) -> tuple[str, ...]:
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise TypeError("must be a list of strings")
        if check:
            for item in v:
                check(item)
        return tuple(v)

    return parse


def _positive_int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise TypeError("must be a positive integer")
    return v


def _count(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise TypeError("must be an integer >= 0")
    return v


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise TypeError("must be true or false")
    return v


def _account(value: str) -> str:
    if value and (value.strip() != value or ":" in value or "/" in value):
        raise ValueError(f"bad account name {value!r}")
    return value


def _size(v: Any) -> int:
    if not isinstance(v, int | str):
        raise TypeError('must be a size like "35M" or a byte count')
    return parse_size(v)


def _listen_check(v: str) -> str:
    parse_listen(v)
    return v


_duration = _str(parse_duration)

_SECTIONS: dict[str, tuple[type[Any], dict[str, _Parser]]] = {
    "listen": (ListenConfig, {f.name: _str_list(_listen_check) for f in fields(ListenConfig)}),
    "tls": (TLSConfig, {"cert": _str(), "key": _str()}),
    "store": (StoreConfig, {"format": _str(_store_format)}),
    "relay": (
        RelayConfig,
        {
            "trusted_networks": _str_list(_network),
            "smarthost": _str(_hostport),
            "smarthost_user": _str(),
            "smarthost_password_file": _str(),
        },
    ),
    "queue": (QueueConfig, {k.name: _duration for k in fields(QueueConfig)}),
    "dns": (DNSConfig, {"nameservers": _str_list(_nameserver)}),
    "smtp": (
        SMTPConfig,
        {
            "max_message_size": _size,
            "max_recipients": _positive_int,
            "command_timeout": _duration,
            "data_timeout": _duration,
        },
    ),
}
_SECTIONS["auth"] = (
    AuthConfig,
    {
        "plaintext_networks": _str_list(_network),
        "failure_delay": _duration,
        "max_delay": _duration,
        "max_failures": _positive_int,
        "failure_window": _duration,
        "ban_time": _duration,
    },
)
_SECTIONS["limits"] = (
    LimitsConfig,
    {
        "connections": _positive_int,
        "connections_per_ip": _positive_int,
        "min_data_rate": _count,
        "tls_handshake_timeout": _duration,
    },
)
_SECTIONS["server"] = (
    ServerConfig,
    {"user": _str(_account), "group": _str(_account), "allow_root": _bool},
)
_TOP = {"hostname", "domains", "data_dir", "users", "aliases", "transport", *_SECTIONS}
_FILE_SECTIONS = {"users": "users", "aliases": "aliases"}


def _line_of(text: str, section: str | None, key: str) -> int | None:
    """Best-effort line number of `key` (in `[section]`), for error messages."""
    current: str | None = None
    pattern = re.compile(r'\s*"?' + re.escape(key) + r'"?\s*=')
    for number, line in enumerate(text.splitlines(), 1):
        header = re.match(r"\s*\[([^\]]+)\]", line)
        if header:
            current = header.group(1).strip()
            if section is not None and current == section and key == section:
                return number
            continue
        if current == section and pattern.match(line):
            return number
    return None


def _fail(text: str, source: str, section: str | None, key: str, why: str) -> ConfigError:
    name = f"{section}.{key}" if section else key
    line = _line_of(text, section, key) if text else None
    where = f"{source}, line {line}" if line else source
    return ConfigError(f"{where}: {name}: {why}")


def build(raw: Mapping[str, Any], text: str, source: str) -> Config:
    """Validate a parsed config (`text` is its source, for line numbers) into a Config."""
    for key in raw:
        if key not in _TOP:
            line = _line_of(text, None, key) or _line_of(text, key, key)
            where = f"{source}, line {line}" if line else source
            raise ConfigError(f"{where}: unknown key {key!r}")

    def top(key: str, parser: _Parser, default: Any) -> Any:
        if key not in raw:
            return default
        try:
            return parser(raw[key])
        except (TypeError, ValueError) as exc:
            raise _fail(text, source, None, key, str(exc)) from None

    hostname = top("hostname", _str(_domain), None) or quickconfig.default_hostname()
    domains = top("domains", _str_list(_domain), None)
    domains = tuple(_domain(d) for d in domains) if domains is not None else ("localhost", hostname)
    data_dir = Path(top("data_dir", _str(), "") or default_data_dir()).expanduser()
    if not data_dir.is_absolute():
        data_dir = Path.cwd() / data_dir

    sections: dict[str, Any] = {}
    for name, (cls, schema) in _SECTIONS.items():
        sections[name] = _section(raw, text, source, name, cls, schema)

    files: dict[str, Path] = {}
    for name, default in _FILE_SECTIONS.items():
        table = _table(raw, text, source, name)
        for key in table:
            if key != "file":
                raise _fail(text, source, name, key, "unknown key")
        value = table.get("file", default)
        if not isinstance(value, str) or not value:
            raise _fail(text, source, name, "file", "must be a non-empty string")
        files[name] = data_dir / value

    transport_raw = _table(raw, text, source, "transport")
    transport: list[tuple[str, str]] = []
    for domain, route in transport_raw.items():
        try:
            transport.append((_domain(domain), _route(_str()(route))))
        except (TypeError, ValueError) as exc:
            raise _fail(text, source, "transport", domain, str(exc)) from None

    return Config(
        hostname=hostname,
        domains=domains,
        data_dir=data_dir,
        users_file=files["users"],
        aliases_file=files["aliases"],
        transport=tuple(transport),
        source=source,
        **sections,
    )


def _table(raw: Mapping[str, Any], text: str, source: str, name: str) -> Mapping[str, Any]:
    table = raw.get(name, {})
    if not isinstance(table, dict):
        raise _fail(text, source, None, name, "must be a table ([" + name + "])")
    return table


def _section(
    raw: Mapping[str, Any],
    text: str,
    source: str,
    name: str,
    cls: type[Any],
    schema: dict[str, _Parser],
) -> Any:
    table = _table(raw, text, source, name)
    values: dict[str, Any] = {}
    for key, value in table.items():
        parser = schema.get(key)
        if parser is None:
            raise _fail(text, source, name, key, "unknown key")
        try:
            values[key] = parser(value)
        except (TypeError, ValueError) as exc:
            raise _fail(text, source, name, key, str(exc)) from None
    return cls(**values)


# --- printing the effective config (tinymail check) ------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _format_duration(value)
    if isinstance(value, Path):
        return _toml_value(str(value))
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _format_duration(seconds: float) -> str:
    total = int(seconds)
    for unit in ("d", "h", "m"):
        if total and total % _UNITS[unit] == 0:
            return f'"{total // _UNITS[unit]}{unit}"'
    return f'"{total}s"'


def render(cfg: Config) -> str:
    """The effective config as TOML, loadable again by `load_config`."""
    lines = [
        f"# effective configuration (from {cfg.source})",
        f"hostname = {_toml_value(cfg.hostname)}",
        f"domains = {_toml_value(cfg.domains)}",
        f"data_dir = {_toml_value(cfg.data_dir)}",
        "",
        "[users]",
        f"file = {_toml_value(cfg.users_file)}",
        "",
        "[aliases]",
        f"file = {_toml_value(cfg.aliases_file)}",
    ]
    for name in _SECTIONS:
        section = getattr(cfg, name)
        lines += ["", f"[{name}]"]
        lines += [f"{f.name} = {_toml_value(getattr(section, f.name))}" for f in fields(section)]
    lines += ["", "[transport]"]
    lines += [f"{_toml_value(d)} = {_toml_value(r)}" for d, r in cfg.transport]
    return "\n".join(lines) + "\n"
