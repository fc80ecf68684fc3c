"""Multi-session consistency in the spirit of Dovecot's imaptest stress mode: several real
clients work on one INBOX at once, in a bounded randomized run, then every session's view
is checked against the truth."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import trio
from imapclient import IMAPClient  # type: ignore[import-untyped]

from tests.net.test_imap_session import PASSWORD, USER, in_thread, start_server

CLIENTS = 4
OPS = 25


def connect(port: int) -> IMAPClient:
    c = IMAPClient("127.0.0.1", port=port, ssl=False, timeout=30)
    c.login(USER, PASSWORD)
    c.select_folder("INBOX")
    return c


async def test_concurrent_sessions_stay_consistent(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        srv = await start_server(nursery, tmp_path)
        for i in range(10):
            srv.deliver(b"Subject: seed %d\n\nx\n" % i)
        recent_seen: list[set[int]] = [set() for _ in range(CLIENTS)]
        expected: list[dict[int, bool]] = [{} for _ in range(CLIENTS)]
        errors: list[BaseException] = []
        barrier = threading.Barrier(CLIENTS)

        def worker(n: int) -> None:
            rng = random.Random(n)
            keyword = f"$k{n}"
            try:
                c = connect(srv.port)
                barrier.wait(30)
                for _ in range(OPS):
                    recent_seen[n] |= _recent_uids(c)
                    uids = c.search("ALL")
                    op = rng.random()
                    if op < 0.5 and uids:
                        uid = rng.choice(uids)
                        on = rng.random() < 0.5
                        if on:
                            c.add_flags([uid], [keyword], silent=True)
                        else:
                            c.remove_flags([uid], [keyword], silent=True)
                        expected[n][uid] = on
                    elif op < 0.65:
                        c.append("INBOX", b"Subject: from %d\r\n\r\ny\r\n" % n)
                    elif op < 0.75 and uids and n == 0:
                        victim = rng.choice(uids)
                        c.add_flags([victim], [b"\\Deleted"], silent=True)
                        c.expunge()
                    elif op < 0.85:
                        srv.deliver(b"Subject: delivered by %d\n\nz\n" % n)
                    else:
                        c.noop()
                barrier.wait(60)
                c.noop()
                recent_seen[n] |= _recent_uids(c)
                barrier.wait(60)
                truth = connect(srv.port)
                want = truth.search("ALL")
                flags = truth.get_flags(want)
                truth.logout()
                c.noop()
                c.use_uid = False  # check the session's sequence numbers, not just UIDs
                numbers = c.search("ALL")  # sequence numbers as this session knows them
                seqs = c.fetch(numbers, ["UID"]) if numbers else {}
                got = [seqs[s][b"UID"] for s in sorted(seqs)]
                assert sorted(seqs) == list(range(1, len(want) + 1))
                c.use_uid = True
                assert got == sorted(want), f"session {n} view {got} != {sorted(want)}"
                for uid, on in expected[n].items():
                    if uid in flags:
                        assert (keyword.encode() in flags[uid]) == on, (n, uid, flags[uid])
                c.logout()
            except BaseException as exc:
                errors.append(exc)
                barrier.abort()

        def run_all() -> None:
            threads = [threading.Thread(target=worker, args=(n,)) for n in range(CLIENTS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)

        await in_thread(run_all)
        assert not errors, errors[0]
        for a in range(CLIENTS):
            for b in range(a + 1, CLIENTS):
                assert not recent_seen[a] & recent_seen[b], "a message was \\Recent twice"
        nursery.cancel_scope.cancel()


def _recent_uids(c: IMAPClient) -> set[int]:
    return {int(uid) for uid in c.search("RECENT")}  # UID SEARCH: imapclient uses UIDs
