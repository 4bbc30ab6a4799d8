"""An in-process :class:`~outrider.throttle.base.Throttle`: plain dicts, one event loop.

Every awaitable method has a synchronous twin ending in ``_now`` that does the same
work at once (the awaitable ones only wrap them). Hot in-process paths, such as
connection admission or the scheduler pacing a queue, call the twins and pay a few dict
operations, with no coroutine or task per call.

Memory is bounded. Rate, event and block states sit in least-recently-used order per
kind: each write first drops up to :data:`PURGE_PER_WRITE` states that have expired
from the old end, and past ``max_keys`` states of a kind the least recently used one
is dropped (a dropped key answers as a fresh one, so a flood of distinct clients costs
at most ``max_keys`` states each, never unbounded memory). Counts are removed when they
reach zero and never dropped while held: they are bounded by the callers' holders.

Not thread-safe: use it from one event loop (reading a count from another thread is fine).
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from outrider.throttle.rate import EPSILON, RateLimit, RateState, base_tat

__all__ = ["DEFAULT_MAX_KEYS", "PURGE_PER_WRITE", "LocalThrottle"]

DEFAULT_MAX_KEYS = 100_000
# Expired states dropped per write. Each write adds at most one state, so any value
# above 1 keeps up with the arrival rate; a small bound keeps a single call cheap after
# a long idle spell.
PURGE_PER_WRITE = 8


@dataclass(slots=True)
class _Events:
    window: float
    times: deque[float] = field(default_factory=deque)

    def trim(self, now: float) -> int:
        times = self.times
        horizon = now - self.window
        while times and times[0] <= horizon:
            times.popleft()
        return len(times)

    def expired(self, now: float) -> bool:
        return not self.times or self.times[-1] <= now - self.window


class LocalThrottle:
    """Throttle state in this process; see :class:`~outrider.throttle.base.Throttle`."""

    __slots__ = ("_blocks", "_counts", "_events", "_rates", "max_keys")

    def __init__(self, *, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        if max_keys < 1:
            raise ValueError(f"max_keys must be at least 1, got {max_keys}")
        self.max_keys = max_keys
        self._rates: OrderedDict[str, RateState] = OrderedDict()
        self._counts: dict[str, int] = {}
        self._events: OrderedDict[str, _Events] = OrderedDict()
        self._blocks: OrderedDict[str, float] = OrderedDict()

    # -- rates --------------------------------------------------------------------------
    def rate_now(self, key: str, limit: RateLimit, now: float) -> float:
        interval = limit.interval
        if interval == 0.0:
            return 0.0
        if interval == math.inf:
            return math.inf
        rates = self._rates
        for _ in range(PURGE_PER_WRITE):
            if not rates:
                break
            oldest = next(iter(rates))
            if rates[oldest][0] > now:
                break
            del rates[oldest]
        state = rates.get(key)
        base = base_tat(state, limit, now)
        tat = base + interval
        wait = tat - limit.span - now
        if wait > EPSILON:
            if state is not None and state[1] != interval:
                rates[key] = (base, interval)  # the debt re-expressed; nothing taken
            return wait
        if state is None:
            if len(rates) >= self.max_keys:
                rates.popitem(last=False)
        else:
            rates.move_to_end(key)
        rates[key] = (tat, interval)
        return 0.0

    def peek_rate_now(self, key: str, limit: RateLimit, now: float) -> float:
        interval = limit.interval
        if interval == 0.0 or interval == math.inf:
            return interval
        state = self._rates.get(key)
        base = base_tat(state, limit, now)
        if state is not None and state[1] != interval and base > now:
            self._rates[key] = (base, interval)  # the debt re-expressed; nothing taken
        wait = base + interval - limit.span - now
        return wait if wait > EPSILON else 0.0

    # -- counts -------------------------------------------------------------------------
    def acquire_now(self, key: str, limit: int | None) -> bool:
        counts = self._counts
        held = counts.get(key, 0)
        if limit is not None and held >= limit:
            return False
        counts[key] = held + 1
        return True

    def acquire_within_rate_now(
        self, key: str, limit: int | None, rate_key: str, rate: RateLimit, now: float
    ) -> int:
        if not self.acquire_now(key, limit):
            return 1
        if self.rate_now(rate_key, rate, now) > 0.0:
            self.release_now(key)
            return 2
        return 0

    def release_now(self, key: str) -> bool:
        counts = self._counts
        held = counts.get(key, 0)
        if held > 1:
            counts[key] = held - 1
        elif held == 1:
            del counts[key]
        else:
            return False
        return True

    def held_now(self, key: str) -> int:
        return self._counts.get(key, 0)

    # -- events -------------------------------------------------------------------------
    def add_event_now(self, key: str, window: float, now: float) -> int:
        events = self._events
        for _ in range(PURGE_PER_WRITE):
            if not events:
                break
            oldest = next(iter(events))
            if not events[oldest].expired(now):
                break
            del events[oldest]
        log = events.get(key)
        if log is None:
            if len(events) >= self.max_keys:
                events.popitem(last=False)
            log = events[key] = _Events(window)
        else:
            events.move_to_end(key)
            log.window = window
            log.trim(now)
        log.times.append(now)
        return len(log.times)

    def count_now(self, key: str, window: float, now: float) -> int:
        log = self._events.get(key)
        if log is None:
            return 0
        log.window = window
        count = log.trim(now)
        if count == 0:
            del self._events[key]
        return count

    def clear_events_now(self, key: str) -> None:
        self._events.pop(key, None)

    # -- blocks -------------------------------------------------------------------------
    def block_now(self, key: str, until: float, now: float) -> None:
        blocks = self._blocks
        for _ in range(PURGE_PER_WRITE):
            if not blocks:
                break
            oldest = next(iter(blocks))
            if blocks[oldest] > now:
                break
            del blocks[oldest]
        if until <= now:
            blocks.pop(key, None)
            return
        if key in blocks:
            blocks.move_to_end(key)
        elif len(blocks) >= self.max_keys:
            blocks.popitem(last=False)
        blocks[key] = until

    def blocked_until_now(self, key: str, now: float) -> float | None:
        until = self._blocks.get(key)
        if until is None:
            return None
        if now < until:
            return until
        del self._blocks[key]
        return None

    # -- the Throttle interface ---------------------------------------------------------
    async def rate(self, key: str, limit: RateLimit, now: float) -> float:
        return self.rate_now(key, limit, now)

    async def peek_rate(self, key: str, limit: RateLimit, now: float) -> float:
        return self.peek_rate_now(key, limit, now)

    async def acquire(self, key: str, limit: int | None) -> bool:
        return self.acquire_now(key, limit)

    async def acquire_within_rate(
        self, key: str, limit: int | None, rate_key: str, rate: RateLimit, now: float
    ) -> int:
        return self.acquire_within_rate_now(key, limit, rate_key, rate, now)

    async def release(self, key: str) -> bool:
        return self.release_now(key)

    async def held(self, key: str) -> int:
        return self.held_now(key)

    async def add_event(self, key: str, window: float, now: float) -> int:
        return self.add_event_now(key, window, now)

    async def count(self, key: str, window: float, now: float) -> int:
        return self.count_now(key, window, now)

    async def clear_events(self, key: str) -> None:
        self.clear_events_now(key)

    async def block(self, key: str, until: float, now: float) -> None:
        self.block_now(key, until, now)

    async def blocked_until(self, key: str, now: float) -> float | None:
        return self.blocked_until_now(key, now)

    # -- housekeeping (local only) ------------------------------------------------------
    def purge(self, now: float) -> int:
        """Drop every expired rate, event and block state; returns how many."""
        rates = [k for k, (tat, _) in self._rates.items() if tat <= now]
        events = [k for k, log in self._events.items() if log.expired(now)]
        blocks = [k for k, until in self._blocks.items() if until <= now]
        for key in rates:
            del self._rates[key]
        for key in events:
            del self._events[key]
        for key in blocks:
            del self._blocks[key]
        return len(rates) + len(events) + len(blocks)

    def forget(self, prefix: str) -> int:
        """Drop the rate, event and block states under ``prefix`` (counts stay: they are
        held). For a namespace whose keys will not be used again, e.g. after a reload."""
        dropped = 0
        for table in (self._rates, self._events, self._blocks):
            keys = [key for key in table if key.startswith(prefix)]
            for key in keys:
                del table[key]
            dropped += len(keys)
        return dropped

    def sizes(self) -> dict[str, int]:
        """States held per kind, for status output and memory checks."""
        return {
            "rates": len(self._rates),
            "counts": len(self._counts),
            "events": len(self._events),
            "blocks": len(self._blocks),
        }
