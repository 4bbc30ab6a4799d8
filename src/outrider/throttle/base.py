"""The :class:`Throttle` interface: keyed limiter state behind awaitable calls.

A throttle holds only state; the policy (which key, which limit, what to reply) stays
with the caller. Its methods are awaitable so that the state can live outside the
process (Redis, shared by receiver processes and machines); :class:`LocalThrottle`
keeps it in a dict and also answers synchronously.

Rules every implementation keeps, so callers and tests depend on nothing else:

* Keys are opaque strings, namespaced by the caller (``"gate [::]:25 client 192.0.2.1"``).
  Each kind of state (rate, count, event log, block) has its own key space: one key may
  name a rate and a block independently. A shared implementation adds the kind to its
  storage key.
* ``now`` is seconds on one clock shared by every user of the throttle and never goes
  back for a key. ``time.monotonic()`` suits a :class:`LocalThrottle` (one process); a
  shared implementation needs wall time (``time.time()``, clocks kept in step by NTP) or
  must ignore ``now`` and read its server's clock.
* Each call is atomic on its key: two callers racing for the last token or the last
  slot never both get it. A call whose caller is cancelled either happened fully or not
  at all. Nothing is atomic across calls: a caller checking two limits acquires one,
  then the other, and releases the first if the second refuses.
* Calls do not raise for trouble with shared storage: an implementation that cannot
  reach it logs that and answers as for a fresh key (admitted, not blocked, no events),
  so an outage of the limiter never stops mail; callers need no error handling.
* Rate, event and block state expires by itself once it no longer affects any answer
  (a drained rate, events older than their window, an ended block), and an
  implementation may drop the least recently used state of those kinds to bound its
  memory; a dropped key answers as a fresh one. Counts are never dropped while held.
"""

from __future__ import annotations

from typing import Protocol

from outrider.throttle.rate import RateLimit

__all__ = ["Throttle"]


class Throttle(Protocol):
    """Keyed rates, concurrent counts, windowed event counts and blocks."""

    # -- rates (GCRA) -------------------------------------------------------------------
    async def rate(self, key: str, limit: RateLimit, now: float) -> float:
        """Take one admission from ``key`` if ``limit`` allows it at ``now``.

        Returns 0.0 when it was taken, else the seconds until one would be allowed
        (``inf`` for a limit that admits nothing), having taken nothing: a refused caller
        may sleep that long and call again. An unlimited limit always returns 0.0 and
        stores nothing. A key used with a different interval than before keeps its debt,
        rescaled to the new interval by the first call (this or :meth:`peek_rate`) that
        uses it (see :func:`outrider.throttle.rate.base_tat`).
        """
        ...

    async def peek_rate(self, key: str, limit: RateLimit, now: float) -> float:
        """What :meth:`rate` would return, without taking anything (a new interval's
        rescaling does happen here, as in :meth:`rate`)."""
        ...

    # -- concurrent counts --------------------------------------------------------------
    async def acquire(self, key: str, limit: int | None) -> bool:
        """Count one more holder of ``key`` if fewer than ``limit`` hold it (None: no limit).

        True when counted. Each True must be paired with exactly one :meth:`release`. A
        shared implementation attributes counts to the process holding them, so that a
        process that dies does not leave its counts behind.
        """
        ...

    async def acquire_within_rate(
        self, key: str, limit: int | None, rate_key: str, rate: RateLimit, now: float
    ) -> int:
        """:meth:`acquire` then :meth:`rate`, in one atomic call: 0 when both took, 1
        when the count refused, 2 when the rate refused (the count is given back).
        One round trip instead of three for a shared implementation."""
        ...

    async def release(self, key: str) -> bool:
        """Uncount one holder of ``key``; False (and nothing changes) if it held none."""
        ...

    async def held(self, key: str) -> int:
        """How many holders ``key`` has now."""
        ...

    # -- windowed event counts ----------------------------------------------------------
    async def add_event(self, key: str, window: float, now: float) -> int:
        """Record an event at ``now``; returns the events of the last ``window`` seconds.

        An event at ``t`` counts while ``now - t < window`` (it is gone at exactly
        ``window`` old); the one recorded now is always in the answer. Use one window
        per key.
        """
        ...

    async def count(self, key: str, window: float, now: float) -> int:
        """The events of ``key`` within the last ``window`` seconds, recording nothing."""
        ...

    async def clear_events(self, key: str) -> None:
        """Forget every event of ``key``."""
        ...

    # -- blocks -------------------------------------------------------------------------
    async def block(self, key: str, until: float, now: float) -> None:
        """Block ``key`` until ``until``, replacing any block it had (``until <= now`` lifts it)."""
        ...

    async def blocked_until(self, key: str, now: float) -> float | None:
        """When ``key``'s block ends, or None when it is not blocked at ``now``."""
        ...
