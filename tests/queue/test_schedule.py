"""The pure retry schedule."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tinymail.queue.schedule import Action, RetryPolicy, backoff, plan_retry

POLICY = RetryPolicy(retry_min=300, retry_max=3600, lifetime=5 * 86400, warn_after=4 * 3600)


def no_jitter() -> float:
    return 0.0


def test_exponential_backoff_capped() -> None:
    delays = [backoff(POLICY, n, no_jitter) for n in range(1, 8)]
    assert delays == [300, 600, 1200, 2400, 3600, 3600, 3600]


def test_jitter_lengthens_below_cap_and_shortens_at_cap() -> None:
    assert backoff(POLICY, 1, lambda: 1.0) == 330
    assert backoff(POLICY, 7, lambda: 1.0) == 3240


@settings(max_examples=200, deadline=None)
@given(
    retry_min=st.floats(min_value=0.01, max_value=1e5),
    factor=st.floats(min_value=1.0, max_value=100.0),
    attempts=st.integers(min_value=0, max_value=10_000),
    r=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_backoff_stays_in_bounds(retry_min: float, factor: float, attempts: int, r: float) -> None:
    policy = RetryPolicy(retry_min, retry_min * factor, lifetime=1e9, warn_after=0)
    delay = backoff(policy, attempts, lambda: r)
    assert policy.retry_min <= delay <= policy.retry_max


def test_retry_then_give_up_at_lifetime() -> None:
    queued = 1000.0
    plan = plan_retry(POLICY, queued_at=queued, now=queued + 10, attempts=1, warned=False)
    assert plan.action is Action.RETRY
    assert queued + 10 + 300 <= plan.next_at <= queued + 10 + 330
    assert not plan.warn
    # The last attempt is scheduled at expiry, never past it.
    late = queued + POLICY.lifetime - 60
    plan = plan_retry(POLICY, queued_at=queued, now=late, attempts=40, warned=True)
    assert plan.action is Action.RETRY
    assert plan.next_at == queued + POLICY.lifetime
    plan = plan_retry(
        POLICY, queued_at=queued, now=queued + POLICY.lifetime, attempts=41, warned=True
    )
    assert plan.action is Action.GIVE_UP
    assert not plan.warn


def test_warn_once_after_warn_after() -> None:
    queued = 0.0
    early = plan_retry(POLICY, queued_at=queued, now=3 * 3600, attempts=5, warned=False)
    assert not early.warn
    due = plan_retry(POLICY, queued_at=queued, now=4 * 3600, attempts=6, warned=False)
    assert due.warn and due.action is Action.RETRY
    again = plan_retry(POLICY, queued_at=queued, now=5 * 3600, attempts=7, warned=True)
    assert not again.warn


def test_warn_disabled_with_zero() -> None:
    policy = RetryPolicy(retry_min=1, retry_max=2, lifetime=100, warn_after=0)
    assert not plan_retry(policy, queued_at=0, now=50, attempts=3, warned=False).warn


def test_whole_schedule_is_bounded_and_monotonic() -> None:
    """Simulate a message that never gets through: few attempts, one warning, then give up."""
    policy = RetryPolicy(retry_min=1, retry_max=8, lifetime=60, warn_after=10)
    now, attempts, warned, warnings = 0.0, 0, False, 0
    for _ in range(1000):
        attempts += 1
        plan = plan_retry(policy, queued_at=0, now=now, attempts=attempts, warned=warned)
        if plan.action is Action.GIVE_UP:
            break
        if plan.warn:
            warned, warnings = True, warnings + 1
        assert now < plan.next_at <= 60
        now = plan.next_at
    else:
        raise AssertionError("never gave up")
    assert warnings == 1
    assert now == 60
    assert attempts < 20
