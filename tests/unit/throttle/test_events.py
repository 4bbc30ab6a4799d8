"""Windowed event counts, for every Throttle implementation."""

from __future__ import annotations

from outrider.throttle import Throttle
from tests.unit.throttle.conftest import FakeClock


async def test_events_count_within_the_window(throttle: Throttle, clock: FakeClock) -> None:
    t = clock.now
    assert await throttle.add_event("k", 60.0, t) == 1
    assert await throttle.add_event("k", 60.0, t + 10.0) == 2
    assert await throttle.add_event("k", 60.0, t + 20.0) == 3
    assert await throttle.count("k", 60.0, t + 59.0) == 3
    # An event is gone at exactly window old.
    assert await throttle.count("k", 60.0, t + 60.0) == 2
    assert await throttle.count("k", 60.0, t + 79.9) == 1
    assert await throttle.count("k", 60.0, t + 80.0) == 0
    assert await throttle.add_event("k", 60.0, t + 80.0) == 1


async def test_count_records_nothing(throttle: Throttle, clock: FakeClock) -> None:
    for _ in range(3):
        assert await throttle.count("k", 60.0, clock.now) == 0
    await throttle.add_event("k", 60.0, clock.now)
    assert await throttle.count("k", 60.0, clock.now) == 1
    assert await throttle.count("k", 60.0, clock.now) == 1


async def test_clear_events(throttle: Throttle, clock: FakeClock) -> None:
    for _ in range(4):
        await throttle.add_event("k", 60.0, clock.advance(1.0))
    await throttle.add_event("other", 60.0, clock.now)
    await throttle.clear_events("k")
    assert await throttle.count("k", 60.0, clock.now) == 0
    assert await throttle.count("other", 60.0, clock.now) == 1
    assert await throttle.add_event("k", 60.0, clock.now) == 1
    await throttle.clear_events("never-seen")


async def test_events_at_the_same_instant_all_count(throttle: Throttle, clock: FakeClock) -> None:
    for i in range(1, 6):
        assert await throttle.add_event("k", 1.0, clock.now) == i
    assert await throttle.count("k", 1.0, clock.now + 1.0) == 0
