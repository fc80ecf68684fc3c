"""tinymail.quickconfig: sendmail's view of the config, and the per-user cache behind it."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tinymail import config as config_mod
from tinymail import quickconfig
from tinymail.config import ConfigError, load_config
from tinymail.quickconfig import SendmailConfig


@pytest.fixture(autouse=True)
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private cache directory, and no racy window (tests change files at once)."""
    home = tmp_path / "cache-home"
    home.mkdir()
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    monkeypatch.setattr(quickconfig, "RACY_WINDOW", 0.0)
    monkeypatch.setattr(quickconfig, "RACY_WINDOW_FINE", 0.0)
    return home


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every full load (config.build) that quickconfig makes."""
    calls: list[str] = []
    real = config_mod.build

    def build(raw: dict[str, object], text: str, source: str) -> config_mod.Config:
        calls.append(source)
        return real(raw, text, source)

    monkeypatch.setattr(config_mod, "build", build)
    return calls


def cache_file(home: Path) -> Path:
    return home / "tinymail" / quickconfig.CACHE_NAME


def test_values_are_the_full_loaders(config_path: Path) -> None:
    expected = SendmailConfig.from_config(load_config(config_path))
    assert quickconfig.load(str(config_path)) == expected  # miss
    assert quickconfig.load(str(config_path)) == expected  # hit
    assert expected.queue_dir == str(load_config(config_path).queue_dir)
    assert expected.config_arg == str(config_path)


def test_embedded_default_is_the_full_loaders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TINYMAIL_CONFIG", raising=False)
    monkeypatch.setattr(quickconfig, "DEFAULT_CONFIG_FILE", str(tmp_path / "no-such.toml"))
    for home in (str(tmp_path / "home"), "relative//./dir/", "~/x"):
        monkeypatch.setenv("TINYMAIL_HOME", home)
        expected = SendmailConfig.from_config(load_config(None))
        assert quickconfig.load(None) == expected
        assert expected.config_arg == ""
    monkeypatch.delenv("TINYMAIL_HOME")
    assert quickconfig.load(None) == SendmailConfig.from_config(load_config(None))


def test_a_hit_does_not_parse(config_path: Path, loads: list[str], cache_home: Path) -> None:
    first = quickconfig.load(str(config_path))
    assert loads == [str(config_path)]
    assert cache_file(cache_home).stat().st_mode & 0o777 == 0o600
    assert (cache_home / "tinymail").stat().st_mode & 0o777 == 0o700
    assert quickconfig.load(str(config_path)) == first
    assert loads == [str(config_path)]


def test_a_changed_config_is_read_again(make_config: Callable[..., Path], loads: list[str]) -> None:
    path = make_config()
    assert quickconfig.load(str(path)).max_message_size == 35 * 1024 * 1024
    make_config("[smtp]\nmax_message_size = 1024\n")
    assert quickconfig.load(str(path)).max_message_size == 1024
    assert len(loads) == 2
    # Same size, same inode, mtime put back (as `cp -p` or an editor may): ctime tells.
    before = path.stat()
    time.sleep(0.05)  # a later tick of the file system's clock (RACY_WINDOW's job in real use)
    path.write_text(path.read_text().replace("1024", "2048"))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )
    assert quickconfig.load(str(path)).max_message_size == 2048


def test_a_deleted_or_corrupt_cache_is_rebuilt(
    config_path: Path, loads: list[str], cache_home: Path
) -> None:
    expected = quickconfig.load(str(config_path))
    cache_file(cache_home).unlink()
    assert quickconfig.load(str(config_path)) == expected
    assert cache_file(cache_home).exists()
    for junk in (b"", b"\x00garbage", cache_file(cache_home).read_bytes()[:-3]):
        cache_file(cache_home).write_bytes(junk)
        assert quickconfig.load(str(config_path)) == expected
    assert len(loads) == 5
    assert quickconfig.load(str(config_path)) == expected
    assert len(loads) == 5  # the last rebuild was cached again


@pytest.mark.parametrize("mode", [0o620, 0o602])
def test_a_cache_others_can_write_is_ignored(
    config_path: Path, loads: list[str], cache_home: Path, mode: int
) -> None:
    quickconfig.load(str(config_path))
    cache_file(cache_home).chmod(mode)
    quickconfig.load(str(config_path))
    assert len(loads) == 2
    quickconfig.load(str(config_path))  # replaced by a private one
    assert len(loads) == 2


def test_a_cache_directory_others_can_write_is_ignored(
    config_path: Path, loads: list[str], cache_home: Path
) -> None:
    quickconfig.load(str(config_path))
    (cache_home / "tinymail").chmod(0o777)
    quickconfig.load(str(config_path))
    quickconfig.load(str(config_path))
    assert len(loads) == 3  # neither read nor written while the directory is open to others


def test_a_symlinked_cache_is_ignored(
    config_path: Path, loads: list[str], cache_home: Path, tmp_path: Path
) -> None:
    quickconfig.load(str(config_path))
    elsewhere = tmp_path / "planted"
    cache_file(cache_home).rename(elsewhere)
    cache_file(cache_home).symlink_to(elsewhere)
    quickconfig.load(str(config_path))
    assert len(loads) == 2


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the file away")
def test_a_cache_owned_by_another_user_is_ignored(
    config_path: Path, loads: list[str], cache_home: Path
) -> None:
    quickconfig.load(str(config_path))
    os.chown(cache_file(cache_home), 65534, 65534)
    quickconfig.load(str(config_path))
    assert len(loads) == 2


def test_a_racy_config_is_not_cached(
    config_path: Path, loads: list[str], monkeypatch: pytest.MonkeyPatch, cache_home: Path
) -> None:
    monkeypatch.setattr(quickconfig, "RACY_WINDOW", 3600.0)
    monkeypatch.setattr(quickconfig, "RACY_WINDOW_FINE", 3600.0)
    quickconfig.load(str(config_path))
    quickconfig.load(str(config_path))
    assert len(loads) == 2
    assert not cache_file(cache_home).exists()


@pytest.mark.parametrize(
    "change",
    [
        ('hostname = "mx.example.test"\n', ""),  # the host's name would be a key
        ('data_dir = "', 'data_dir = "./'),  # so would the working directory
    ],
)
def test_configs_that_depend_on_the_environment_are_not_cached(
    tmp_path: Path, loads: list[str], change: tuple[str, str]
) -> None:
    from tests.conftest import BASE_CONFIG

    path = tmp_path / "env-dependent.toml"
    text = BASE_CONFIG.format(data_dir=tmp_path / "data").replace(*change)
    assert text != BASE_CONFIG
    path.write_text(text)
    first = quickconfig.load(str(path))
    assert quickconfig.load(str(path)) == first
    assert len(loads) == 2


def test_config_errors_are_the_full_loaders_and_never_cached(
    tmp_path: Path, loads: list[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('hostname = "h.test"\ndata_dir = "/x"\n\n[smtp]\nmax_recipients = 0\n')
    for _ in range(2):
        with pytest.raises(ConfigError) as err:
            quickconfig.load(str(bad))
        with pytest.raises(ConfigError) as full:
            load_config(bad)
        assert str(err.value) == str(full.value)
        assert "line 5" in str(err.value) and "smtp.max_recipients" in str(err.value)
    with pytest.raises(ConfigError, match="cannot read config"):
        quickconfig.load(str(tmp_path / "missing.toml"))


def test_an_unwritable_cache_is_no_error(
    config_path: Path, loads: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    first = quickconfig.load(str(config_path))
    assert quickconfig.load(str(config_path)) == first
    assert len(loads) == 2


def test_two_installs_keep_their_own_entries(
    config_path: Path,
    make_config: Callable[..., Path],
    loads: list[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """A zipapp and a pip install (different code) used alike do not evict each other."""
    other = tmp_path / "other.toml"
    other.write_text(config_path.read_text())
    stamps = [(1, 2, 3), (4, 5, 6)]
    for _ in range(3):
        for stamp in stamps:
            monkeypatch.setattr(quickconfig, "_code_stamp", lambda stamp=stamp: stamp)
            quickconfig.load(str(config_path))
            quickconfig.load(str(other))
    assert len(loads) == 4  # each config under each code parsed once
    make_config("[smtp]\nmax_message_size = 1024\n")  # a new state replaces the old entry
    assert quickconfig.load(str(config_path)).max_message_size == 1024
    assert len(quickconfig._read_entries()) == 4
    monkeypatch.setattr(quickconfig, "MAX_ENTRIES", 2)
    quickconfig.load(str(other))  # a hit: nothing rewritten
    make_config("[smtp]\nmax_message_size = 2048\n")
    quickconfig.load(str(config_path))
    assert len(quickconfig._read_entries()) == 2


def test_a_fine_grained_config_is_cached_after_a_few_clock_ticks(
    config_path: Path, loads: list[str], monkeypatch: pytest.MonkeyPatch, cache_home: Path
) -> None:
    """Sub-second timestamps: RACY_WINDOW_FINE, not the whole-second RACY_WINDOW, applies."""
    monkeypatch.setattr(quickconfig, "RACY_WINDOW", 3600.0)
    monkeypatch.setattr(quickconfig, "RACY_WINDOW_FINE", 0.05)
    if os.stat(config_path).st_ctime_ns % 1_000_000_000 == 0:
        pytest.skip("this file system keeps whole-second timestamps")
    time.sleep(quickconfig.RACY_WINDOW_FINE * 2)
    quickconfig.load(str(config_path))
    quickconfig.load(str(config_path))
    assert len(loads) == 1
