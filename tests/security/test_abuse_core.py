"""tinymail.abuse: penalties, budget, connection counts, request deadlines (clock injected)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinymail import policy
from tinymail.abuse import (
    MAX_IN_FLIGHT,
    Admission,
    AuthPenalties,
    ConnectionCounts,
    PenaltyRules,
    RequestDeadline,
    Verdict,
    client_key,
)
from tinymail.net.abuse import log_safe

RULES = PenaltyRules(failure_delay=2, max_delay=15, max_failures=10, window=600, ban_time=600)


def fail(p: AuthPenalties, key: str, now: float, mark: bytes = b"") -> float:
    verdict, delay = p.begin(key, now)
    assert verdict is Verdict.ALLOWED
    p.failed(key, now, mark or str(now).encode())
    return delay


def test_client_key_groups_ipv6_by_64() -> None:
    assert client_key("192.0.2.7") == "192.0.2.7"
    assert (
        client_key("2001:db8:1:2::7") == client_key("2001:db8:1:2:ffff::1") == "2001:db8:1:2::/64"
    )
    assert client_key("2001:db8:1:3::7") != client_key("2001:db8:1:2::7")
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"


def test_delay_doubles_to_the_cap_and_decays() -> None:
    p = AuthPenalties(RULES)
    delays = [fail(p, "k", t) for t in range(6)]
    assert delays == [0, 2, 4, 8, 15, 15]
    assert p.begin("k", 700)[1] == 0  # all failures are older than the window now


def test_budget_refuses_then_the_ban_expires() -> None:
    p = AuthPenalties(RULES)
    for t in range(10):
        fail(p, "k", t)
    assert p.begin("k", 10) == (Verdict.REFUSED, 0.0)
    assert p.begin("other", 10)[0] is Verdict.ALLOWED  # only that client
    assert p.begin("k", 9 + 599)[0] is Verdict.REFUSED
    assert p.begin("k", 9 + 601)[0] is Verdict.ALLOWED


def test_in_flight_attempts_count_against_the_budget_once_a_client_failed() -> None:
    p = AuthPenalties(PenaltyRules(max_failures=3))
    fail(p, "k", 0)
    assert [p.begin("k", 0)[0] for _ in range(3)] == [Verdict.ALLOWED] * 2 + [Verdict.REFUSED]
    p.abandoned("k", 1)
    assert p.begin("k", 1)[0] is Verdict.ALLOWED


def test_a_clean_client_may_log_in_many_sessions_at_once() -> None:
    # I2-style: 50 sessions of one user from one address, all with the right password.
    p = AuthPenalties(PenaltyRules(max_failures=3))
    assert all(p.begin("k", 0)[0] is Verdict.ALLOWED for _ in range(50))
    assert p.begin("k", 0)[0] is Verdict.ALLOWED


def test_parallel_checks_are_capped_even_for_a_clean_client() -> None:
    p = AuthPenalties(PenaltyRules(max_failures=3))
    verdicts = [p.begin("k", 0)[0] for _ in range(MAX_IN_FLIGHT + 1)]
    assert verdicts[-1] is Verdict.REFUSED and verdicts[-2] is Verdict.ALLOWED


def test_same_wrong_credentials_add_no_penalty() -> None:
    p = AuthPenalties(RULES)
    for t in range(5):
        fail(p, "k", t, b"same")
    assert p.recent_failures("k", 5) == 1


def test_success_does_not_reset_failures() -> None:
    p = AuthPenalties(RULES)
    fail(p, "k", 0)
    assert p.begin("k", 1)[0] is Verdict.ALLOWED
    p.succeeded("k", 1)
    assert p.begin("k", 2)[1] == 2


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.floats(0, 5000), st.booleans()), max_size=80))
def test_penalty_invariants(steps: list[tuple[int, float, bool]]) -> None:
    p = AuthPenalties(PenaltyRules(failure_delay=1, max_delay=8, max_failures=4))
    now = 0.0
    for client, dt, failed in steps:
        now += dt
        key = f"c{client}"
        verdict, delay = p.begin(key, now)
        assert 0 <= delay <= 8
        if verdict is Verdict.ALLOWED:
            assert p.recent_failures(key, now) < 4
            if failed:
                p.failed(key, now, f"{now}".encode())
            else:
                p.succeeded(key, now)


def test_connection_counts() -> None:
    c = ConnectionCounts(per_client=2, total=3)
    assert [c.admit("a") for _ in range(3)] == [Admission.ADMITTED] * 2 + [Admission.CLIENT_LIMIT]
    assert c.admit("a", exempt=True) is Admission.ADMITTED
    assert c.admit("b") is Admission.TOTAL_LIMIT
    c.release("a")
    assert c.open_connections() == 2 and c.open_connections("a") == 2
    assert c.admit("b") is Admission.ADMITTED
    with pytest.raises(ValueError):
        c.release("nobody")


def test_request_deadline_grows_with_data_but_never_past_the_timeout() -> None:
    d = RequestDeadline(timeout=10, min_rate=100, now=0)
    d.received(200, now=5)  # +2 s
    assert d.remaining(5) == 7
    d.received(10_000, now=6)  # +100 s, capped at now + timeout
    assert d.remaining(6) == 10
    d.received(1, now=30)
    assert d.remaining(30) == 0


def test_log_safe_cannot_forge_fields() -> None:
    assert log_safe("bob@example.test") == "bob@example.test"
    forged = log_safe("x client=[203.0.113.9] user=<y>\nauth failed")
    assert " " not in forged and "[" not in forged and "\n" not in forged
    assert len(log_safe("a" * 1000)) == 100


def test_sender_rule() -> None:
    alice = "alice@example.test"
    assert policy.sender_reply("ceo@example.test", login=None, owners=()).is_success
    assert policy.sender_reply("", login=alice, owners=()).is_success
    assert policy.sender_reply("sales@example.test", login=alice, owners=(alice,)).is_success
    refused = policy.sender_reply("ceo@example.test", login=alice, owners=("ceo@example.test",))
    assert (refused.code, refused.enhanced) == (553, "5.7.1")
    owners = {"sales@example.test": (alice,)}
    reply = policy.from_header_reply(
        ["sales@example.test", "x@example.net"], login=alice, owners_of=lambda a: owners.get(a, ())
    )
    assert reply.code == 553 and "x@example.net" in reply.text
