"""Backoff mode per queue and per-destination source-IP disabling (PowerMTA semantics).

A queue enters backoff when a reply matches a ``mode=backoff`` pattern and then runs on
the ``backoff-*`` limits. Every further matching reply restarts the timer, as PowerMTA
does, so a destination that keeps complaining keeps the queue in backoff; the queue
returns to normal ``backoff-to-normal-after`` seconds after the *last* match, after a
delivery when ``backoff-to-normal-after-delivery`` is set, or by hand.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from outrider.policy.rate import RateLike

__all__ = [
    "BackoffPolicyLike",
    "BackoffState",
    "DisabledSources",
    "EffectiveLimits",
    "Mode",
    "SourceDisabled",
    "Transition",
    "effective_limits",
]


class Mode(enum.Enum):
    NORMAL = "normal"
    BACKOFF = "backoff"


@dataclass(frozen=True, slots=True)
class Transition:
    """A mode change, for the log and the accounting file."""

    from_mode: Mode
    to_mode: Mode
    reason: str  # "pattern", "timer", "delivery" or "manual"
    rule: str | None  # regex source of the matching pattern, if any
    reply: str | None  # the reply that matched, if any
    at: float


class BackoffState:
    """Mode of one queue. ``since`` is the time of the last entry, refresh or exit
    (0.0 before the first transition)."""

    __slots__ = ("mode", "since")

    def __init__(self) -> None:
        self.mode = Mode.NORMAL
        self.since = 0.0

    @property
    def in_backoff(self) -> bool:
        return self.mode is Mode.BACKOFF

    def enter(
        self, now: float, *, rule: str | None, reply: str | None, reason: str = "pattern"
    ) -> Transition | None:
        """Enter backoff; if already there, restart the timer and return None."""
        if self.mode is Mode.BACKOFF:
            if now > self.since:
                self.since = now
            return None
        self.mode = Mode.BACKOFF
        self.since = now
        return Transition(Mode.NORMAL, Mode.BACKOFF, reason, rule, reply, now)

    def on_delivery(self, now: float, *, to_normal_after_delivery: bool) -> Transition | None:
        if not to_normal_after_delivery:
            return None
        return self._to_normal(now, "delivery", None, None)

    def tick(self, now: float, *, to_normal_after: float | None) -> Transition | None:
        """Return to normal once ``to_normal_after`` seconds passed since the last match."""
        deadline = self.next_deadline(to_normal_after)
        if deadline is None or now < deadline:
            return None
        return self._to_normal(now, "timer", None, None)

    def leave(
        self,
        now: float,
        *,
        reason: str = "manual",
        rule: str | None = None,
        reply: str | None = None,
    ) -> Transition | None:
        """Back to normal by hand or by a ``mode=normal`` pattern (``reason="pattern"``)."""
        return self._to_normal(now, reason, rule, reply)

    def next_deadline(self, to_normal_after: float | None) -> float | None:
        """When :meth:`tick` would leave backoff (None: not in backoff, or never)."""
        if self.mode is not Mode.BACKOFF or to_normal_after is None:
            return None
        return self.since + to_normal_after

    def _to_normal(
        self, now: float, reason: str, rule: str | None, reply: str | None
    ) -> Transition | None:
        if self.mode is not Mode.BACKOFF:
            return None
        self.mode = Mode.NORMAL
        self.since = now
        return Transition(Mode.BACKOFF, Mode.NORMAL, reason, rule, reply, now)


class BackoffPolicyLike(Protocol):
    """The shaping fields of a domain policy (the config's ``DomainPolicy`` qualifies).

    ``backoff_retry_after`` may be one delay (PowerMTA) or a schedule.
    """

    @property
    def max_msg_rate(self) -> RateLike | None: ...
    @property
    def max_smtp_out(self) -> int: ...
    @property
    def retry_after(self) -> tuple[float, ...]: ...
    @property
    def backoff_max_msg_rate(self) -> RateLike | None: ...
    @property
    def backoff_max_smtp_out(self) -> int: ...
    @property
    def backoff_retry_after(self) -> float | tuple[float, ...]: ...


@dataclass(frozen=True, slots=True)
class EffectiveLimits:
    max_msg_rate: RateLike | None  # None: unlimited
    max_smtp_out: int
    retry_after: tuple[float, ...]


def _per_second(rate: RateLike | None) -> float:
    if rate is None:
        return float("inf")
    return rate.count / rate.per_seconds


def effective_limits(policy: BackoffPolicyLike, mode: Mode) -> EffectiveLimits:
    """The limits a queue runs on in ``mode``.

    In backoff the ``backoff-*`` values replace the normal ones, except that backoff is
    never looser than normal: a misconfigured backoff rate or connection count above the
    normal one is capped at the normal one.
    """
    if mode is Mode.NORMAL:
        return EffectiveLimits(policy.max_msg_rate, policy.max_smtp_out, tuple(policy.retry_after))
    rate = policy.backoff_max_msg_rate
    if _per_second(rate) > _per_second(policy.max_msg_rate):
        rate = policy.max_msg_rate
    retry = policy.backoff_retry_after
    schedule = (float(retry),) if isinstance(retry, int | float) else tuple(retry)
    return EffectiveLimits(
        rate, max(1, min(policy.backoff_max_smtp_out, policy.max_smtp_out)), schedule
    )


@dataclass(frozen=True, slots=True)
class SourceDisabled:
    """A virtual MTA (source IP) taken out of use for one destination."""

    vmta: str
    at: float
    until: float
    rule: str | None
    reply: str | None


class DisabledSources:
    """Source IPs disabled for one destination by ``disable-source-ip`` patterns."""

    __slots__ = ("_until",)

    def __init__(self) -> None:
        self._until: dict[str, float] = {}

    def disable(
        self, vmta: str, now: float, *, until: float, rule: str | None, reply: str | None
    ) -> SourceDisabled | None:
        """Disable ``vmta`` until ``until``. Returns the record when newly disabled; a
        repeat match only extends the time and returns None (like backoff refreshes)."""
        current = self._until.get(vmta)
        if current is not None and current > now:
            if until > current:
                self._until[vmta] = until
            return None
        self._until[vmta] = until
        return SourceDisabled(vmta, now, until, rule, reply)

    def enable(self, vmta: str) -> bool:
        """Re-enable by hand; True if it was disabled."""
        return self._until.pop(vmta, None) is not None

    def is_disabled(self, vmta: str, now: float) -> bool:
        until = self._until.get(vmta)
        return until is not None and until > now

    def enabled(self, vmtas: Iterable[str], now: float) -> list[str]:
        if not self._until:
            return list(vmtas)
        return [v for v in vmtas if not self.is_disabled(v, now)]

    def disabled(self, now: float) -> dict[str, float]:
        """Currently disabled sources and when each comes back."""
        return {v: u for v, u in self._until.items() if u > now}

    def expire(self, now: float) -> list[str]:
        """Forget sources whose time is up and return them (to log their return)."""
        done = [v for v, u in self._until.items() if u <= now]
        for vmta in done:
            del self._until[vmta]
        return done

    def next_deadline(self) -> float | None:
        """Earliest time a source comes back (may be past until :meth:`expire` runs)."""
        return min(self._until.values(), default=None)
