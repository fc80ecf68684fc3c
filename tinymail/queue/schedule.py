"""Pure retry schedule: when to try again, when to warn the sender, when to give up.

Rules
- After the n-th failed attempt the next one waits retry_min * 2**(n-1), capped at retry_max
  (exponential backoff, as Postfix's minimal/maximal_backoff_time and chasquid's queue).
- Jitter spreads retries so a queue full of messages to one dead host does not wake at once.
  It lengthens the interval by up to 10% below the cap and shortens it by up to 10% at the cap,
  so every interval stays within [retry_min, retry_max]. The random source is injected.
- No attempt is scheduled past the message's lifetime: the last one happens at expiry, and once
  `now >= queued_at + lifetime` the answer is GIVE_UP (the caller sends the failure DSN).
- One "delayed" DSN per message: `warn` is True on the first plan made at or after warn_after,
  and never again once the caller has recorded it. warn_after <= 0 disables warnings (Postfix
  delay_warning_time = 0). A message that is given up gets a failure DSN, not a warning.
- Times are plain float seconds (wall clock of the caller's choosing), so the schedule survives
  restarts as long as queued_at, attempts and warned are kept in the spool.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from dataclasses import dataclass

JITTER = 0.1


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """The [queue] settings, in seconds."""

    retry_min: float
    retry_max: float
    lifetime: float
    warn_after: float


class Action(enum.Enum):
    """What to do with a message whose attempt left recipients deferred."""

    RETRY = "retry"
    GIVE_UP = "give up"


@dataclass(frozen=True, slots=True)
class RetryPlan:
    """The decision after a deferred attempt; `next_at` is meaningful only for RETRY."""

    action: Action
    next_at: float
    warn: bool


def backoff(policy: RetryPolicy, attempts: int, rand: Callable[[], float]) -> float:
    """Seconds to wait after `attempts` failed attempts (attempts >= 1)."""
    exponent = min(max(attempts, 1) - 1, 64)  # cap the exponent: 2**64 already exceeds any max
    base = min(policy.retry_max, policy.retry_min * 2.0**exponent)
    lengthened = base * (1.0 + JITTER * rand())
    if lengthened <= policy.retry_max:
        return lengthened
    return max(policy.retry_min, policy.retry_max * (1.0 - JITTER * rand()))


def plan_retry(
    policy: RetryPolicy,
    *,
    queued_at: float,
    now: float,
    attempts: int,
    warned: bool,
    rand: Callable[[], float] = random.random,
) -> RetryPlan:
    """Decide after a deferred attempt: retry at `next_at` (maybe warn first) or give up."""
    expires_at = queued_at + policy.lifetime
    if now >= expires_at:
        return RetryPlan(Action.GIVE_UP, now, warn=False)
    next_at = min(now + backoff(policy, attempts, rand), expires_at)
    warn = not warned and policy.warn_after > 0 and now - queued_at >= policy.warn_after
    return RetryPlan(Action.RETRY, next_at, warn)
