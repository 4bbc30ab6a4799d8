"""A stand-in for a shared throttle: a Throttle that is not local and suspends on every call.

It keeps its state in a LocalThrottle but yields to the event loop before each call,
as a network round trip would, so the policies and the session take their awaitable
paths. Each call stays atomic (the state changes after the suspension, in one step).
"""

from __future__ import annotations

import asyncio

from outrider.throttle import LocalThrottle, RateLimit


class SharedStandIn:
    def __init__(self, *, max_keys: int = 100_000) -> None:
        self.state = LocalThrottle(max_keys=max_keys)
        self.calls = 0

    async def _hop(self) -> None:
        self.calls += 1
        await asyncio.sleep(0)

    async def rate(self, key: str, limit: RateLimit, now: float) -> float:
        await self._hop()
        return self.state.rate_now(key, limit, now)

    async def peek_rate(self, key: str, limit: RateLimit, now: float) -> float:
        await self._hop()
        return self.state.peek_rate_now(key, limit, now)

    async def acquire(self, key: str, limit: int | None) -> bool:
        await self._hop()
        return self.state.acquire_now(key, limit)

    async def release(self, key: str) -> bool:
        await self._hop()
        return self.state.release_now(key)

    async def acquire_within_rate(
        self, key: str, limit: int | None, rate_key: str, rate: RateLimit, now: float
    ) -> int:
        await self._hop()
        return self.state.acquire_within_rate_now(key, limit, rate_key, rate, now)

    async def held(self, key: str) -> int:
        await self._hop()
        return self.state.held_now(key)

    async def add_event(self, key: str, window: float, now: float) -> int:
        await self._hop()
        return self.state.add_event_now(key, window, now)

    async def count(self, key: str, window: float, now: float) -> int:
        await self._hop()
        return self.state.count_now(key, window, now)

    async def clear_events(self, key: str) -> None:
        await self._hop()
        self.state.clear_events_now(key)

    async def block(self, key: str, until: float, now: float) -> None:
        await self._hop()
        self.state.block_now(key, until, now)

    async def blocked_until(self, key: str, now: float) -> float | None:
        await self._hop()
        return self.state.blocked_until_now(key, now)
