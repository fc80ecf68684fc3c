"""Shared fixtures: configs in tmp dirs and an in-process `tinymail serve` on ephemeral ports."""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trio

from tinymail.cli import main as cli_main
from tinymail.config import Config, load_config
from tinymail.net.context import ServerState
from tinymail.net.serve import serve

BASE_CONFIG = """\
hostname = "mx.example.test"
domains = ["example.test", "localhost", "mx.example.test"]
data_dir = "{data_dir}"

[listen]
smtp = ["127.0.0.1:0"]
submission = ["127.0.0.1:0"]
imap = ["127.0.0.1:0"]
pop3 = ["127.0.0.1:0"]

[queue]
retry_min = "1s"
retry_max = "2s"

[dns]
nameservers = ["127.0.0.1:9"]   # nothing answers: no test query ever leaves the host

[transport]
"example.net" = "smtp:[127.0.0.1]:9"   # refused at once: relayed test mail stays queued
"""


@pytest.fixture(autouse=True, scope="session")
def _private_cache_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """sendmail's config cache (quickconfig) goes to a temporary directory, not root's ~/.cache.

    Set in os.environ so that every sendmail subprocess a test starts inherits it.
    """
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if old is None:
        del os.environ["XDG_CACHE_HOME"]
    else:
        os.environ["XDG_CACHE_HOME"] = old


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., Path]:
    """Write a config file under tmp_path; `extra` TOML is appended. Returns its path."""

    def make(extra: str = "", base: str = BASE_CONFIG) -> Path:
        data_dir = tmp_path / "data"
        path = tmp_path / "tinymail.toml"
        path.write_text(base.format(data_dir=data_dir) + textwrap.dedent(extra))
        return path

    return make


@pytest.fixture
def config_path(make_config: Callable[..., Path]) -> Path:
    """The default test config file."""
    return make_config()


@pytest.fixture
def config(config_path: Path) -> Config:
    """The default test config, loaded."""
    return load_config(config_path)


def add_user(
    config_path: Path, address: str, password: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Add a user the way an admin does: `tinymail -c CONF user add ADDR --password-stdin`."""
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO(password + "\n"))
    assert cli_main(["-c", str(config_path), "user", "add", address, "--password-stdin"]) == 0


@pytest.fixture
async def server(nursery: trio.Nursery, config: Config) -> ServerState:
    """A running server (all services on 127.0.0.1 ephemeral ports); cancelled after the test."""
    state: ServerState = await nursery.start(serve, config)
    return state


def port_of(state: ServerState, service: str) -> int:
    """The first bound port of a service."""
    return state.bound[service][0][1]
