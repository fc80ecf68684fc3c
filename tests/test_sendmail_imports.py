"""sendmail's start-up imports (issue 3, "Fast and light"; bench/sendmail_latency.py).

The queueing path must import no trio and nothing it does not need: these tests run it in a
fresh interpreter without site (-S, so only what sendmail itself loads is counted) and list
every module it added.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

import tinymail

ROOT = str(Path(tinymail.__file__).parent.parent)
# Builtin or tiny C modules the queueing path may load, besides tinymail's own, and `os` with
# what it loads (site.py imports them in every start without -S).
ALLOWED = {"errno", "pwd", "marshal", "_json", "time", "atexit"}
ALLOWED |= {"os", "os.path", "posixpath", "genericpath", "stat", "_stat", "_collections_abc"}
HEAVY = {"trio", "dns", "re", "enum", "typing", "dataclasses", "inspect", "pathlib", "json"}
HEAVY |= {"__future__"}  # its import is ~1% of a start-up: annotations are quoted instead
HEAVY |= {"tomllib", "socket", "contextlib", "email", "argparse", "logging", "collections"}
SCRIPT = textwrap.dedent(
    """
    import io, sys
    sys.path.insert(0, sys.argv[1])
    before = set(sys.modules)
    from tinymail import quickconfig, sendmail
    quickconfig.RACY_WINDOW = quickconfig.RACY_WINDOW_FINE = 0.0  # the config file is brand new
    status = sendmail.main(
        sys.argv[3:], config_path=sys.argv[2], stdin=io.BytesIO(sys.stdin.buffer.read()),
        spawn=lambda config, qid: None,
    )
    print(status, *sorted(set(sys.modules) - before))
    """
)
# root is a system account and example.net is not local: no users or aliases file is read.
MESSAGE = b"From: a@example.test\nTo: root, b@example.net\nCc: Bob <bob@example.net>\n\nhi\n"


def new_modules(conf: Path, cache: Path, *argv: str) -> list[str]:
    env = dict(os.environ, XDG_CACHE_HOME=str(cache))
    proc = subprocess.run(
        [sys.executable, "-S", "-c", SCRIPT, ROOT, str(conf), *argv],
        input=MESSAGE,
        env=env,
        capture_output=True,
        check=True,
    )
    status, *modules = proc.stdout.decode().split()
    assert status == "0", proc.stderr.decode()
    return modules


@pytest.mark.parametrize("argv", [["-t", "-i"], ["-FCronDaemon", "-i", "-oem", "root"]])
def test_queueing_imports_only_what_it_needs(
    make_config: Callable[..., Path], tmp_path: Path, argv: list[str]
) -> None:
    conf = make_config()
    cache = tmp_path / "cache"
    cache.mkdir()
    first = new_modules(conf, cache, *argv)
    assert "tinymail.config" in first  # the cache was empty: the full loader ran
    modules = new_modules(conf, cache, *argv)
    foreign = [m for m in modules if m not in ALLOWED and m.split(".")[0] != "tinymail"]
    assert foreign == []
    assert not HEAVY & {m.split(".")[0] for m in modules}
    assert "tinymail.config" not in modules  # served from the cache
    assert "tinymail.proto.control_wire" not in modules  # the trigger FIFO needs no socket
    assert ("tinymail.mail.addresses" in modules) == ("-t" in argv)


EXIT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[1])
    from tinymail.__main__ import exit_now
    if sys.argv[2] == "atexit":
        import atexit
        atexit.register(lambda: print("atexit ran"))
    if sys.argv[2] == "no-stdout":
        sys.stdout = None
    print("queued", end="")  # buffered: lost unless exit_now flushes it
    sys.stderr.write("note")
    exit_now(5)
    """
)


@pytest.mark.parametrize("hook", ["none", "atexit", "no-stdout"])
def test_exit_now_flushes_and_keeps_atexit_callbacks(hook: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-S", "-c", EXIT, ROOT, hook], capture_output=True, check=False
    )
    assert proc.returncode == 5
    assert proc.stderr == b"note"
    expected = {"none": b"queued", "atexit": b"queuedatexit ran\n", "no-stdout": b""}
    assert proc.stdout == expected[hook]


def test_a_virtual_user_recipient_needs_no_resolver(
    make_config: Callable[..., Path], tmp_path: Path
) -> None:
    """Mail to a user of the users file (not a system account) stays on the light path."""
    conf = make_config()
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    (data / "users").write_text("carol@example.test:{PLAIN}x\n")
    cache = tmp_path / "cache"
    cache.mkdir()
    new_modules(conf, cache, "carol@example.test")
    modules = new_modules(conf, cache, "carol@example.test")
    assert not {"tinymail.delivery.resolve", "tinymail.store.users"} & set(modules)
    assert not HEAVY & {m.split(".")[0] for m in modules}
