"""LocalThrottle only: the synchronous twins, bounded memory, expiry, housekeeping."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outrider.policy.rate import Gcra, Rate
from outrider.throttle import LocalThrottle, RateLimit
from outrider.throttle.local import PURGE_PER_WRITE
from tests.unit.throttle.drive import done

KEYS = ["a", "b", "c"]
LIMITS = [RateLimit(0.5, 2), RateLimit(1.0), RateLimit(0.0), RateLimit(math.inf)]

op = st.one_of(
    st.tuples(st.just("rate"), st.sampled_from(KEYS), st.sampled_from(LIMITS)),
    st.tuples(st.just("peek_rate"), st.sampled_from(KEYS), st.sampled_from(LIMITS)),
    st.tuples(st.just("acquire"), st.sampled_from(KEYS), st.sampled_from([None, 0, 1, 2])),
    st.tuples(st.just("release"), st.sampled_from(KEYS)),
    st.tuples(st.just("held"), st.sampled_from(KEYS)),
    st.tuples(st.just("add_event"), st.sampled_from(KEYS), st.just(2.0)),
    st.tuples(st.just("count"), st.sampled_from(KEYS), st.just(2.0)),
    st.tuples(st.just("clear_events"), st.sampled_from(KEYS)),
    st.tuples(st.just("block"), st.sampled_from(KEYS), st.floats(-1.0, 3.0)),
    st.tuples(st.just("blocked_until"), st.sampled_from(KEYS)),
)
TIMED = {"rate", "peek_rate", "add_event", "count", "blocked_until"}


@settings(max_examples=150, deadline=None)
@given(ops=st.lists(st.tuples(op, st.floats(0.0, 1.0)), max_size=60))
def test_sync_twins_answer_like_the_awaitables(ops: list[tuple[tuple[object, ...], float]]) -> None:
    """Same calls, same answers; and the awaitables never suspend (atomic under asyncio)."""
    sync, awaited = LocalThrottle(max_keys=2), LocalThrottle(max_keys=2)
    now = 0.0
    for (name, *args), dt in ops:
        now += dt
        assert isinstance(name, str)
        if name == "block":
            args = [args[0], now + float(args[1]), now]  # type: ignore[arg-type]
        elif name in TIMED:
            args.append(now)
        expected = getattr(sync, f"{name}_now")(*args)
        assert done(getattr(awaited, name)(*args)) == expected, (name, args)
    assert sync.sizes() == awaited.sizes()


@settings(max_examples=100, deadline=None)
@given(
    burst=st.integers(1, 4),
    rates=st.lists(st.sampled_from([Rate(1, 1.0), Rate(3, 1.0), Rate(2, 7.0)]), min_size=1),
    steps=st.lists(st.tuples(st.floats(0.0, 2.0), st.sampled_from(["take", "peek", "change"]))),
)
def test_rates_match_gcra(burst: int, rates: list[Rate], steps: list[tuple[float, str]]) -> None:
    """The scheduler's Gcra (one limiter per queue) and a LocalThrottle key agree, across
    rate changes too (Gcra.set_rate rescales at once; a throttle at the next call)."""
    gcra = Gcra(rates[0], burst=burst)
    throttle = LocalThrottle()
    limit = RateLimit.of(rates[0], burst=burst)
    now, changes = 0.0, 0
    for dt, step in steps:
        now += dt
        if step == "change":
            changes += 1
            rate = rates[changes % len(rates)]
            gcra.set_rate(rate, now=now)
            limit = RateLimit.of(rate, burst=burst)
            throttle.peek_rate_now("q", limit, now)  # the next call: rescales now
        elif step == "peek":
            assert throttle.peek_rate_now("q", limit, now) == pytest.approx(
                gcra.peek(now), abs=1e-6
            )
        else:
            assert throttle.rate_now("q", limit, now) == pytest.approx(
                gcra.try_acquire(now), abs=1e-6
            )


def test_a_million_clients_stay_within_max_keys() -> None:
    throttle = LocalThrottle(max_keys=1000)
    limit = RateLimit(3600.0)  # states that would live an hour without the bound
    for i in range(200_000):
        ip = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
        throttle.rate_now(ip, limit, 0.0)
        throttle.add_event_now(ip, 3600.0, 0.0)
        throttle.block_now(ip, 3600.0, 0.0)
        assert throttle.acquire_now(ip, None)
        assert throttle.release_now(ip)
    assert throttle.sizes() == {"rates": 1000, "counts": 0, "events": 1000, "blocks": 1000}
    # The least recently used were dropped and answer as fresh keys; recent ones are kept.
    assert throttle.rate_now("10.0.0.0", limit, 1.0) == 0.0
    assert throttle.blocked_until_now("10.0.0.1", 1.0) is None
    last = "10.3.13.63"  # i = 199_999
    assert throttle.rate_now(last, limit, 1.0) > 0.0
    assert throttle.blocked_until_now(last, 1.0) == 3600.0
    assert throttle.count_now(last, 3600.0, 1.0) == 1


def test_idle_keys_expire_without_reaching_the_bound() -> None:
    """A new key every 10 ms, each state living 1 s: only about a second's worth stays."""
    throttle = LocalThrottle()
    peak = 0
    for i in range(10_000):
        now = i * 0.01
        key = f"client-{i}"
        throttle.rate_now(key, RateLimit(1.0), now)
        throttle.add_event_now(key, 1.0, now)
        throttle.block_now(key, now + 1.0, now)
        peak = max(peak, *throttle.sizes().values())
    assert peak <= 102


def test_counts_are_never_dropped_while_held() -> None:
    throttle = LocalThrottle(max_keys=10)
    for i in range(100):
        assert throttle.acquire_now(f"k{i}", 1)
    throttle.purge(1e9)
    assert throttle.sizes()["counts"] == 100
    assert not throttle.acquire_now("k0", 1)


def test_purge_drops_every_expired_state() -> None:
    throttle = LocalThrottle()
    for i in range(50):  # each state lasts until i + 1
        throttle.rate_now(f"r{i}", RateLimit(i + 1.0), 0.0)
        throttle.add_event_now(f"e{i}", i + 1.0, 0.0)
        throttle.block_now(f"b{i}", i + 1.0, 0.0)
    assert throttle.purge(20.0) == 3 * 20
    assert throttle.sizes() == {"rates": 30, "counts": 0, "events": 30, "blocks": 30}
    assert throttle.purge(100.0) == 3 * 30
    assert throttle.purge(100.0) == 0


def test_amortised_purge_is_bounded_per_write() -> None:
    throttle = LocalThrottle()
    for i in range(100):
        throttle.rate_now(f"r{i}", RateLimit(1.0), 0.0)
    throttle.rate_now("late", RateLimit(1.0), 10.0)  # all 100 drained; a few go per write
    assert throttle.sizes()["rates"] == 100 - PURGE_PER_WRITE + 1


def test_forget_a_namespace() -> None:
    throttle = LocalThrottle()
    for ns in ("old ", "new "):
        throttle.rate_now(ns + "x", RateLimit(60.0), 0.0)
        throttle.add_event_now(ns + "x", 60.0, 0.0)
        throttle.block_now(ns + "x", 60.0, 0.0)
        throttle.acquire_now(ns + "x", None)
    assert throttle.forget("old ") == 3
    assert throttle.rate_now("old x", RateLimit(60.0), 1.0) == 0.0
    assert throttle.rate_now("new x", RateLimit(60.0), 1.0) > 0.0
    assert throttle.held_now("old x") == 1  # counts are held by live callers: kept


def test_max_keys_must_be_positive() -> None:
    with pytest.raises(ValueError):
        LocalThrottle(max_keys=0)
