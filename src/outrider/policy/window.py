"""Adaptive per-destination concurrency and dead-destination detection (after Postfix).

:class:`ConcurrencyWindow` follows qmgr_queue.c: the window starts at ``initial`` (5,
Postfix's ``initial_destination_concurrency``) and moves by feedback of 1/concurrency
in both directions, Postfix's default since 2.5. ``limit`` successes grow the window by
one; the first site-level failure shrinks it by one at once and each further ``limit``
failures by one more. Feedback is scaled by the window so a large window is neither
grown nor collapsed by a handful of results, and accumulated with Postfix's half-step
rounding so float error never delays a step.

:class:`DeadDestination` is kept apart from the window, as Postfix's "failed cohort"
counter is: a cohort is one window's worth of connection attempts, so each site-level
failure adds ``1/concurrency`` cohorts and any success resets the count. After
``cohort_limit`` failed cohorts the destination is dead: no traffic for ``dead_for``
seconds, then a single probe whose result revives it or re-arms the timer.
"""

from __future__ import annotations

import enum

__all__ = ["DEFAULT_INITIAL_CONCURRENCY", "ConcurrencyWindow", "DeadDestination"]

DEFAULT_INITIAL_CONCURRENCY = 5  # Postfix initial_destination_concurrency


class ConcurrencyWindow:
    """How many connections one destination may have open now (``limit``, 1..maximum)."""

    __slots__ = ("_failure", "_initial", "_limit", "_maximum", "_success")

    def __init__(self, *, initial: int = DEFAULT_INITIAL_CONCURRENCY, maximum: int) -> None:
        if initial < 1:
            raise ValueError(f"initial concurrency must be at least 1, got {initial}")
        if maximum < 1:
            raise ValueError(f"maximum concurrency must be at least 1, got {maximum}")
        self._initial = initial
        self._maximum = maximum
        self._limit = min(initial, maximum)
        self._success = 0.0  # accumulated positive feedback, in window steps
        self._failure = 0.0  # negative feedback credit; below zero means shrink now

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def maximum(self) -> int:
        return self._maximum

    def set_maximum(self, maximum: int) -> None:
        """Change the ceiling (backoff, config reload). Lowering clamps the window at once;
        raising does not: the window earns its way up again through successes."""
        if maximum < 1:
            raise ValueError(f"maximum concurrency must be at least 1, got {maximum}")
        self._maximum = maximum
        if self._limit > maximum:
            self._limit = maximum
            self._success = 0.0

    def on_success(self, *, busy: int | None = None) -> None:
        """A connection-level success. With ``busy`` (connections open now), the window
        only grows while it is actually used, as Postfix does: a destination that never
        needs more than one connection should not collect a large window it never tested."""
        limit = self._limit
        if limit >= self._maximum:
            self._success = 0.0
            return
        if busy is not None and limit >= busy + self._initial:
            return
        feedback = 1.0 / limit
        self._success += feedback
        while self._success + feedback / 2 >= 1.0 and self._limit < self._maximum:
            self._limit += 1
            self._success -= 1.0
            self._failure = 0.0
        if self._limit >= self._maximum:
            self._success = 0.0

    def on_failure(self) -> None:
        """A site-level failure (cannot connect, greeting refused, connection lost)."""
        feedback = 1.0 / self._limit
        self._failure -= feedback
        while self._failure - feedback / 2 < 0.0:
            if self._limit > 1:
                self._limit -= 1
            self._success = 0.0
            self._failure += 1.0


class _Life(enum.Enum):
    ALIVE = "alive"
    DEAD = "dead"
    PROBING = "probing"


class DeadDestination:
    """Failed-cohort detection for one destination.

    Caller protocol: ``if dead.is_dead(now) and not dead.allow_probe(now): skip``; report
    every site-level result with :meth:`on_failure` / :meth:`on_success`. A probe that is
    never reported is presumed lost after another ``dead_for`` and a new one is allowed.
    ``cohort_limit=0`` disables detection (as in Postfix).
    """

    __slots__ = ("_cohort_limit", "_cohorts", "_dead_for", "_life", "_until")

    def __init__(self, *, cohort_limit: int = 1, dead_for: float = 300.0) -> None:
        if cohort_limit < 0:
            raise ValueError(f"cohort limit must not be negative, got {cohort_limit}")
        if not dead_for >= 0:
            raise ValueError(f"dead_for must not be negative, got {dead_for}")
        self._cohort_limit = cohort_limit
        self._dead_for = dead_for
        self._cohorts = 0.0
        self._life = _Life.ALIVE
        self._until = 0.0  # DEAD: probe allowed from then on; PROBING: probe presumed lost

    @property
    def failed_cohorts(self) -> float:
        return self._cohorts

    def on_failure(self, now: float, *, concurrency: int = 1) -> None:
        """A site-level failure seen while ``concurrency`` connections were allowed."""
        if self._life is _Life.PROBING:
            self._kill(now)
            return
        if self._life is _Life.DEAD or self._cohort_limit == 0:
            return  # stragglers from before the death do not extend it
        self._cohorts += 1.0 / max(concurrency, 1)
        if self._cohorts + 1e-9 >= self._cohort_limit:
            self._kill(now)

    def on_success(self, now: float) -> None:
        self._life = _Life.ALIVE
        self._cohorts = 0.0

    def is_dead(self, now: float) -> bool:
        """True while normal traffic must not be sent (dead, or a probe is in flight)."""
        return self._life is not _Life.ALIVE

    def allow_probe(self, now: float) -> bool:
        """Claim the single probe attempt if one is due; True means send exactly one."""
        if self._life is _Life.ALIVE or now < self._until:
            return False
        self._life = _Life.PROBING
        self._until = now + self._dead_for
        return True

    def next_deadline(self) -> float | None:
        """When :meth:`allow_probe` could next return True (None while alive)."""
        return None if self._life is _Life.ALIVE else self._until

    def _kill(self, now: float) -> None:
        self._life = _Life.DEAD
        self._until = now + self._dead_for
        self._cohorts = 0.0
