"""Per-user sending rate limits (the ``max_msg_rate`` of a user record).

A user may send ``count`` messages at once, then one per ``per_seconds / count``
(GCRA with a burst of ``count``). The state lives in each receiver process, so with
``receiver-processes = N`` a user can reach up to N times the rate; it is a brake on a
compromised account, not an exact quota.
"""

from __future__ import annotations

from outrider.config.units import parse_rate
from outrider.policy.rate import Gcra

MAX_TRACKED_USERS = 100_000


class UserRateLimiter:
    def __init__(self) -> None:
        self._limits: dict[str, tuple[str, Gcra]] = {}

    def allow(self, username: str, rate_text: str | None, now: float) -> bool:
        """Count one message for ``username`` if its rate allows it now."""
        if not rate_text:
            return True
        entry = self._limits.get(username)
        if entry is None or entry[0] != rate_text:
            try:
                rate = parse_rate(rate_text)
            except ValueError:
                return True  # validated when stored; never block mail on a bad record
            if rate is None:
                return True
            if len(self._limits) >= MAX_TRACKED_USERS:
                self._limits.pop(next(iter(self._limits)))
            entry = (rate_text, Gcra(rate, burst=max(1, rate.count)))
            self._limits[username] = entry
        return entry[1].try_acquire(now) <= 0
