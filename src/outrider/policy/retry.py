"""Retry and expiry decisions for a recipient after a transient failure.

Pure functions of the policy and ``now`` so the schedule is testable without a clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryDecision:
    expired: bool  # past bounce-after: the recipient bounces now
    next_attempt: float  # epoch seconds of the next attempt (meaningless when expired)


def retry_delay(retry_after: Sequence[float], attempts: int) -> float:
    """Delay before attempt ``attempts + 1``: the n-th value of the schedule, the last repeating.

    ``attempts`` counts attempts already made (>= 1 after a failure).
    """
    if not retry_after:
        raise ValueError("retry-after schedule is empty")
    index = min(max(attempts, 1), len(retry_after)) - 1
    return retry_after[index]


def decide_retry(
    *,
    retry_after: Sequence[float],
    bounce_after: float,
    attempts: int,
    received_at: float,
    now: float,
) -> RetryDecision:
    """After a transient failure: schedule the next attempt, or expire.

    The last attempt is pulled in to the expiry time so a message is tried once more
    right at ``bounce-after`` rather than bouncing with a stale reason.
    """
    expires_at = received_at + bounce_after
    if now >= expires_at:
        return RetryDecision(expired=True, next_attempt=now)
    nxt = now + retry_delay(retry_after, attempts)
    return RetryDecision(expired=False, next_attempt=min(nxt, expires_at))
