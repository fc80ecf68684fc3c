"""What `sendmail` needs of the config, without the cost of loading all of it.

Theory (bench/sendmail_latency.py, issue 3 "Fast and light"):
- sendmail's queueing path needs seven values (host name, local domains, data_dir, the users
  and aliases files, the size limit, where they came from). Importing config.py (tomllib,
  dataclasses, pathlib, re) costs more than the rest of the command, so this module imports
  only what the interpreter has already loaded, and keeps the values in `SendmailConfig`.
- The values come from a per-user cache of the parsed file, or from `config.load_config`, the
  only parser and validator: a config error is never cached, so its message (key, line, exit
  78) is always the full loader's. The embedded default needs no parser and is built here.
- The cache ($XDG_CACHE_HOME or ~/.cache, then tinymail/sendmail-config; marshal, the
  MAX_ENTRIES most recent entries) is keyed by the config file's path, device, inode, size,
  mtime and ctime, the tinymail code and the Python version. It is trusted only when the
  caller owns it and its directory and neither is writable by anyone else (opened relative to
  the checked directory, no symlinks), and written only for a file whose last change is older
  than RACY_WINDOW (RACY_WINDOW_FINE where timestamps have sub-second parts), so a change in
  the same timestamp tick as the cached one cannot go unseen (git's "racy clean" rule). A
  stale, unreadable, foreign or corrupt cache is ignored and replaced.
- Only configs whose values cannot depend on the environment are cached: `hostname` given and
  `data_dir` absolute (else the host's name, $HOME or the working directory would be keys too).
"""

import marshal
import os
import sys
import time

from tinymail.record import Record

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: importing typing costs ~2 ms; mypy knows both
if TYPE_CHECKING:
    from tinymail.config import Config

DEFAULT_CONFIG_FILE = "/etc/tinymail/tinymail.toml"
DEFAULT_MAX_MESSAGE_SIZE = 35 * 1024 * 1024
CACHE_NAME = "sendmail-config"
CacheKey = tuple[str | int | tuple[int, ...], ...]  # marshal-able: path, stat fields, code
CacheValues = tuple[str | int | tuple[str, ...], ...]  # SendmailConfig's, in __slots__ order
MAX_ENTRIES = 8  # e.g. the zipapp and a pip install, used alike, each keep their entry
RACY_WINDOW = 2.0  # seconds: a coarser file-system clock than any Linux one (ext3: 1 s)
# Where timestamps have sub-second parts (ext4, xfs, btrfs, tmpfs), the kernel stamps files
# from a clock that ticks every jiffy (at most 10 ms): a window of a few ticks is enough.
RACY_WINDOW_FINE = 0.05
_FORMAT = b"tinymail-sendmail-config-2"


class ConfigError(Exception):
    """A config problem, phrased as one line for the user (also tinymail.config.ConfigError)."""


class SendmailConfig(Record):
    """The config values sendmail's queueing path uses; paths are strings (no pathlib)."""

    __slots__ = (
        "aliases_file",
        "data_dir",
        "domains",
        "hostname",
        "max_message_size",
        "source",
        "users_file",
    )

    def __init__(
        self,
        hostname: str,
        domains: tuple[str, ...],
        data_dir: str,
        users_file: str,
        aliases_file: str,
        max_message_size: int,
        source: str,
    ) -> None:
        self.hostname = hostname
        self.domains = domains
        self.data_dir = data_dir
        self.users_file = users_file
        self.aliases_file = aliases_file
        self.max_message_size = max_message_size
        self.source = source  # the config file, or "embedded default"

    @classmethod
    def from_config(cls, cfg: "Config") -> "SendmailConfig":
        """The sendmail view of a fully loaded config."""
        return cls(
            cfg.hostname,
            cfg.domains,
            str(cfg.data_dir),
            str(cfg.users_file),
            str(cfg.aliases_file),
            cfg.smtp.max_message_size,
            cfg.source,
        )

    @property
    def queue_dir(self) -> str:
        """Where the durable queue lives (Config.queue_dir)."""
        return os.path.join(self.data_dir, "queue")

    @property
    def config_arg(self) -> str:
        """The config file to hand to a child process ("" for the embedded default)."""
        return "" if self.source == "embedded default" else self.source

    def is_local_domain(self, domain: str) -> bool:
        """True when mail for `domain` is delivered here (Config.is_local_domain)."""
        return domain.lower().rstrip(".") in self.domains


def config_file(cli_path: str | None) -> str | None:
    """Config lookup per SPEC: -c FILE, $TINYMAIL_CONFIG, /etc/tinymail/tinymail.toml, else None."""
    if cli_path:
        return cli_path
    env = os.environ.get("TINYMAIL_CONFIG")
    if env:
        return env
    if os.path.exists(DEFAULT_CONFIG_FILE):
        return DEFAULT_CONFIG_FILE
    return None


def default_data_dir() -> str:
    """$TINYMAIL_HOME, else ~/.local/share/tinymail."""
    home = os.environ.get("TINYMAIL_HOME")
    if home:
        return home
    return os.path.join(os.path.expanduser("~"), ".local", "share", "tinymail")


def as_path(text: str) -> str:
    """`text` with `~` expanded, made absolute, spelled as str(pathlib.Path(text)) spells it."""
    text = os.path.expanduser(text)
    if not text.startswith("/"):
        text = os.path.join(os.getcwd(), text)
    root = "//" if text.startswith("//") and not text.startswith("///") else "/"
    return root + "/".join(part for part in text.split("/") if part not in ("", "."))


def default_hostname() -> str:
    """This host's fully qualified name, lowercased: socket.getfqdn()'s answer, from _socket.

    The `socket` module itself costs a few ms to import; its getfqdn() is these lines.
    """
    import _socket

    name = _socket.gethostname()
    try:
        host, aliases, _addresses = _socket.gethostbyaddr(name)
    except OSError:
        pass
    else:
        for candidate in [host, *aliases]:
            if "." in candidate:
                name = candidate
                break
        else:
            name = host
    name = name or _socket.gethostname() or "localhost"
    return name.lower().rstrip(".")


def load(cli_path: str | None) -> SendmailConfig:
    """The sendmail view of the config found for `cli_path` (see `config_file`).

    Raises ConfigError exactly as `config.load_config` does.
    """
    path = config_file(cli_path)
    if path is None:
        return embedded_default()
    try:
        st = os.stat(path)
    except OSError:
        return _load_full(path, None)  # the full loader phrases the error
    key = (
        os.path.abspath(path),
        st.st_dev,
        st.st_ino,
        st.st_size,
        st.st_mtime_ns,
        st.st_ctime_ns,
        _code_stamp(),
    )
    cached = read_cache(key)
    if cached is not None:
        return cached
    fine = st.st_ctime_ns % 1_000_000_000 != 0  # else maybe a whole-second file system
    window = RACY_WINDOW_FINE if fine else RACY_WINDOW
    return _load_full(path, key if time.time_ns() - st.st_ctime_ns > window * 1e9 else None)


def embedded_default() -> SendmailConfig:
    """The embedded default config's values (config.load_config(None))."""
    data_dir = as_path(default_data_dir())
    hostname = default_hostname()
    return SendmailConfig(
        hostname,
        ("localhost", hostname),
        data_dir,
        os.path.join(data_dir, "users"),
        os.path.join(data_dir, "aliases"),
        DEFAULT_MAX_MESSAGE_SIZE,
        "embedded default",
    )


def _load_full(path: str, key: CacheKey | None) -> SendmailConfig:
    from pathlib import Path

    from tinymail.config import build, read_raw

    raw, text = read_raw(Path(path))
    cfg = SendmailConfig.from_config(build(raw, text, path))
    data_dir = raw.get("data_dir")
    if key is not None and "hostname" in raw and isinstance(data_dir, str) and data_dir[:1] == "/":
        write_cache(key, cfg)
    return cfg


def _code_stamp() -> tuple[int, ...]:
    """What makes a cached entry valid for this code: tinymail's config.py and the Python."""
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "config.py")
    while True:  # in a zipapp the nearest file that exists is the archive itself
        try:
            st = os.stat(here)
        except OSError:
            parent = os.path.dirname(here)
            if parent == here:
                return (sys.hexversion, 0, 0)
            here = parent
            continue
        return (sys.hexversion, st.st_mtime_ns, st.st_size)


def cache_dir() -> str | None:
    """$XDG_CACHE_HOME/tinymail or ~/.cache/tinymail of the effective user, or None."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if base.startswith("/") and _owned(base):
        return os.path.join(base, "tinymail")
    import pwd

    try:  # not $HOME: under sudo it is still the invoking user's
        home = pwd.getpwuid(os.geteuid()).pw_dir
    except KeyError:
        return None
    return os.path.join(home, ".cache", "tinymail")


def _owned(path: str) -> bool:
    try:
        return os.stat(path).st_uid == os.geteuid()
    except OSError:
        return False


def _trusted(st: os.stat_result, kind: int) -> bool:
    """Owned by us, of the given file type, and writable by nobody else."""
    return st.st_uid == os.geteuid() and st.st_mode & 0o170000 == kind and not st.st_mode & 0o022


def read_cache(key: CacheKey) -> SendmailConfig | None:
    """The cached values for `key`, or None when absent, stale, untrusted or unreadable."""
    values = _read_entries().get(key)
    if values is None or len(values) != 7:
        return None
    aliases, data_dir, domains, hostname, size, source, users = values  # __slots__ order
    if not (
        isinstance(aliases, str)
        and isinstance(data_dir, str)
        and isinstance(domains, tuple)
        and isinstance(hostname, str)
        and isinstance(size, int)
        and isinstance(source, str)
        and isinstance(users, str)
    ):
        return None
    return SendmailConfig(hostname, domains, data_dir, users, aliases, size, source)


def _read_entries() -> dict[CacheKey, CacheValues]:
    """Every entry of a trusted cache file, newest first; {} when there is none."""
    where = cache_dir()
    if where is None:
        return {}
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        dir_fd = os.open(where, flags | os.O_DIRECTORY)
    except OSError:
        return {}
    try:
        if not _trusted(os.fstat(dir_fd), 0o040000):
            return {}
        fd = os.open(CACHE_NAME, flags | os.O_NONBLOCK, dir_fd=dir_fd)
        try:
            if not _trusted(os.fstat(fd), 0o100000):
                return {}
            data = os.read(fd, 1 << 20)
        finally:
            os.close(fd)
        magic, entries = marshal.loads(data)
        if magic != _FORMAT or not isinstance(entries, dict):
            return {}
        return entries
    except (OSError, ValueError, TypeError, EOFError):
        return {}
    finally:
        os.close(dir_fd)


def write_cache(key: CacheKey, cfg: SendmailConfig) -> None:
    """Store `cfg` for `key` (best effort: a cache that cannot be written is not an error)."""
    where = cache_dir()
    if where is None:
        return
    values: CacheValues = (
        cfg.aliases_file,
        cfg.data_dir,
        cfg.domains,
        cfg.hostname,
        cfg.max_message_size,
        cfg.source,
        cfg.users_file,
    )  # in __slots__ order
    entries = {key: values}
    for old_key, old_values in _read_entries().items():
        # An older state of the same file under the same code will never match again.
        same_file = old_key[0] == key[0] and old_key[-1] == key[-1]
        if len(entries) < MAX_ENTRIES and not same_file:
            entries[old_key] = old_values
    data = marshal.dumps((_FORMAT, entries))
    try:
        os.makedirs(where, 0o700, exist_ok=True)
        dir_fd = os.open(where, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return
    tmp = f".{CACHE_NAME}.{os.getpid()}"
    try:
        if not _trusted(os.fstat(dir_fd), 0o040000):
            return
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600, dir_fd=dir_fd
        )
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        # A torn file after a crash only fails to load; no fsync for a cache.
        os.replace(tmp, CACHE_NAME, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError:
        try:  # noqa: SIM105 (contextlib.suppress: one more module to import at start-up)
            os.unlink(tmp, dir_fd=dir_fd)
        except OSError:
            pass
    finally:
        os.close(dir_fd)
