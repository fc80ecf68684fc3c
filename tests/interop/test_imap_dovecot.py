"""One Maildir served by Debian's Dovecot and by tinymail in turn: the UIDs, UIDVALIDITY,
flags and keywords each one sees are the same (dovecot-uidlist v3, dovecot-keywords)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tinymail.proto.imap.events import AuthRequest, Settings, Signal
from tinymail.proto.imap.server import ServerConnection
from tinymail.store.maildir import deliver
from tinymail.store.maildir_folders import MaildirStore

DOVECOT_IMAP = Path("/usr/lib/dovecot/imap")
NOBODY = 65534

pytestmark = pytest.mark.skipif(not DOVECOT_IMAP.exists(), reason="dovecot-imapd not installed")


@pytest.fixture
def home() -> Iterator[Path]:
    # Dovecot refuses to serve mail as root; it runs as nobody, so the tree must be reachable.
    base = Path(tempfile.mkdtemp(prefix="tinymail-dovecot-"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def dovecot(home: Path, script: bytes) -> bytes:
    """Run Dovecot's imap binary in PREAUTH mode over stdin/stdout on home/Maildir."""
    conf = home / "dovecot.conf"
    uid, gid = (NOBODY, NOBODY) if os.geteuid() == 0 else (os.geteuid(), os.getegid())
    conf.write_text(
        f"protocols = imap\nbase_dir = {home}/run\nstate_dir = {home}/state\n"
        f"log_path = {home}/dovecot.log\nssl = no\nmail_location = maildir:{home}/Maildir\n"
        f"mail_uid = {uid}\nmail_gid = {gid}\nfirst_valid_uid = 0\nfirst_valid_gid = 0\n"
    )
    if os.geteuid() == 0:
        for root, dirs, files in os.walk(home):
            for name in [*dirs, *files]:
                os.chown(os.path.join(root, name), NOBODY, NOBODY)
        os.chown(home, NOBODY, NOBODY)
    env = {"USER": "nobody", "HOME": str(home), "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen(
        [str(DOVECOT_IMAP), "-c", str(conf)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None
    out = proc.stdout.readline()
    assert out.startswith(b"* PREAUTH"), out
    # One command at a time: Dovecot runs pipelined commands in parallel.
    for line in script.split(b"\r\n"):
        if not line:
            continue
        tag = line.split(b" ", 1)[0] + b" "
        proc.stdin.write(line + b"\r\n")
        proc.stdin.flush()
        for _ in range(10000):
            reply = proc.stdout.readline()
            out += reply
            if reply.startswith(tag) or not reply:
                break
    proc.stdin.close()
    proc.wait(30)
    proc.stdout.close()
    if proc.stderr is not None:
        proc.stderr.close()
    return out


def tinymail(store: MaildirStore, script: bytes) -> bytes:
    conn = ServerConnection(Settings())
    conn.receive_data(b"a LOGIN u p\r\n" + script)
    out = b""
    for _ in range(1000):
        ev = conn.next_event()
        out += conn.data_to_send()
        if ev in (Signal.NEED_DATA, Signal.CLOSED):
            return out
        assert isinstance(ev, AuthRequest)
        conn.auth_result(store)
    raise AssertionError("core did not settle")


def flags_by_uid(out: bytes) -> dict[int, set[str]]:
    found = {}
    for m in re.finditer(
        rb"\* \d+ FETCH \((?:UID (\d+) FLAGS \(([^)]*)\)|FLAGS \(([^)]*)\) UID (\d+))", out
    ):
        uid = int(m.group(1) or m.group(4))
        flags = (m.group(2) if m.group(2) is not None else m.group(3)).decode().split()
        found[uid] = set(flags) - {"\\Recent"}
    return found


def uidvalidity(out: bytes) -> int:
    m = re.search(rb"\[UIDVALIDITY (\d+)\]", out)
    assert m is not None, out
    return int(m.group(1))


def test_dovecot_then_tinymail_then_dovecot(home: Path) -> None:
    maildir = home / "Maildir"
    for i in range(5):
        deliver([maildir], b"Subject: %d\n\nbody %d\n" % (i, i))
    out = dovecot(
        home,
        b"a SELECT INBOX\r\nb STORE 2 +FLAGS (\\Seen $Label1)\r\nc STORE 4 +FLAGS (\\Deleted)\r\n"
        b"d EXPUNGE\r\ne UID FETCH 1:* (FLAGS)\r\nf LOGOUT\r\n",
    )
    validity = uidvalidity(out)
    before = flags_by_uid(out)
    assert sorted(before) == [1, 2, 3, 5] and before[2] == {"\\Seen", "$Label1"}

    store = MaildirStore(maildir)
    out = tinymail(store, b"s SELECT INBOX\r\nf UID FETCH 1:* (FLAGS)\r\n")
    assert uidvalidity(out) == validity
    assert flags_by_uid(out) == before

    for i in range(2):
        deliver([maildir], b"Subject: later %d\n\nx\n" % i)
    out = tinymail(
        store,
        b"s SELECT INBOX\r\nt UID STORE 6 +FLAGS (\\Flagged $Label2)\r\n"
        b"u UID STORE 1 +FLAGS (\\Answered)\r\nf UID FETCH 1:* (FLAGS)\r\n",
    )
    ours = flags_by_uid(out)
    assert sorted(ours) == [1, 2, 3, 5, 6, 7]

    out = dovecot(home, b"a SELECT INBOX\r\nb UID FETCH 1:* (FLAGS)\r\nc LOGOUT\r\n")
    assert uidvalidity(out) == validity
    assert flags_by_uid(out) == ours
