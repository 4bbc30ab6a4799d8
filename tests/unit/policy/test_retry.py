from __future__ import annotations

import pytest

from outrider.policy.retry import decide_retry, retry_delay

SCHEDULE = (60.0, 120.0, 300.0)


@pytest.mark.parametrize(
    ("attempts", "delay"), [(0, 60.0), (1, 60.0), (2, 120.0), (3, 300.0), (4, 300.0), (99, 300.0)]
)
def test_retry_delay_repeats_the_last_value(attempts: int, delay: float) -> None:
    assert retry_delay(SCHEDULE, attempts) == delay


def test_empty_schedule_is_an_error() -> None:
    with pytest.raises(ValueError):
        retry_delay((), 1)


def test_next_attempt_follows_the_schedule() -> None:
    d = decide_retry(
        retry_after=SCHEDULE, bounce_after=86400, attempts=2, received_at=1000, now=2000
    )
    assert d.expired is False
    assert d.next_attempt == 2120


def test_last_attempt_is_pulled_in_to_expiry() -> None:
    d = decide_retry(retry_after=SCHEDULE, bounce_after=100, attempts=3, received_at=0, now=50)
    assert not d.expired
    assert d.next_attempt == 100


@pytest.mark.parametrize("now", [100.0, 100.5, 5000.0])
def test_expired_at_or_after_bounce_after(now: float) -> None:
    d = decide_retry(retry_after=SCHEDULE, bounce_after=100, attempts=1, received_at=0, now=now)
    assert d.expired is True
    assert d.next_attempt == now  # the bounce happens now, not at some stale time


def test_zero_bounce_after_expires_on_first_failure() -> None:
    d = decide_retry(retry_after=SCHEDULE, bounce_after=0, attempts=1, received_at=10, now=10)
    assert d.expired
