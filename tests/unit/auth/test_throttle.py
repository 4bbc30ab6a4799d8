from __future__ import annotations

import pytest

from outrider.auth.throttle import AuthThrottle, client_key

IP = "192.0.2.1"


def test_no_failures_no_delay() -> None:
    throttle = AuthThrottle()
    assert throttle.delay_for(IP, 0.0) == 0.0
    assert not throttle.is_blocked(IP, 0.0)
    assert throttle.blocked_until(IP) is None


def test_delay_table() -> None:
    """Failure n (within the window) is answered after first_delay * 2**(n-1), capped."""
    throttle = AuthThrottle(max_failures=10, first_delay=1.0, max_delay=10.0)
    delays = []
    for i in range(9):
        assert not throttle.record_failure(IP, float(i))
        delays.append(throttle.delay_for(IP, float(i)))
    assert delays == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0, 10.0, 10.0]


def test_failures_expire_after_the_window() -> None:
    throttle = AuthThrottle(window=600.0)
    throttle.record_failure(IP, 0.0)
    throttle.record_failure(IP, 100.0)
    assert throttle.delay_for(IP, 599.0) == 2.0
    assert throttle.delay_for(IP, 600.0) == 1.0  # the first one is exactly window old
    assert throttle.delay_for(IP, 700.0) == 0.0


def test_block_after_max_failures_within_window() -> None:
    throttle = AuthThrottle(max_failures=3, window=60.0, block_time=300.0)
    assert not throttle.record_failure(IP, 0.0)
    assert not throttle.record_failure(IP, 10.0)
    assert throttle.record_failure(IP, 20.0)
    assert throttle.is_blocked(IP, 20.0)
    assert throttle.blocked_until(IP) == 320.0
    assert throttle.is_blocked(IP, 319.9)
    assert throttle.delay_for(IP, 100.0) == 10.0  # blocked clients get the slowest answer
    assert not throttle.record_failure(IP, 100.0)  # retries during a block do not extend it
    assert throttle.blocked_until(IP) == 320.0
    assert not throttle.is_blocked(IP, 320.0)
    # After the block the count starts afresh.
    assert throttle.delay_for(IP, 320.0) == 0.0
    assert not throttle.record_failure(IP, 321.0)
    assert throttle.delay_for(IP, 321.0) == 1.0


def test_spread_out_failures_do_not_block() -> None:
    throttle = AuthThrottle(max_failures=3, window=60.0)
    assert not any(throttle.record_failure(IP, t) for t in (0.0, 40.0, 80.0, 120.0, 160.0))
    assert not throttle.is_blocked(IP, 160.0)


def test_success_forgets_failures() -> None:
    throttle = AuthThrottle(max_failures=3)
    throttle.record_failure(IP, 0.0)
    throttle.record_failure(IP, 1.0)
    throttle.record_success(IP, 2.0)
    assert throttle.delay_for(IP, 2.0) == 0.0
    assert not throttle.record_failure(IP, 3.0)
    assert not throttle.record_failure(IP, 4.0)
    assert len(throttle) == 1


def test_success_does_not_lift_a_block() -> None:
    throttle = AuthThrottle(max_failures=1, block_time=100.0)
    assert throttle.record_failure(IP, 0.0)
    throttle.record_success(IP, 1.0)
    assert throttle.is_blocked(IP, 50.0)


def test_clients_are_independent() -> None:
    throttle = AuthThrottle(max_failures=2)
    throttle.record_failure("192.0.2.1", 0.0)
    assert throttle.record_failure("192.0.2.1", 1.0)
    assert not throttle.is_blocked("192.0.2.2", 1.0)
    assert throttle.delay_for("192.0.2.2", 1.0) == 0.0


def test_ipv6_is_tracked_per_64() -> None:
    throttle = AuthThrottle(max_failures=2)
    throttle.record_failure("2001:db8:1:2::1", 0.0)
    assert throttle.record_failure("2001:db8:1:2:ffff::9", 1.0)
    assert throttle.is_blocked("2001:db8:1:2::abcd", 2.0)
    assert not throttle.is_blocked("2001:db8:1:3::1", 2.0)


@pytest.mark.parametrize(
    ("ip", "key"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("2001:db8::1", "2001:db8::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("not an ip:", "not an ip:"),
    ],
)
def test_client_key(ip: str, key: str) -> None:
    assert client_key(ip) == key


def test_memory_is_capped_oldest_first() -> None:
    throttle = AuthThrottle(max_clients=3, window=1000.0, block_time=1000.0)
    for i in range(5):
        throttle.record_failure(f"10.0.0.{i}", float(i))
    assert len(throttle) == 3
    assert throttle.delay_for("10.0.0.0", 5.0) == 0.0
    assert throttle.delay_for("10.0.0.1", 5.0) == 0.0
    assert throttle.delay_for("10.0.0.4", 5.0) == 1.0
    # Touching an old client moves it to the young end.
    throttle.record_failure("10.0.0.2", 6.0)
    throttle.record_failure("10.0.0.5", 7.0)
    assert throttle.delay_for("10.0.0.2", 7.0) == 2.0
    assert throttle.delay_for("10.0.0.3", 7.0) == 0.0


def test_stale_entries_are_evicted() -> None:
    """Failures are kept while in the window; then each new failure drops a few stale
    clients (amortised), so only recent ones stay."""
    throttle = AuthThrottle(window=60.0, block_time=120.0)
    for i in range(100):
        throttle.record_failure(f"10.0.{i}.1", 0.0)
    assert len(throttle) == 100
    throttle.record_failure("10.1.0.1", 59.0)
    assert len(throttle) == 101
    for i in range(20):
        throttle.record_failure(f"10.2.0.{i}", 60.0 + i)
    assert len(throttle) == 21


def test_huge_failure_counts_do_not_overflow() -> None:
    throttle = AuthThrottle(max_failures=5000, window=1e9, max_delay=10.0)
    for i in range(2000):
        throttle.record_failure(IP, float(i))
    assert throttle.delay_for(IP, 2000.0) == 10.0


def test_invalid_settings() -> None:
    with pytest.raises(ValueError):
        AuthThrottle(max_failures=0)
    with pytest.raises(ValueError):
        AuthThrottle(window=-1.0)


# -- attempts counted before verifying ---------------------------------------------------


async def test_attempts_are_counted_before_they_are_verified() -> None:
    throttle = AuthThrottle(max_failures=5, max_concurrent=0, window=600.0, block_time=900.0)
    begun = [await throttle.begin_attempt_async(IP, 0.0) for _ in range(7)]
    assert begun == [None] * 5 + ["blocked", "blocked"]  # the 6th starts the block
    assert throttle.is_blocked(IP, 1.0)


async def test_a_success_after_four_failures_forgets_them() -> None:
    throttle = AuthThrottle(max_failures=5, max_concurrent=0)
    for t in range(4):
        assert await throttle.begin_attempt_async(IP, float(t)) is None
        assert not await throttle.end_attempt_async(IP, float(t), False)
    assert await throttle.begin_attempt_async(IP, 5.0) is None
    assert not await throttle.end_attempt_async(IP, 5.0, True)
    assert not throttle.is_blocked(IP, 6.0)
    assert throttle.delay_for(IP, 6.0) == 0.0


async def test_the_fifth_failure_blocks_and_an_abandoned_attempt_stays_counted() -> None:
    throttle = AuthThrottle(max_failures=5, max_concurrent=0)
    for t in range(4):
        assert await throttle.begin_attempt_async(IP, float(t)) is None
        assert not await throttle.end_attempt_async(IP, float(t), None if t == 0 else False)
    assert await throttle.begin_attempt_async(IP, 4.0) is None
    assert await throttle.end_attempt_async(IP, 4.0, False)  # five: blocked now
    assert throttle.is_blocked(IP, 5.0)
    assert await throttle.begin_attempt_async(IP, 5.0) == "blocked"


async def test_concurrent_attempts_per_client_are_capped() -> None:
    throttle = AuthThrottle(max_failures=50, max_concurrent=3)
    assert [await throttle.begin_attempt_async(IP, 0.0) for _ in range(4)] == [
        None,
        None,
        None,
        "busy",
    ]
    assert await throttle.begin_attempt_async("192.0.2.99", 0.0) is None  # another client
    await throttle.end_attempt_async(IP, 1.0, False)
    assert await throttle.begin_attempt_async(IP, 1.0) is None  # a slot came free
