"""The wall-clock adapter: callers keep their own clock, the inner throttle sees one."""

from __future__ import annotations

import asyncio

from outrider.cluster.wall_clock import WallClock
from outrider.throttle import LocalThrottle


def test_events_and_blocks_translate_between_clocks() -> None:
    async def run() -> None:
        wall = [1_000_000.0]
        throttle = WallClock(LocalThrottle(), lambda: wall[0])
        # The caller's clock is a monotonic one near 50.
        assert await throttle.add_event("k", 60.0, 50.0) == 1
        assert await throttle.count("k", 60.0, 51.0) == 1
        await throttle.block("b", 50.0 + 900.0, 50.0)
        until = await throttle.blocked_until("b", 50.0)
        assert until is not None and abs(until - 950.0) < 1e-6
        wall[0] += 901.0
        assert await throttle.blocked_until("b", 951.0) is None
        assert await throttle.count("k", 60.0, 951.0) == 0  # the window is in wall time
        assert await throttle.acquire("c", 1) and not await throttle.acquire("c", 1)
        assert await throttle.release("c")

    asyncio.run(run())
