"""Blocks, for every Throttle implementation."""

from __future__ import annotations

from outrider.throttle import Throttle
from tests.unit.throttle.conftest import FakeClock


async def test_block_until_a_time(throttle: Throttle, clock: FakeClock) -> None:
    t = clock.now
    assert await throttle.blocked_until("k", t) is None
    await throttle.block("k", t + 300.0, t)
    assert await throttle.blocked_until("k", t) == t + 300.0
    assert await throttle.blocked_until("k", t + 299.9) == t + 300.0
    assert await throttle.blocked_until("k", t + 300.0) is None  # ends at exactly until
    assert await throttle.blocked_until("other", t) is None


async def test_a_new_block_replaces_the_old(throttle: Throttle, clock: FakeClock) -> None:
    t = clock.now
    await throttle.block("k", t + 300.0, t)
    await throttle.block("k", t + 100.0, t + 1.0)  # shortened, not max()
    assert await throttle.blocked_until("k", t + 150.0) is None
    await throttle.block("k", t + 500.0, t + 150.0)
    assert await throttle.blocked_until("k", t + 499.0) == t + 500.0


async def test_a_block_in_the_past_lifts_it(throttle: Throttle, clock: FakeClock) -> None:
    t = clock.now
    await throttle.block("k", t + 300.0, t)
    await throttle.block("k", t, t + 1.0)
    assert await throttle.blocked_until("k", t + 1.0) is None
