""":class:`RedisThrottle`: the :class:`~outrider.throttle.base.Throttle` shared by nodes.

Rates are GCRA in Redis (:data:`~outrider.cluster.scripts.GCRA`), one round trip per
decision; :meth:`RedisThrottle.reserve` takes several admissions in that one trip.
Concurrent counts are connection *leases*: a member ``node:n`` in a sorted set scored
by its expiry; this node renews all its leases every ``lease-time / 3`` in one call, so
a node that dies gives its connections back within the lease time without anyone
noticing it died. Events and blocks are a sorted set and a key with a TTL.

When Redis is down or slow (:class:`~outrider.cluster.client.ClusterClient` says so, or
a call fails) every answer comes from a :class:`~outrider.throttle.local.LocalThrottle`
with this node's share of the limit (:mod:`~outrider.cluster.fallback`), at once: no
decision ever waits on Redis for longer than the timeout. Leases taken meanwhile are
written to Redis by the first renewal after it is back.
"""

from __future__ import annotations

import itertools
import math
import time

from outrider.cluster.client import ClusterClient
from outrider.cluster.fallback import share_count, share_rate
from outrider.throttle.local import LocalThrottle
from outrider.throttle.rate import EPSILON, RateLimit

__all__ = ["RENEW_BATCH", "RedisThrottle"]

RENEW_BATCH = 500  # leases renewed per script call


class RedisThrottle:
    """Throttle state in Redis, with a local fallback; see the module docstring."""

    def __init__(self, client: ClusterClient) -> None:
        self.client = client
        self.fallback = LocalThrottle()
        # Leases this node holds, through Redis or the fallback: storage key -> members.
        self._holders: dict[str, list[str]] = {}
        self._ids = itertools.count(1)
        self.round_trips = 0
        client.every_round(self.renew)

    @property
    def up(self) -> bool:
        return self.client.up

    def _key(self, kind: str, key: str) -> str:
        return f"{self.client.prefix}{kind}:{key}"

    # -- rates ---------------------------------------------------------------------------
    async def reserve(
        self, key: str, limit: RateLimit, now: float, want: int = 1, ahead: float = 0.0
    ) -> tuple[list[float], float]:
        """Take up to ``want`` admissions conforming within ``ahead`` seconds.

        Returns the seconds from ``now`` at which each granted admission may be used
        (ascending, the first usually 0), or no admission and the wait until one would
        be allowed.
        """
        interval = limit.interval
        if interval == 0.0:
            return [0.0] * want, 0.0
        if interval == math.inf:
            return [], math.inf
        if self.client.up:
            self.round_trips += 1
            args = [repr(interval), repr(limit.span), repr(now), want, repr(ahead), "0"]
            answer = await self.client.run("GCRA", [self._key("rate", key)], args)
            if answer is not None:
                granted, value = int(answer[0]), float(answer[1])
                if granted == 0:
                    return [], value if value > EPSILON else 0.0
                return [
                    max(0.0, value + i * interval - limit.span - now) for i in range(1, granted + 1)
                ], 0.0
        wait = self.fallback.rate_now(key, share_rate(limit, self.client.live_nodes), now)
        return ([0.0], 0.0) if wait <= 0.0 else ([], wait)

    async def rate(self, key: str, limit: RateLimit, now: float) -> float:
        slots, wait = await self.reserve(key, limit, now)
        return 0.0 if slots else wait

    async def peek_rate(self, key: str, limit: RateLimit, now: float) -> float:
        interval = limit.interval
        if interval == 0.0 or interval == math.inf:
            return interval
        if self.client.up:
            args = [repr(interval), repr(limit.span), repr(now), 0, "0", "1"]
            answer = await self.client.run("GCRA", [self._key("rate", key)], args)
            if answer is not None:
                wait = float(answer[1])
                return wait if wait > EPSILON else 0.0
        return self.fallback.peek_rate_now(key, share_rate(limit, self.client.live_nodes), now)

    # -- connection leases ---------------------------------------------------------------
    def _member(self) -> str:
        return f"{self.client.node}:{next(self._ids)}"

    async def lease(
        self,
        key: str,
        limit: int | None,
        rate_key: str | None = None,
        rate: RateLimit | None = None,
        now: float = 0.0,
        also: str | None = None,
    ) -> tuple[int, float]:
        """Lease one of ``limit`` connections for ``key`` (and for ``also``, the source
        address's key, under the same limit), and take one admission of ``rate`` under
        ``rate_key`` with it: (0, 0) when all took; (1, wait) when a count refused, (2,
        wait) when the rate refused (nothing is kept). The wait is a hint: when the
        first lease expires, or the rate's next admission."""
        storages = [self._key("lease", key)]
        if also is not None:
            storages.append(self._key("lease", also))
        if rate is not None and rate.interval == math.inf:
            return 2, math.inf
        with_rate = rate is not None and rate_key is not None and rate.interval > 0.0
        if self.client.up:
            member = self._member()
            lease_ms = int(self.client.options.lease_time * 1000)
            keys = list(storages)
            args: list[object] = [member, -1 if limit is None else limit, lease_ms, len(storages)]
            if with_rate:
                assert rate is not None and rate_key is not None
                keys.append(self._key("rate", rate_key))
                args += [repr(rate.interval), repr(rate.span), repr(now)]
            self.round_trips += 1
            answer = await self.client.run("ACQUIRE", keys, args)
            if answer is not None:
                code, wait = int(answer[0]), max(0.0, float(answer[1]))
                if code == 0:
                    for storage in storages:
                        self._holders.setdefault(storage, []).append(member)
                return code, wait
        # Alone: this node's share, counting every lease it holds (those taken through
        # Redis before it went away too), so the nodes together stay within the limit.
        share = share_count(limit, self.client.live_nodes)
        if share is not None and any(len(self._holders.get(s, ())) >= share for s in storages):
            return 1, 0.0
        if with_rate:
            assert rate is not None and rate_key is not None
            wait = self.fallback.rate_now(rate_key, share_rate(rate, self.client.live_nodes), now)
            if wait > 0.0:
                return 2, wait
        member = self._member()
        for storage in storages:
            self._holders.setdefault(storage, []).append(member)
        return 0, 0.0

    async def acquire(self, key: str, limit: int | None) -> bool:
        code, _ = await self.lease(key, limit)
        return code == 0

    async def acquire_within_rate(
        self, key: str, limit: int | None, rate_key: str, rate: RateLimit, now: float
    ) -> int:
        code, _ = await self.lease(key, limit, rate_key, rate, now)
        return code

    async def release(self, key: str, also: str | None = None) -> bool:
        """Give back one lease of ``key`` (and of ``also``, taken with it)."""
        storages = [self._key("lease", key)]
        if also is not None:
            storages.append(self._key("lease", also))
        given: list[tuple[str, str]] = []
        for storage in storages:
            held = self._holders.get(storage)
            if not held:
                continue
            given.append((storage, held.pop()))
            if not held:
                del self._holders[storage]
        if given and self.client.up:
            if len(given) == 1:
                await self.client.call(self.client.redis.zrem(*given[0]))
            else:
                pipe = self.client.redis.pipeline(transaction=False)
                for storage, member in given:
                    pipe.zrem(storage, member)
                await self.client.call(pipe.execute())
        return bool(given)

    async def held(self, key: str) -> int:
        """Leases of ``key`` on every node (this node's alone while Redis is away)."""
        storage = self._key("lease", key)
        if self.client.up:
            ms = int(time.time() * 1000)
            count = await self.client.call(self.client.redis.zcount(storage, f"({ms}", "+inf"))
            if count is not None:
                return int(count)
        return len(self._holders.get(storage, ()))

    def over_share(self, key: str, limit: int | None, also: str | None = None) -> bool:
        """True while Redis is away and this node holds more leases of ``key`` (or of
        ``also``) than its share: a connection then ends after its message, so that the
        nodes together get back within the limit (leases taken through Redis may be
        spread unevenly)."""
        if self.client.up:
            return False
        share = share_count(limit, self.client.live_nodes)
        if share is None:
            return False
        for name in (key,) if also is None else (key, also):
            held = self._holders.get(self._key("lease", name))
            if held is not None and len(held) > share:
                return True
        return False

    def held_here(self) -> int:
        """Leases this node holds, over every key; a connection's queue and source
        address leases (one member) count once."""
        return len({m for members in self._holders.values() for m in members})

    async def renew(self) -> None:
        """Extend every lease this node holds (re-adding those Redis lost)."""
        pairs = [(key, member) for key, held in self._holders.items() for member in held]
        lease_ms = int(self.client.options.lease_time * 1000)
        for start in range(0, len(pairs), RENEW_BATCH):
            batch = pairs[start : start + RENEW_BATCH]
            keys = [key for key, _ in batch]
            members = [member for _, member in batch]
            if await self.client.run("RENEW", keys, [lease_ms, *members]) is None:
                return

    # -- events --------------------------------------------------------------------------
    async def _events(self, key: str, window: float, now: float, add: bool) -> int | None:
        member = f"{now!r}:{self.client.node}:{next(self._ids)}"
        args = [repr(now), repr(window), member, "1" if add else "0"]
        answer = await self.client.run("EVENT", [self._key("events", key)], args)
        return None if answer is None else int(answer)

    async def add_event(self, key: str, window: float, now: float) -> int:
        count = await self._events(key, window, now, True)
        return self.fallback.add_event_now(key, window, now) if count is None else count

    async def count(self, key: str, window: float, now: float) -> int:
        count = await self._events(key, window, now, False)
        return self.fallback.count_now(key, window, now) if count is None else count

    async def clear_events(self, key: str) -> None:
        self.fallback.clear_events_now(key)
        if self.client.up:
            await self.client.call(self.client.redis.delete(self._key("events", key)))

    # -- blocks --------------------------------------------------------------------------
    async def block(self, key: str, until: float, now: float) -> None:
        self.fallback.block_now(key, until, now)
        if not self.client.up:
            return
        storage = self._key("block", key)
        if until <= now:
            await self.client.call(self.client.redis.delete(storage))
        else:
            ms = max(1, math.ceil((until - now) * 1000))
            await self.client.call(self.client.redis.set(storage, repr(until), px=ms))

    async def blocked_until(self, key: str, now: float) -> float | None:
        if self.client.up:
            value = await self.client.call(self.client.redis.get(self._key("block", key)))
            if self.client.up:
                if value is None:
                    return None
                until = float(value)
                return until if now < until else None
        return self.fallback.blocked_until_now(key, now)
