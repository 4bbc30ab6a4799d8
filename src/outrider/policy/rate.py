"""Message-rate limiting with GCRA (the generic cell rate algorithm).

GCRA keeps one number per limiter, the theoretical arrival time (TAT) of the next
admission, and spaces admissions evenly: "100/10m" admits one message every 6 s rather
than 100 at the top of each ten minutes, so a destination never sees the burst at an
interval boundary that a fixed-window counter or a full token bucket produces. ``burst``
lets that many admissions through back to back after an idle spell, which is the token
bucket's depth expressed as a tolerance on the TAT.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Gcra", "Rate", "RateLike"]

# Admissions at most this early count as on time: a caller that sleeps exactly the returned
# wait must not be refused for float rounding of ``now + wait``.
_EPSILON = 1e-9


class RateLike(Protocol):
    """Anything shaped like :class:`Rate` (the config's own ``Rate`` qualifies)."""

    @property
    def count(self) -> int: ...

    @property
    def per_seconds(self) -> float: ...


@dataclass(frozen=True, slots=True)
class Rate:
    """``count`` events per ``per_seconds`` seconds; ``count == 0`` admits nothing."""

    count: int
    per_seconds: float

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError(f"rate count must not be negative, got {self.count}")
        if not (self.per_seconds > 0 and math.isfinite(self.per_seconds)):
            raise ValueError(f"rate period must be positive and finite, got {self.per_seconds}")

    @property
    def per_second(self) -> float:
        return self.count / self.per_seconds


def _interval(rate: RateLike | None) -> float:
    """Seconds between admissions: 0 for unlimited, infinity for a zero rate."""
    if rate is None:
        return 0.0
    if rate.count < 0 or not rate.per_seconds > 0:
        raise ValueError(f"invalid rate {rate.count}/{rate.per_seconds}s")
    if rate.count == 0:
        return math.inf
    return rate.per_seconds / rate.count


class Gcra:
    """One rate limiter (e.g. per queue). Not thread-safe; the queue manager owns it.

    ``try_acquire`` either admits and consumes, or says how long to wait and consumes
    nothing, so a refused caller can sleep exactly that long and retry.
    """

    __slots__ = ("_burst", "_interval", "_last_now", "_tat")

    def __init__(self, rate: RateLike | None, *, burst: int = 1) -> None:
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        self._burst = burst
        self._interval = _interval(rate)
        self._tat = -math.inf  # idle: the next admission is allowed at any time
        self._last_now = -math.inf

    @property
    def tat(self) -> float:
        """Theoretical arrival time: when the limiter is back to fully idle (-inf: never used)."""
        return self._tat

    @property
    def interval(self) -> float:
        """Emission interval in seconds (0: unlimited, inf: nothing admitted)."""
        return self._interval

    @property
    def burst(self) -> int:
        return self._burst

    @property
    def unlimited(self) -> bool:
        return self._interval == 0.0

    def try_acquire(self, now: float, n: int = 1) -> float:
        """0.0 if ``n`` admissions are allowed now (and consumed), else seconds to wait.

        ``n`` may not exceed ``burst``: more than ``burst`` at once is never conforming.
        """
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        if n > self._burst:
            raise ValueError(f"cannot acquire {n} at once with burst {self._burst}")
        if now > self._last_now:
            self._last_now = now
        interval = self._interval
        if interval == 0.0:
            return 0.0
        if interval == math.inf:
            return math.inf
        start = self._tat if self._tat > now else now
        new_tat = start + n * interval
        allow_at = new_tat - self._burst * interval
        wait = allow_at - now
        if wait > _EPSILON:
            return wait
        self._tat = new_tat
        return 0.0

    def peek(self, now: float) -> float:
        """How long until one admission would be allowed, without consuming anything."""
        interval = self._interval
        if interval == 0.0 or interval == math.inf:
            return interval
        start = self._tat if self._tat > now else now
        wait = start + interval - self._burst * interval - now
        return wait if wait > _EPSILON else 0.0

    def set_rate(self, rate: RateLike | None, *, now: float | None = None) -> None:
        """Change the limit (backoff, config reload) without forgiving or inventing debt.

        Admissions still owed under the old rate are rescaled to the new interval, so
        entering backoff slows down at once and leaving it does not keep a long backoff
        wait. ``now`` defaults to the latest time seen by :meth:`try_acquire`.
        """
        new_interval = _interval(rate)
        old_interval = self._interval
        self._interval = new_interval
        if now is None:
            now = self._last_now
        if not math.isfinite(now) or self._tat <= now:
            return  # idle: nothing owed, nothing to rescale
        if old_interval == 0.0 or old_interval == math.inf or new_interval == 0.0:
            # Owed admissions cannot be counted (or no longer matter): start afresh.
            self._tat = -math.inf
            return
        if new_interval == math.inf:
            return  # admits nothing until the rate changes again; keep the debt
        owed = (self._tat - now) / old_interval
        self._tat = now + owed * new_interval
