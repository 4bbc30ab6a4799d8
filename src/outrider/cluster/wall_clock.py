"""A :class:`~outrider.throttle.base.Throttle` whose callers use a local clock, over one
that must see every node's wall clock.

Receivers time failed AUTH with ``time.monotonic()``: one clock for every process on a
machine, but a different one on every machine. Shared through Redis, windows and block
deadlines must be in one frame, so this adapter hands the inner throttle ``time.time()``
and turns deadlines back into the caller's clock (``until - wall + now``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from outrider.throttle.base import Throttle
from outrider.throttle.rate import RateLimit

__all__ = ["WallClock"]


class WallClock:
    def __init__(self, inner: Throttle, wall: Callable[[], float] = time.time) -> None:
        self.inner = inner
        self.wall = wall

    async def close(self) -> None:
        """Stop the inner throttle's Redis client, if it has one (a receiver's own)."""
        client = getattr(self.inner, "client", None)
        if client is not None:
            await client.stop()

    async def rate(self, key: str, limit: RateLimit, now: float) -> float:
        return await self.inner.rate(key, limit, self.wall())

    async def peek_rate(self, key: str, limit: RateLimit, now: float) -> float:
        return await self.inner.peek_rate(key, limit, self.wall())

    async def acquire(self, key: str, limit: int | None) -> bool:
        return await self.inner.acquire(key, limit)

    async def acquire_within_rate(
        self, key: str, limit: int | None, rate_key: str, rate: RateLimit, now: float
    ) -> int:
        return await self.inner.acquire_within_rate(key, limit, rate_key, rate, self.wall())

    async def release(self, key: str) -> bool:
        return await self.inner.release(key)

    async def held(self, key: str) -> int:
        return await self.inner.held(key)

    async def add_event(self, key: str, window: float, now: float) -> int:
        return await self.inner.add_event(key, window, self.wall())

    async def count(self, key: str, window: float, now: float) -> int:
        return await self.inner.count(key, window, self.wall())

    async def clear_events(self, key: str) -> None:
        await self.inner.clear_events(key)

    async def block(self, key: str, until: float, now: float) -> None:
        wall = self.wall()
        await self.inner.block(key, until - now + wall, wall)

    async def blocked_until(self, key: str, now: float) -> float | None:
        wall = self.wall()
        until = await self.inner.blocked_until(key, wall)
        return None if until is None else until - wall + now
