"""Rate limits as a throttle applies them: GCRA parameters and the per-key step (pure).

GCRA (the generic cell rate algorithm) keeps one number per key, the theoretical
arrival time (TAT): when the key is back to fully idle. An admission moves the TAT one
``interval`` later; it is allowed while the TAT stays within ``burst`` intervals of
``now``. So "100/10m" admits one every 6 s instead of 100 at the top of each ten
minutes, and ``burst`` admissions may come back to back after an idle spell.

The state also records the interval it was built with, so that a key used with a new
limit (backoff mode, a reload) keeps its debt, rescaled to the new interval the first
time the new limit is used, instead of having it forgiven or inflated. This module is
the reference for every implementation: a shared one (a Redis script) must compute
exactly this.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from outrider.policy.rate import RateLike

__all__ = ["EPSILON", "RateLimit", "RateState", "base_tat"]

# Admissions at most this early count as on time: a caller that sleeps exactly the
# returned wait must not be refused for float rounding of ``now + wait``.
EPSILON = 1e-9

RateState = tuple[float, float]
"""(TAT, the interval it was built with) for one key."""


@dataclass(frozen=True, slots=True)
class RateLimit:
    """One admission per ``interval`` seconds, up to ``burst`` back to back when idle.

    ``interval == 0`` admits everything and keeps no state; ``interval == inf`` admits
    nothing. Build it once (from config) and pass it on every call: it is cheap to
    compare and carries ``span``, the burst tolerance, precomputed.
    """

    interval: float
    burst: int = 1
    span: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.interval >= 0.0:  # also refuses NaN
            raise ValueError(f"rate interval must be >= 0, got {self.interval}")
        if self.burst < 1:
            raise ValueError(f"burst must be at least 1, got {self.burst}")
        object.__setattr__(self, "span", self.interval * self.burst)

    @classmethod
    def of(cls, rate: RateLike | None, *, burst: int = 1) -> RateLimit:
        """``rate.count`` per ``rate.per_seconds`` (None: unlimited; count 0: nothing)."""
        if rate is None:
            return cls(0.0, burst)
        count, per = rate.count, float(rate.per_seconds)
        if count < 0 or not (per > 0.0 and math.isfinite(per)):
            raise ValueError(f"invalid rate {count}/{per}s")
        return cls(math.inf if count == 0 else per / count, burst)

    @property
    def unlimited(self) -> bool:
        return self.interval == 0.0


def base_tat(state: RateState | None, limit: RateLimit, now: float) -> float:
    """The key's TAT expressed in ``limit``'s interval at ``now`` (finite, non-zero interval).

    ``now`` when the key is idle (no state, or drained: the same thing); otherwise its
    TAT, with the owed admissions rescaled when the state was built with another
    interval. One more admission conforms when ``base + interval - span - now <= EPSILON``;
    otherwise that difference is the wait. An implementation stores the rescaled state
    (``(base, interval)``) on the first call that sees the new interval, admitted or
    not, so the debt is re-expressed once, at that moment, as ``Gcra.set_rate`` does.
    """
    if state is None:
        return now
    tat, built_with = state
    if tat <= now:
        return now
    if built_with != limit.interval:
        return now + (tat - now) * (limit.interval / built_with)
    return tat
