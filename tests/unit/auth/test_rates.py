from __future__ import annotations

from outrider.auth.rates import UserRateLimiter


def test_burst_then_paced() -> None:
    limiter = UserRateLimiter()
    assert [limiter.allow("u", "3/m", 0.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("u", "3/m", 20.0)  # one every 20 s after the burst
    assert not limiter.allow("u", "3/m", 21.0)


def test_unlimited_and_changed_rates() -> None:
    limiter = UserRateLimiter()
    assert all(limiter.allow("u", None, 0.0) for _ in range(100))
    assert all(limiter.allow("u", "unlimited", 0.0) for _ in range(100))
    assert limiter.allow("v", "1/h", 0.0) and not limiter.allow("v", "1/h", 1.0)
    assert limiter.allow("v", "10/h", 1.0)  # a new limit starts afresh
    assert limiter.allow("w", "not a rate", 0.0)  # a bad record never blocks mail
