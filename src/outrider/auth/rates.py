"""Per-user sending rate limits (the ``max_msg_rate`` of a user record).

A user may send ``count`` messages at once, then one per ``per_seconds / count``
(GCRA with a burst of ``count``). The state lives in a
:class:`~outrider.throttle.Throttle`: with the default local one, each receiver process
keeps its own, so with ``receiver-processes = N`` a user can reach up to N times the
rate (a brake on a compromised account, not an exact quota); a shared throttle makes it
exact. A changed rate starts afresh: each rate has its own keys.
"""

from __future__ import annotations

from outrider.config.units import parse_rate
from outrider.throttle import LocalThrottle, RateLimit, Throttle

MAX_TRACKED_USERS = 100_000
# Distinct rate texts remembered after parsing; there are as many as user records at most.
_MAX_PARSED = 1024


class UserRateLimiter:
    def __init__(
        self,
        throttle: Throttle | None = None,
        *,
        namespace: str = "",
        max_users: int = MAX_TRACKED_USERS,
    ) -> None:
        """``throttle``: where the state lives (default: a private local one holding at
        most ``max_users`` users); ``namespace``: the key prefix in a shared throttle."""
        if throttle is None:
            throttle = LocalThrottle(max_keys=max_users)
        self.throttle: Throttle = throttle
        self._local = throttle if isinstance(throttle, LocalThrottle) else None
        self._namespace = namespace
        # rate text -> (limit, key prefix), or None for unlimited or unparsable texts
        self._parsed: dict[str, tuple[RateLimit, str] | None] = {}

    @property
    def local(self) -> bool:
        """True when :meth:`allow` (synchronous) can be used."""
        return self._local is not None

    def allow(self, username: str, rate_text: str | None, now: float) -> bool:
        """Count one message for ``username`` if its rate allows it now (local throttle)."""
        local = self._local
        if local is None:
            raise TypeError("UserRateLimiter.allow needs a LocalThrottle; await allow_async")
        limit = self._limit(rate_text)
        if limit is None:
            return True
        return local.rate_now(limit[1] + username, limit[0], now) <= 0.0

    async def allow_async(self, username: str, rate_text: str | None, now: float) -> bool:
        """:meth:`allow` for any throttle."""
        limit = self._limit(rate_text)
        if limit is None:
            return True
        return await self.throttle.rate(limit[1] + username, limit[0], now) <= 0.0

    def _limit(self, rate_text: str | None) -> tuple[RateLimit, str] | None:
        if not rate_text:
            return None
        try:
            return self._parsed[rate_text]
        except KeyError:
            pass
        try:
            rate = parse_rate(rate_text)
        except ValueError:
            rate = None  # validated when stored; never block mail on a bad record
        parsed = None
        if rate is not None:
            limit = RateLimit.of(rate, burst=max(1, rate.count))
            parsed = (limit, f"{self._namespace}{rate.count}/{rate.per_seconds!r} ")
        if len(self._parsed) >= _MAX_PARSED:
            self._parsed.clear()
        self._parsed[rate_text] = parsed
        return parsed
