"""A restart (kill -9) in the middle of a retry schedule: the attempt count and the next attempt
time come back from the state file, nothing is retried early, and the message is delivered once
the peer accepts. The server is a real `tinymail serve` subprocess; the peer an aiosmtpd sink on
127.0.0.27:25 reached through a [transport] route.
"""

from __future__ import annotations

import json
import re
import smtplib
import time
from pathlib import Path
from typing import Any

from tests.e2e.helpers import ServerProcess, queue_empty, wait_until
from tests.helpers.sink import Sink

CONFIG = """\
hostname = "mx.example.test"
domains = ["example.test"]
data_dir = "{data_dir}"

[listen]
smtp = ["127.0.0.1:0"]
submission = []
imap = []
pop3 = []

[queue]
retry_min = "3s"
retry_max = "3s"

[transport]
"restart.test" = "smtp:[127.0.0.27]:25"

[server]
allow_root = true
"""
RCPT = "ruth@restart.test"


def saved_state(data_dir: Path) -> tuple[str, dict[str, Any]] | None:
    """(qid, parsed state file) of the one queued message once it has a state file."""
    files = list((data_dir / "queue" / "state").glob("*"))
    if not files:
        return None
    return files[0].name, json.loads(files[0].read_bytes())


def attempts_logged(server: ServerProcess, qid: str, status: str) -> int:
    return len(re.findall(rf"qid={qid} to=<{RCPT}> .* status={status} ", server.log_text()))


def test_kill_9_while_deferred_keeps_the_retry_schedule(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    config = tmp_path / "tinymail.toml"
    config.write_text(CONFIG.format(data_dir=data_dir))
    replies = {RCPT: "451 4.3.0 not yet"}
    with Sink("127.0.0.27", 25, rcpt_replies=replies) as sink:
        first = ServerProcess(config, tmp_path / "first.log").wait_ready()
        try:
            with smtplib.SMTP("127.0.0.1", first.ports["smtp"], timeout=10) as client:
                client.sendmail("alice@example.test", [RCPT], b"Subject: retry\r\n\r\nbody\r\n")
            # The state file is written before the attempt's log line: wait for both, or
            # the kill below can come between them.
            wait_until(
                lambda: (
                    (state := saved_state(data_dir)) is not None
                    and attempts_logged(first, state[0], "deferred") >= 1
                )
            )
            found = saved_state(data_dir)
            assert found is not None
            qid, before = found
        finally:
            first.kill()  # SIGKILL: no chance to write anything more
        assert before["attempts"] == 1 and before["recipients"][0]["status"] == "pending"
        assert attempts_logged(first, qid, "deferred") == 1
        next_attempt = before["next_attempt"]

        second = ServerProcess(config, tmp_path / "second.log").wait_ready()
        try:
            # Back from the state file: the same count and due time, and no early attempt.
            assert time.time() < next_attempt, "restart took too long for this test"
            assert saved_state(data_dir) == (qid, before)
            assert attempts_logged(second, qid, "deferred") == 0

            wait_until(lambda: attempts_logged(second, qid, "deferred") == 1, timeout=15)
            assert time.time() >= next_attempt
            wait_until(lambda: (s := saved_state(data_dir)) is not None and s[1]["attempts"] == 2)
            after = saved_state(data_dir)
            assert after is not None and after[1]["recipients"][0]["attempts"] == 2
            assert after[1]["next_attempt"] > next_attempt

            del replies[RCPT]  # the peer accepts from now on
            wait_until(lambda: queue_empty(data_dir), timeout=15)
            assert time.time() >= after[1]["next_attempt"]
            assert [m.rcpt_tos for m in sink.messages] == [(RCPT,)]
            assert attempts_logged(second, qid, "sent") == 1
        finally:
            assert second.terminate() == 0
