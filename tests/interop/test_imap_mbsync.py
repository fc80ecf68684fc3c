"""Debian's mbsync (isync) syncs a tinymail mailbox to a local Maildir and pushes a flag
change and a deletion back."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import trio

from tests.net.test_imap_session import PASSWORD, USER, client, in_thread, start_server

MBSYNC = shutil.which("mbsync")
pytestmark = pytest.mark.skipif(MBSYNC is None, reason="isync (mbsync) not installed")


def config(tmp_path: Path, port: int) -> Path:
    local = tmp_path / "local"
    local.mkdir()
    cfg = tmp_path / "mbsyncrc"
    cfg.write_text(
        f'IMAPAccount tm\nHost 127.0.0.1\nPort {port}\nUser {USER}\nPass "{PASSWORD}"\n'
        "SSLType None\nAuthMechs LOGIN\n\n"
        "IMAPStore remote\nAccount tm\n\n"
        f"MaildirStore local\nPath {local}/\nInbox {local}/INBOX\nSubFolders Verbatim\n\n"
        "Channel ch\nFar :remote:\nNear :local:\nPatterns INBOX\nCreate Near\n"
        "Sync All\nExpunge Both\nSyncState *\n"
    )
    return cfg


def mbsync(cfg: Path) -> None:
    assert MBSYNC is not None
    proc = subprocess.run(
        [MBSYNC, "-c", str(cfg), "ch"], capture_output=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


async def test_mbsync_round_trip(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        srv = await start_server(nursery, tmp_path / "server")
        for i in range(3):
            srv.deliver(b"Subject: sync %d\nMessage-ID: <%d@x>\n\nbody %d\n" % (i, i, i))
        cfg = config(tmp_path, srv.port)
        await in_thread(lambda: mbsync(cfg))
        inbox = tmp_path / "local" / "INBOX"
        files = sorted(os.listdir(inbox / "cur") + os.listdir(inbox / "new"))
        assert len(files) == 3
        # locally: flag the first as seen, delete the second
        cur = inbox / "cur"
        for sub in ("new", "cur"):
            for name in os.listdir(inbox / sub):
                data = (inbox / sub / name).read_bytes()
                base = name.split(":", 1)[0]
                if b"sync 0" in data:
                    os.rename(inbox / sub / name, cur / f"{base}:2,S")
                elif b"sync 1" in data:
                    os.unlink(inbox / sub / name)
        await in_thread(lambda: mbsync(cfg))

        def check() -> None:
            c = client(srv.port)
            c.select_folder("INBOX")
            uids = c.search("ALL")
            subjects = {
                u: d[b"BODY[HEADER.FIELDS (SUBJECT)]"]
                for u, d in c.fetch(uids, ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]"]).items()
            }
            flags = c.get_flags(uids)
            assert sorted(subjects.values()) == [
                b"Subject: sync 0\r\n\r\n",
                b"Subject: sync 2\r\n\r\n",
            ]
            seen = [u for u in uids if b"\\Seen" in flags[u]]
            assert [subjects[u] for u in seen] == [b"Subject: sync 0\r\n\r\n"]
            c.logout()

        await in_thread(check)
        nursery.cancel_scope.cancel()
