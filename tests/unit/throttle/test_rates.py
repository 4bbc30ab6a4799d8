"""Rate semantics (GCRA), for every Throttle implementation."""

from __future__ import annotations

import math

import pytest

from outrider.policy.rate import Rate
from outrider.throttle import RateLimit, Throttle
from tests.unit.throttle.conftest import FakeClock

THREE_PER_3S = RateLimit.of(Rate(3, 3.0), burst=3)  # burst of 3, then one per second


async def test_burst_then_spacing(throttle: Throttle, clock: FakeClock) -> None:
    t = clock.now
    assert [await throttle.rate("k", THREE_PER_3S, t) for _ in range(3)] == [0.0] * 3
    assert await throttle.rate("k", THREE_PER_3S, t) == pytest.approx(1.0)
    assert await throttle.rate("k", THREE_PER_3S, t + 0.25) == pytest.approx(0.75)
    assert await throttle.rate("k", THREE_PER_3S, t + 1.0) == 0.0
    assert await throttle.rate("k", THREE_PER_3S, t + 1.0) == pytest.approx(1.0)
    assert await throttle.rate("k", THREE_PER_3S, t + 2.0) == 0.0


async def test_a_refusal_takes_nothing(throttle: Throttle, clock: FakeClock) -> None:
    limit = RateLimit.of(Rate(1, 10.0))
    t = clock.now
    assert await throttle.rate("k", limit, t) == 0.0
    for dt in (0.0, 1.0, 5.0, 9.0):  # refused calls do not push the next admission back
        assert await throttle.rate("k", limit, t + dt) == pytest.approx(10.0 - dt)
    assert await throttle.rate("k", limit, t + 10.0) == 0.0


async def test_sleeping_the_returned_wait_is_enough(throttle: Throttle, clock: FakeClock) -> None:
    limit = RateLimit.of(Rate(3, 1.0))  # interval 1/3 s: float rounding must not refuse
    now = clock.now
    admitted = 0
    for _ in range(30):
        wait = await throttle.rate("k", limit, now)
        if wait == 0.0:
            admitted += 1
        else:
            now += wait
    assert admitted == 15  # at 0, 1/3, ... 14/3, each after waiting what it was told
    assert now - clock.now == pytest.approx(15 / 3)


async def test_peek_takes_nothing(throttle: Throttle, clock: FakeClock) -> None:
    limit = RateLimit.of(Rate(2, 2.0), burst=2)
    t = clock.now
    assert await throttle.peek_rate("k", limit, t) == 0.0
    assert await throttle.peek_rate("k", limit, t) == 0.0
    await throttle.rate("k", limit, t)
    await throttle.rate("k", limit, t)
    assert await throttle.peek_rate("k", limit, t) == pytest.approx(1.0)
    assert await throttle.rate("k", limit, t) == pytest.approx(1.0)
    assert await throttle.peek_rate("k", limit, t + 1.0) == 0.0


async def test_unlimited_and_nothing(throttle: Throttle, clock: FakeClock) -> None:
    unlimited = RateLimit.of(None)
    assert unlimited.unlimited
    assert all([await throttle.rate("k", unlimited, clock.now) == 0.0 for _ in range(100)])
    nothing = RateLimit.of(Rate(0, 60.0))
    assert await throttle.rate("z", nothing, clock.now) == math.inf
    assert await throttle.peek_rate("z", nothing, clock.now) == math.inf


async def test_keys_are_independent(throttle: Throttle, clock: FakeClock) -> None:
    limit = RateLimit.of(Rate(1, 60.0))
    assert await throttle.rate("a", limit, clock.now) == 0.0
    assert await throttle.rate("a", limit, clock.now) > 0.0
    assert await throttle.rate("b", limit, clock.now) == 0.0


async def test_a_drained_key_is_fresh(throttle: Throttle, clock: FakeClock) -> None:
    limit = RateLimit.of(Rate(5, 5.0), burst=5)
    for _ in range(5):
        assert await throttle.rate("k", limit, clock.now) == 0.0
    clock.advance(5.0)
    assert [await throttle.rate("k", limit, clock.now) for _ in range(6)][-2:] == [0.0, 1.0]


async def test_a_changed_interval_rescales_the_debt(throttle: Throttle, clock: FakeClock) -> None:
    """Entering backoff slows down at once; leaving it does not keep the long wait."""
    normal, slow = RateLimit(1.0), RateLimit(10.0)
    t = clock.now
    assert await throttle.rate("q", normal, t) == 0.0  # one interval owed
    assert await throttle.peek_rate("q", normal, t) == pytest.approx(1.0)
    assert await throttle.peek_rate("q", slow, t) == pytest.approx(10.0)  # 1 owed x 10 s
    assert await throttle.rate("q", slow, t + 9.0) == pytest.approx(1.0)
    assert await throttle.rate("q", slow, t + 10.0) == 0.0
    # Back to normal 5 s later: 5 s of slow debt left = half an interval of 1 s.
    assert await throttle.peek_rate("q", normal, t + 15.0) == pytest.approx(0.5)
    assert await throttle.rate("q", normal, t + 15.5) == 0.0


def test_rate_limit_validation() -> None:
    with pytest.raises(ValueError):
        RateLimit(-1.0)
    with pytest.raises(ValueError):
        RateLimit(math.nan)
    with pytest.raises(ValueError):
        RateLimit(1.0, burst=0)
    assert RateLimit.of(Rate(6, 60.0), burst=6) == RateLimit(10.0, 6)
    assert RateLimit(10.0, 6).span == 60.0
