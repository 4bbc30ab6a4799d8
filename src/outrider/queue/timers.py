"""Retry timers for every queued message, in buckets, with one event-loop timer.

A loop timer per deferred message costs several hundred octets (the handle, its
arguments, libuv's timer) and a million of them fill the loop's heap. Here a message
only records when it is due (:attr:`QueuedMessage.due`) and sits in the list of its
bucket (:data:`GRAIN` seconds wide); one loop timer waits for the earliest bucket. A
cancelled or re-armed message is not searched for: a bucket skips every message whose
``due`` no longer falls in it. A bucket that comes due is worked off in slices of
:data:`SLICE` messages, one loop turn each, so a million retries falling due together
never hold up the listeners or the delivery of fresh mail.
"""

from __future__ import annotations

import asyncio
import heapq
import math
from collections.abc import Callable

from outrider.queue.model import QueuedMessage

GRAIN = 0.05  # seconds: a timer fires at most this late
SLICE = 2000  # messages dispatched per loop turn


def _bucket(when: float) -> int:
    return math.ceil(when / GRAIN)


class RetryTimers:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        clock: Callable[[], float],
        fire: Callable[[QueuedMessage], None],
    ) -> None:
        self._loop = loop
        self._clock = clock
        self._fire = fire
        self._buckets: dict[int, list[QueuedMessage]] = {}
        self._keys: list[int] = []  # heap of the buckets' keys
        self._handle: asyncio.Handle | None = None
        self._armed = 0  # the bucket the loop timer waits for (0: none)

    def arm(self, msg: QueuedMessage, when: float) -> None:
        """Fire ``fire(msg)`` at ``when`` (epoch seconds, the clock's), replacing its
        earlier timer if it had one."""
        when = max(when, 1e-9)  # 0.0 means "no timer"
        msg.due = when
        key = _bucket(when)
        bucket = self._buckets.get(key)
        if bucket is None:
            self._buckets[key] = bucket = []
            heapq.heappush(self._keys, key)
            if self._armed == 0 or key < self._armed:
                self._wait_for(key)
        bucket.append(msg)

    @staticmethod
    def cancel(msg: QueuedMessage) -> None:
        msg.due = 0.0

    @staticmethod
    def armed(msg: QueuedMessage) -> bool:
        return msg.due != 0.0

    def __len__(self) -> int:
        """Entries held, including cancelled ones not yet skipped (for tests, metrics)."""
        return sum(len(b) for b in self._buckets.values())

    def stop(self) -> None:
        """Cancel every timer (shutdown)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        for bucket in self._buckets.values():
            for msg in bucket:
                msg.due = 0.0
        self._buckets.clear()
        self._keys.clear()
        self._armed = 0

    def _wait_for(self, key: int) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._armed = key
        delay = key * GRAIN - self._clock()
        if delay > 0:
            self._handle = self._loop.call_later(delay, self._run)
        else:
            self._handle = self._loop.call_soon(self._run)

    def _run(self) -> None:
        self._handle = None
        self._armed = 0
        now = self._clock()
        budget = SLICE
        keys = self._keys
        buckets = self._buckets
        while keys and budget > 0:
            key = keys[0]
            bucket = buckets.get(key)
            if bucket is None:  # emptied earlier; its heap entry goes now
                heapq.heappop(keys)
                continue
            if key * GRAIN > now:
                break
            while bucket and budget > 0:
                msg = bucket.pop()
                if msg.due != 0.0 and _bucket(msg.due) == key:
                    msg.due = 0.0
                    budget -= 1
                    self._fire(msg)  # may arm timers, even in this bucket
            if not bucket:
                del buckets[key]
        while keys and keys[0] not in buckets:
            heapq.heappop(keys)
        if keys:
            self._wait_for(keys[0])
