"""tinymail.config: TOML -> frozen dataclasses, errors naming key and line, render round trip."""

from __future__ import annotations

import dataclasses
import re
import socket
from pathlib import Path

import pytest

from tinymail import quickconfig
from tinymail.config import (
    Config,
    ConfigError,
    find_config,
    load_config,
    parse_duration,
    parse_listen,
    parse_size,
    render,
)

# The example of SPEC.md "Config file (TOML)", with the [transport] lines uncommented.
SPEC_EXAMPLE = """\
hostname = "mx.example.test"          # banner, HELO, Received; default: the host's FQDN
domains  = ["example.test"]           # local domains; default: ["localhost", hostname]
data_dir = "{data_dir}"

[listen]                              # lists of "addr:port"; [] disables a service
smtp        = ["127.0.0.1:2525"]
submission  = ["127.0.0.1:2587"]
submissions = []
imap        = ["127.0.0.1:2143"]
imaps       = []
pop3        = ["127.0.0.1:2110"]
pop3s       = []

[tls]
cert = "/etc/tinymail/cert.pem"       # PEM chain; reloaded on SIGHUP
key  = "/etc/tinymail/key.pem"

[users]
file = "users"                        # relative paths are relative to data_dir

[aliases]
file = "aliases"                      # /etc/aliases syntax; `newaliases` validates it

[store]
format = "maildir"                    # or "mbox"

[relay]
trusted_networks = ["127.0.0.0/8", "::1/128"]   # may relay without AUTH
smarthost = ""
smarthost_user = ""

[transport]                           # per-domain routes, checked before MX lookup
"example.net" = "smtp:[127.0.0.1]:2626"
"lists.example.test" = "local"

[queue]
retry_min  = "5m"
retry_max  = "1h"
lifetime   = "5d"
warn_after = "4h"

[dns]
nameservers = []
"""


def write(tmp_path: Path, text: str, name: str = "tinymail.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_text(tmp_path: Path, text: str) -> Config:
    return load_config(write(tmp_path, text))


def config_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text)
    message = str(info.value)
    assert "\n" not in message, "a config error is one line"
    return message


# --- embedded default --------------------------------------------------------------


def test_embedded_default_uses_tinymail_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TINYMAIL_HOME", str(tmp_path / "home"))
    cfg = load_config(None)
    expected_host = (socket.getfqdn() or socket.gethostname() or "localhost").lower().rstrip(".")
    assert cfg.hostname == expected_host
    assert cfg.domains == ("localhost", expected_host)
    assert cfg.data_dir == tmp_path / "home"
    assert cfg.users_file == tmp_path / "home" / "users"
    assert cfg.aliases_file == tmp_path / "home" / "aliases"
    assert cfg.queue_dir == tmp_path / "home" / "queue"
    assert cfg.mail_dir == tmp_path / "home" / "mail"
    assert cfg.source == "embedded default"


def test_embedded_default_without_tinymail_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TINYMAIL_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_config(None).data_dir == tmp_path / ".local" / "share" / "tinymail"


def test_embedded_default_listeners_and_sections(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINYMAIL_HOME", "/nonexistent/tinymail-test")
    cfg = load_config(None)
    # SPEC: loopback-only listeners, smtp 2525, submission 2587, imap 2143, pop3 2110.
    assert cfg.listen.smtp == ("127.0.0.1:2525",)
    assert cfg.listen.submission == ("127.0.0.1:2587",)
    assert cfg.listen.imap == ("127.0.0.1:2143",)
    assert cfg.listen.pop3 == ("127.0.0.1:2110",)
    assert cfg.listen.submissions == cfg.listen.imaps == cfg.listen.pop3s == ()
    assert cfg.store.format == "maildir"
    assert cfg.relay.trusted_networks == ("127.0.0.0/8", "::1/128")
    assert cfg.relay.smarthost == ""
    assert cfg.queue.retry_min == 300
    assert cfg.queue.retry_max == 3600
    assert cfg.queue.lifetime == 5 * 86400
    assert cfg.queue.warn_after == 4 * 3600
    assert cfg.dns.nameservers == ()
    assert cfg.transport == ()
    assert cfg.tls.cert == cfg.tls.key == ""


def test_empty_file_is_the_default_with_a_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TINYMAIL_HOME", str(tmp_path / "home"))
    path = write(tmp_path, "")
    cfg = load_config(path)
    assert cfg.source == str(path)
    assert dataclasses.replace(cfg, source="embedded default") == load_config(None)


# --- the SPEC example ------------------------------------------------------------------


def test_spec_example_parses_every_key(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    cfg = load_text(tmp_path, SPEC_EXAMPLE.format(data_dir=data_dir))
    assert cfg.hostname == "mx.example.test"
    assert cfg.domains == ("example.test",)
    assert cfg.data_dir == data_dir
    assert cfg.listen.smtp == ("127.0.0.1:2525",)
    assert cfg.listen.submission == ("127.0.0.1:2587",)
    assert cfg.listen.submissions == ()
    assert cfg.listen.imap == ("127.0.0.1:2143",)
    assert cfg.listen.imaps == ()
    assert cfg.listen.pop3 == ("127.0.0.1:2110",)
    assert cfg.listen.pop3s == ()
    assert cfg.tls.cert == "/etc/tinymail/cert.pem"
    assert cfg.tls.key == "/etc/tinymail/key.pem"
    assert cfg.users_file == data_dir / "users"
    assert cfg.aliases_file == data_dir / "aliases"
    assert cfg.store.format == "maildir"
    assert cfg.relay.trusted_networks == ("127.0.0.0/8", "::1/128")
    assert cfg.relay.smarthost == ""
    assert cfg.relay.smarthost_user == ""
    assert cfg.transport == (
        ("example.net", "smtp:[127.0.0.1]:2626"),
        ("lists.example.test", "local"),
    )
    assert (cfg.queue.retry_min, cfg.queue.retry_max) == (300, 3600)
    assert (cfg.queue.lifetime, cfg.queue.warn_after) == (5 * 86400, 4 * 3600)
    assert cfg.dns.nameservers == ()
    assert cfg.is_local_domain("EXAMPLE.test.")
    assert not cfg.is_local_domain("example.net")


def test_hostname_and_domains_are_normalised(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, 'hostname = "MX.Example.TEST."\ndomains = ["A.Test", "b.test."]\n')
    assert cfg.hostname == "mx.example.test"
    assert cfg.domains == ("a.test", "b.test")


def test_domains_default_to_localhost_and_hostname(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, 'hostname = "mx.example.test"\n')
    assert cfg.domains == ("localhost", "mx.example.test")


def test_relative_and_absolute_file_paths(tmp_path: Path) -> None:
    text = f'data_dir = "{tmp_path}/d"\n[users]\nfile = "etc/users"\n'
    text += '[aliases]\nfile = "/x/aliases"\n'
    cfg = load_text(tmp_path, text)
    assert cfg.users_file == tmp_path / "d" / "etc" / "users"
    assert cfg.aliases_file == Path("/x/aliases")


def test_relative_data_dir_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = load_text(tmp_path, 'data_dir = "rel/data"\n')
    assert cfg.data_dir == tmp_path / "rel" / "data"
    assert cfg.data_dir.is_absolute()


def test_smtp_section_sizes_and_timeouts(tmp_path: Path) -> None:
    text = (
        "[smtp]\n"
        'max_message_size = "10M"\n'
        "max_recipients = 50\n"
        'command_timeout = "1h30m"\n'
        'data_timeout = "90s"\n'
    )
    cfg = load_text(tmp_path, text)
    assert cfg.smtp.max_message_size == 10 * 1024 * 1024
    assert cfg.smtp.max_recipients == 50
    assert cfg.smtp.command_timeout == 5400
    assert cfg.smtp.data_timeout == 90
    assert load_text(tmp_path, "[smtp]\nmax_message_size = 12345\n").smtp.max_message_size == 12345


def test_ipv6_listen_and_networks(tmp_path: Path) -> None:
    text = (
        '[listen]\nsmtp = ["[::1]:25", "0.0.0.0:2525"]\n'
        '[relay]\ntrusted_networks = ["10.1.2.3/8"]\n'
    )
    cfg = load_text(tmp_path, text)
    assert cfg.listen.smtp == ("[::1]:25", "0.0.0.0:2525")
    # A host address with a prefix is accepted (non-strict), as Postfix mynetworks does.
    assert cfg.relay.trusted_networks == ("10.1.2.3/8",)


# --- value parsers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("4h", 14400),
        ("5d", 432000),
        ("1h30m", 5400),
        ("1d2h3m4s", 86400 + 7200 + 180 + 4),
        (" 5m ", 300),
    ],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["5x", "", "   ", "5", "m", "-5m", "5 m", "1.5h", "5M"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="bad duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("value", "size"),
    [(1, 1), ("100", 100), ("512k", 512 * 1024), ("35M", 35 * 1024**2), ("2g", 2 * 1024**3)],
)
def test_parse_size(value: int | str, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize("value", [0, -1, True, "", "M", "35 MiB", "1.5M", "x"])
def test_parse_size_rejects(value: int | str) -> None:
    with pytest.raises(ValueError):
        parse_size(value)


def test_parse_size_rejects_zero_string() -> None:
    with pytest.raises(ValueError):
        parse_size("0M")


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("127.0.0.1:25", ("127.0.0.1", 25)),
        ("[::1]:25", ("::1", 25)),
        ("[2001:db8::1]:587", ("2001:db8::1", 587)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
    ],
)
def test_parse_listen(text: str, parsed: tuple[str, int]) -> None:
    assert parse_listen(text) == parsed


@pytest.mark.parametrize(
    "text",
    ["127.0.0.1", "127.0.0.1:", ":25", "localhost:25", "1.2.3.4:65536", "[::1]25", "[::1]", "x:y"],
)
def test_parse_listen_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="bad listen address"):
        parse_listen(text)


# --- errors name the key and the line ------------------------------------------------------


def test_unknown_top_level_key_names_key_and_line(tmp_path: Path) -> None:
    message = config_error(tmp_path, 'hostname = "a.test"\n\nbogus = 1\n')
    assert "'bogus'" in message
    assert "line 3" in message
    assert str(tmp_path / "tinymail.toml") in message


def test_unknown_top_level_table_names_its_header_line(tmp_path: Path) -> None:
    message = config_error(tmp_path, 'hostname = "a.test"\n[bogus]\nx = 1\n')
    assert "'bogus'" in message
    assert "line 2" in message


@pytest.mark.parametrize(
    ("text", "name", "line"),
    [
        ('[queue]\nretry_min = "5m"\nretry_mn = "5m"\n', "queue.retry_mn", 3),
        ('[listen]\nsmtp = []\n\nsmtps = ["127.0.0.1:465"]\n', "listen.smtps", 4),
        ('[users]\nfile = "u"\npath = "x"\n', "users.path", 3),
        ('[aliases]\nfiles = "a"\n', "aliases.files", 2),
        ("[tls]\ncert = ''\nchain = ''\n", "tls.chain", 3),
        ("[dns]\nserver = []\n", "dns.server", 2),
    ],
)
def test_unknown_section_key_names_key_and_line(
    tmp_path: Path, text: str, name: str, line: int
) -> None:
    message = config_error(tmp_path, text)
    assert name in message
    assert f"line {line}" in message
    assert "unknown key" in message


@pytest.mark.parametrize(
    ("text", "name", "line"),
    [
        ("hostname = 5\n", "hostname", 1),
        ('domains = "example.test"\n', "domains", 1),
        ('hostname = "a.test"\ndomains = ["a b"]\n', "domains", 2),
        ("data_dir = 3\n", "data_dir", 1),
        ("listen = 5\n", "listen", 1),
        ('[listen]\nsmtp = "127.0.0.1:25"\n', "listen.smtp", 2),
        ('[listen]\nimap = ["localhost:143"]\n', "listen.imap", 2),
        ('[listen]\npop3 = ["127.0.0.1:99999"]\n', "listen.pop3", 2),
        ('[store]\nformat = "mbx"\n', "store.format", 2),
        ('[relay]\ntrusted_networks = ["10.0.0.0/33"]\n', "relay.trusted_networks", 2),
        ('[relay]\nsmarthost = "no-port"\n', "relay.smarthost", 2),
        ("[relay]\nsmarthost_user = 1\n", "relay.smarthost_user", 2),
        ('[queue]\nretry_min = "5x"\n', "queue.retry_min", 2),
        ('[queue]\n\nlifetime = ""\n', "queue.lifetime", 3),
        ("[queue]\nwarn_after = 300\n", "queue.warn_after", 2),
        ('[dns]\nnameservers = ["dns.google"]\n', "dns.nameservers", 2),
        ("[smtp]\nmax_recipients = 0\n", "smtp.max_recipients", 2),
        ("[smtp]\nmax_recipients = true\n", "smtp.max_recipients", 2),
        ('[smtp]\nmax_message_size = "big"\n', "smtp.max_message_size", 2),
        ('[users]\nfile = ""\n', "users.file", 2),
        ("[aliases]\nfile = 1\n", "aliases.file", 2),
        ('[transport]\n"example.net" = "uucp:host"\n', "transport.example.net", 2),
        ('[transport]\n"example.net" = 1\n', "transport.example.net", 2),
    ],
)
def test_bad_values_name_key_and_line(tmp_path: Path, text: str, name: str, line: int) -> None:
    message = config_error(tmp_path, text)
    assert f"{name}:" in message
    assert f"line {line}" in message


def test_toml_syntax_error_is_a_config_error(tmp_path: Path) -> None:
    message = config_error(tmp_path, 'hostname = "unterminated\n')
    assert str(tmp_path / "tinymail.toml") in message


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.toml")
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'hostname = "caf\xe9.test"\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


@pytest.mark.parametrize("value", ["127.0.0.1", "127.0.0.1:5353", "::1", "2001:db8::53"])
def test_nameservers_accepted(tmp_path: Path, value: str) -> None:
    cfg = load_text(tmp_path, f'[dns]\nnameservers = ["{value}"]\n')
    assert cfg.dns.nameservers == (value,)


def test_nameserver_ipv6_with_port(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, '[dns]\nnameservers = ["[::1]:5353"]\n')
    assert cfg.dns.nameservers == ("[::1]:5353",)
    with pytest.raises(ConfigError, match=r"dns\.nameservers"):
        load_text(tmp_path, '[dns]\nnameservers = ["1.2.3.4:"]\n')


# --- render round trip -------------------------------------------------------------------------


def _roundtrip(tmp_path: Path, cfg: Config) -> Config:
    path = write(tmp_path, render(cfg), name="rendered.toml")
    again = load_config(path)
    return dataclasses.replace(again, source=cfg.source)


def test_render_round_trip_spec_example(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, SPEC_EXAMPLE.format(data_dir=tmp_path / "data"))
    assert _roundtrip(tmp_path, cfg) == cfg


def test_render_round_trip_everything_changed(tmp_path: Path) -> None:
    text = f"""\
hostname = "mail.example.org"
domains = ["example.org", "example.net"]
data_dir = "{tmp_path}/weird \\"dir\\""

[listen]
smtp = ["[::1]:25", "192.0.2.1:25"]
submission = []
submissions = ["127.0.0.1:465"]
imap = []
imaps = ["127.0.0.1:993"]
pop3 = []
pop3s = ["127.0.0.1:995"]

[tls]
cert = "c.pem"
key = "k.pem"

[users]
file = "/etc/tinymail/users"

[aliases]
file = "conf/aliases"

[store]
format = "mbox"

[relay]
trusted_networks = ["192.0.2.0/24"]
smarthost = "smtp.example.net:587"
smarthost_user = "me"
smarthost_password_file = "/etc/tinymail/smarthost.pw"

[transport]
"example.com" = "smtp:relay.example.com:2525"

[queue]
retry_min = "90s"
retry_max = "1h30m"
lifetime = "3d"
warn_after = "2h"

[dns]
nameservers = ["192.0.2.53", "192.0.2.54:5353"]

[smtp]
max_message_size = "20M"
max_recipients = 10
command_timeout = "7m"
data_timeout = "601s"
"""
    cfg = load_text(tmp_path, text)
    assert cfg.data_dir == Path(f'{tmp_path}/weird "dir"')
    assert cfg.queue.retry_min == 90
    assert cfg.queue.retry_max == 5400
    assert _roundtrip(tmp_path, cfg) == cfg


def test_render_round_trip_embedded_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TINYMAIL_HOME", str(tmp_path / "home"))
    cfg = load_config(None)
    rendered = render(cfg)
    assert rendered.startswith("# effective configuration (from embedded default)\n")
    assert _roundtrip(tmp_path, cfg) == cfg


def test_render_lists_every_section(tmp_path: Path) -> None:
    rendered = render(load_text(tmp_path, ""))
    headers = re.findall(r"^\[(\w+)\]$", rendered, flags=re.MULTILINE)
    expected = ["users", "aliases", "listen", "tls", "store", "relay", "queue", "dns", "smtp"]
    expected += ["auth", "limits", "server"]
    assert headers == [*expected, "transport"]


# --- find_config --------------------------------------------------------------------------------


def test_find_config_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    etc = tmp_path / "etc.toml"
    monkeypatch.setattr(quickconfig, "DEFAULT_CONFIG_FILE", str(etc))
    monkeypatch.setenv("TINYMAIL_CONFIG", str(tmp_path / "env.toml"))
    assert find_config(str(tmp_path / "cli.toml")) == tmp_path / "cli.toml"
    assert find_config(None) == tmp_path / "env.toml"
    monkeypatch.delenv("TINYMAIL_CONFIG")
    assert find_config(None) is None  # etc.toml does not exist
    etc.write_text("")
    assert find_config(None) == etc
    monkeypatch.setenv("TINYMAIL_CONFIG", "")
    assert find_config(None) == etc  # an empty variable counts as unset


@pytest.mark.skipif(
    Path(quickconfig.DEFAULT_CONFIG_FILE).exists(),
    reason="this machine has /etc/tinymail/tinymail.toml",
)
def test_find_config_none_on_this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TINYMAIL_CONFIG", raising=False)
    assert find_config(None) is None
