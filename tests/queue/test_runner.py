"""The queue runner in-process: real spool and Maildirs in tmp_path, no sockets."""

from __future__ import annotations

import email
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest
import trio

from tinymail.delivery.courier import Outcome, Status
from tinymail.delivery.local import LocalDelivery
from tinymail.proto.control import QueueAction
from tinymail.queue.groupsync import GroupSync
from tinymail.queue.model import QueueItem, RcptStatus
from tinymail.queue.runner import QueueRunner, _Batched
from tinymail.queue.schedule import RetryPolicy
from tinymail.queue.spool import Spool, read_content
from tinymail.store.aliases import Aliases
from tinymail.store.users import User, UserDB

DOMAINS = ("example.test",)


def make_runner(tmp_path: Path, **kwargs: object) -> QueueRunner:
    users = UserDB({"alice@example.test": User("alice@example.test", "{PLAIN}x")})

    def local() -> LocalDelivery:
        return LocalDelivery(
            data_dir=tmp_path,
            users=users,
            aliases=Aliases({}, frozenset(DOMAINS)),
            local_domains=DOMAINS,
            system_account=lambda name: False,
        )

    return QueueRunner(
        Spool(tmp_path / "queue").create(),
        local,
        hostname="mx.example.test",
        is_local=lambda a: "@" not in a or a.rpartition("@")[2] in DOMAINS,
        retry=RetryPolicy(retry_min=60, retry_max=120, lifetime=3600, warn_after=1800),
        **kwargs,  # type: ignore[arg-type]
    )


async def settle(runner: QueueRunner) -> None:
    await trio.testing.wait_all_tasks_blocked()
    with trio.fail_after(10):
        await runner.idle.wait()


async def test_delivers_and_removes(tmp_path: Path, nursery: trio.Nursery) -> None:
    runner = make_runner(tmp_path)
    await nursery.start(runner.run)
    env = runner.spool.enqueue("bob@example.net", ("alice@example.test",), b"Subject: x\n\nhi\n")
    runner.notify(env.qid)
    await settle(runner)
    [delivered] = (tmp_path / "mail" / "alice@example.test" / "new").iterdir()
    assert delivered.read_bytes() == b"Return-Path: <bob@example.net>\nSubject: x\n\nhi\n"
    assert runner.spool.scan() == []


async def test_unknown_recipient_fails_and_the_sender_gets_a_dsn(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    runner = make_runner(tmp_path)
    await nursery.start(runner.run)
    rcpts = ("alice@example.test", "ghost@example.test")
    env = runner.spool.enqueue("bob@example.net", rcpts, b"Subject: x\n\nhi\n")
    runner.notify(env.qid)
    await settle(runner)
    # alice got it; the DSN to the remote sender waits in the queue (no outbound courier here).
    [qid] = runner.spool.scan()
    dsn = runner.spool.load(qid)
    assert dsn.envelope.sender == "" and dsn.envelope.recipients == ("bob@example.net",)
    assert dsn.envelope.dsn_kind == "failed"
    message = email.message_from_bytes(read_content(dsn))
    assert message.get_content_type() == "multipart/report"
    status = message.get_payload()[1].as_string()
    assert "Final-Recipient: rfc822; ghost@example.test" in status
    assert "Action: failed" in status and "Status: 5.1.1" in status
    assert len(list((tmp_path / "mail" / "alice@example.test" / "new").iterdir())) == 1


async def test_null_sender_is_never_bounced(tmp_path: Path, nursery: trio.Nursery) -> None:
    runner = make_runner(tmp_path)
    await nursery.start(runner.run)
    env = runner.spool.enqueue("", ("ghost@example.test",), b"Subject: dsn\n\nx\n")
    runner.notify(env.qid)
    await settle(runner)
    assert runner.spool.scan() == []


async def test_failed_dsn_goes_to_postmaster_once(tmp_path: Path, nursery: trio.Nursery) -> None:
    runner = make_runner(tmp_path)
    await nursery.start(runner.run)
    content = b"Subject: Undelivered Mail\n\nx\n"
    env = runner.spool.enqueue("", ("ghost@example.test",), content, dsn_kind="failed")
    runner.notify(env.qid)
    await settle(runner)
    # postmaster resolves to root, for which this test has no system account: the double
    # bounce fails too and is then only logged, so the queue ends empty (no loop).
    assert runner.spool.scan() == []
    assert not (tmp_path / "mail").exists()


async def test_remote_without_courier_stays_queued_with_state(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    runner = make_runner(tmp_path)
    await nursery.start(runner.run)
    env = runner.spool.enqueue("bob@example.test", ("carol@example.net",), b"Subject: x\n\nhi\n")
    runner.notify(env.qid)
    await settle(runner)
    assert runner.spool.scan() == [env.qid]
    state = runner.spool.load_state(env.qid)
    assert state is not None
    assert state.attempts == 1 and state.next_attempt > env.arrival
    [rcpt] = state.recipients
    assert rcpt.status is RcptStatus.PENDING and rcpt.dsn == "4.4.0"


async def test_held_message_is_not_delivered(tmp_path: Path, nursery: trio.Nursery) -> None:
    runner = make_runner(tmp_path)
    await nursery.start(runner.run)
    env = runner.spool.enqueue("bob@example.net", ("alice@example.test",), b"Subject: x\n\nhi\n")
    item = runner.spool.load(env.qid)
    runner.spool.save_state(env.qid, replace(item.state, hold=True))
    runner.notify(env.qid, force=True)
    await settle(runner)
    assert not (tmp_path / "mail" / "alice@example.test").exists()
    assert runner.spool.scan() == [env.qid]


async def test_failed_mailbox_fsync_keeps_the_message_queued(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    def broken_fsync(path: Path) -> None:
        raise OSError(5, "Input/output error")

    runner = make_runner(tmp_path, group_sync=GroupSync(broken_fsync))
    await nursery.start(runner.run)
    env = runner.spool.enqueue("bob@example.net", ("alice@example.test",), b"Subject: x\n\nhi\n")
    runner.notify(env.qid)
    await settle(runner)
    state = runner.spool.load_state(env.qid)
    assert state is not None and state.recipients[0].status is RcptStatus.PENDING
    assert state.recipients[0].dsn == "4.3.0"


@pytest.mark.parametrize("count", [1, 20])
async def test_messages_queued_before_start_are_delivered(
    tmp_path: Path, nursery: trio.Nursery, count: int
) -> None:
    runner = make_runner(tmp_path)
    for i in range(count):
        runner.spool.enqueue("bob@example.net", ("alice@example.test",), b"Subject: %d\n\n" % i)
    await nursery.start(runner.run)
    await settle(runner)
    assert len(list((tmp_path / "mail" / "alice@example.test" / "new").iterdir())) == count
    assert runner.spool.scan() == []


class RecordingRemote:
    """A remote courier that accepts everything and remembers what it was handed."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[str, ...], bytes | None]] = []

    async def deliver(
        self, item: QueueItem, recipients: Sequence[str], content: bytes | None = None
    ) -> dict[str, Outcome]:
        self.calls.append((item.qid, tuple(recipients), content))
        return dict.fromkeys(recipients, Outcome(Status.OK, "2.0.0", "250 ok", "mx[127.0.0.2]:25"))


async def test_small_remote_messages_are_handed_over_in_memory(
    tmp_path: Path, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tinymail.queue.runner.INLINE_CONTENT", 100)
    remote = RecordingRemote()
    runner = make_runner(tmp_path, remote=remote)
    await nursery.start(runner.run)
    small, large = b"Subject: small\n\nhi\n", b"Subject: large\n\n" + b"x" * 200 + b"\n"
    rcpts = ("alice@example.test", "carol@example.net")
    first = runner.spool.enqueue("bob@example.test", rcpts, small)
    second = runner.spool.enqueue("bob@example.test", ("carol@example.net",), large)
    runner.notify(first.qid)
    runner.notify(second.qid)
    await settle(runner)
    assert sorted(remote.calls) == sorted(
        [(first.qid, ("carol@example.net",), small), (second.qid, ("carol@example.net",), None)]
    )
    assert runner.spool.scan() == []
    assert len(list((tmp_path / "mail" / "alice@example.test" / "new").iterdir())) == 1


async def test_a_sessions_preload_is_the_first_attempt_of_a_remote_only_message(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    remote = RecordingRemote()
    runner = make_runner(tmp_path, remote=remote)
    await nursery.start(runner.run)
    body = b"Subject: x\n\nhi\n"
    only_remote = runner.spool.enqueue("bob@example.test", ("carol@example.net",), body)
    both = ("alice@example.test", "dan@example.net")
    mixed = runner.spool.enqueue("bob@example.test", both, body)
    # Copies, so `is` tells the preloaded object from a read of the spool.
    preloads = {env.qid: bytes(bytearray(body)) for env in (only_remote, mixed)}
    runner.notify(only_remote.qid, preload=(only_remote, preloads[only_remote.qid]))
    runner.notify(mixed.qid, preload=(mixed, preloads[mixed.qid]))
    await settle(runner)
    handed = {qid: content for qid, _, content in remote.calls}
    assert handed[only_remote.qid] is preloads[only_remote.qid]
    # A local recipient needs the loading hop: the preload is dropped, the spool read.
    assert handed[mixed.qid] == body and handed[mixed.qid] is not preloads[mixed.qid]
    assert len(list((tmp_path / "mail" / "alice@example.test" / "new").iterdir())) == 1
    assert runner.spool.scan() == []


async def test_preloaded_contents_stay_within_their_byte_budget(
    tmp_path: Path, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backlog does not pin contents: past PRELOAD_BYTES the courier reads the spool file."""
    monkeypatch.setattr("tinymail.queue.runner.PRELOAD_BYTES", 30)
    remote = RecordingRemote()
    runner = make_runner(tmp_path, remote=remote)
    body = b"Subject: x\n\n" + b"y" * 10 + b"\n"  # 24 bytes: one fits, the second does not
    envs = [runner.spool.enqueue("bob@example.test", ("carol@example.net",), body) for _ in "ab"]
    held = [bytes(bytearray(body)) for _ in envs]
    for env, content in zip(envs, held, strict=True):
        runner.notify(env.qid, preload=(env, content))
    assert runner._preload_bytes == len(body)
    await nursery.start(runner.run)
    await settle(runner)
    handed = {qid: content for qid, _, content in remote.calls}
    assert handed[envs[0].qid] is held[0]
    assert handed[envs[1].qid] is None  # over the budget: the courier reads the spool file
    assert runner._preload_bytes == 0


async def test_an_admin_change_drops_the_preload(tmp_path: Path, nursery: trio.Nursery) -> None:
    remote = RecordingRemote()
    runner = make_runner(tmp_path, remote=remote)
    env = runner.spool.enqueue("bob@example.test", ("carol@example.net",), b"Subject: x\n\nhi\n")
    runner.notify(env.qid, preload=(env, b"Subject: x\n\nhi\n"))
    await runner.change(env.qid, QueueAction.HOLD)
    await nursery.start(runner.run)
    await settle(runner)
    assert remote.calls == []
    assert runner.spool.scan() == [env.qid]


async def test_batched_work_shares_thread_hops_and_returns_after_each_item() -> None:
    batches: list[list[str]] = []
    returned: list[tuple[str, bool]] = []
    batched = _Batched(lambda items: batches.append(list(items)))

    async def one(item: str) -> None:
        await batched.run(item)
        returned.append((item, any(item in b for b in batches)))

    async with trio.open_nursery() as nursery:
        for i in range(10):
            nursery.start_soon(one, str(i))
    assert sorted(i for b in batches for i in b) == sorted(str(i) for i in range(10))
    assert len(batches) < 10
    assert sorted(returned) == [(str(i), True) for i in range(10)]
