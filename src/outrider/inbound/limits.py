"""Client connection limits for one SMTP listener (like Postfix's anvil, but in-process).

Three limits, checked when a connection is accepted and before any greeting is sent:
total concurrent connections, concurrent connections per client, and connection rate per
client. Pure logic: the caller passes the time, so the gate is trivially testable and costs
a few dict operations per connection.

Client addresses are normalised before counting (see :func:`client_key`): an IPv4-mapped
IPv6 address counts as its IPv4 address, and IPv6 clients are grouped by /64, because a
single host or subscriber is routinely given a whole /64 and can pick a fresh address from
it for every connection; per-address limits would be trivially bypassed.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from outrider.policy.clients import client_key
from outrider.smtp.replies import Reply

TOO_MANY_CONNECTIONS = Reply(421, "4.7.0", "Too many connections, try again later")
TOO_MANY_FROM_CLIENT = Reply(421, "4.7.0", "Too many connections from your address")
RATE_LIMITED = Reply(421, "4.7.0", "Connection rate limit exceeded")
TEMPORARILY_BLOCKED = Reply(421, "4.7.0", "Temporarily blocked, try again later")

DEFAULT_MAX_TRACKED = 100_000
# Expired rate states dropped per admit(). Each admit adds at most one state, so any value
# above 1 keeps up with the arrival rate; a small bound keeps a single admit() cheap after
# a long idle spell.
_PURGE_PER_ADMIT = 8
# Slack for float rounding in the GCRA comparison (emission intervals like 1/3 s).
_EPSILON = 1e-9


class RateLike(Protocol):
    """A configured rate such as ``60/m``: ``count`` events per ``per_seconds``."""

    @property
    def count(self) -> int: ...

    @property
    def per_seconds(self) -> float: ...


BlockedPredicate = Callable[[str, float], bool]


def _rate_params(rate: RateLike | None) -> tuple[float, float] | None:
    """(emission interval, window) for GCRA, or None when the rate is unlimited."""
    if rate is None:
        return None
    count, per = int(rate.count), float(rate.per_seconds)
    if count <= 0 or not per > 0:
        raise ValueError(f"connection rate must be positive, got {count}/{per}s")
    return per / count, per


def _check_max(name: str, value: int) -> int:
    if value < 0:
        raise ValueError(f"{name} must be >= 0 (0 = unlimited), got {value}")
    return value


class ConnectionGate:
    """Per listener: total connections, connections per client address, connection rate per client.

    ``admit`` either counts the connection and returns None, or returns the 421 reply to send
    before closing; a refused connection is not counted and uses none of the client's rate.
    Every admitted connection must be paired with exactly one ``release``.

    The rate is a GCRA (generic cell rate algorithm): a client may open ``count`` connections
    at once and then one every ``per_seconds / count`` seconds. Its state is a single float per
    client (the theoretical arrival time), dropped once it lies in the past, since a drained
    state is indistinguishable from none; so at most the clients seen within the last window
    are tracked, further capped at ``max_tracked`` (least recently seen dropped first).
    """

    __slots__ = (
        "_admitted",
        "_blocked",
        "_counts",
        "_emission",
        "_max_connections",
        "_max_per_client",
        "_max_tracked",
        "_rate",
        "_refused_blocked",
        "_refused_per_client",
        "_refused_rate",
        "_refused_total",
        "_tat",
        "_total",
        "_window",
    )

    def __init__(
        self,
        *,
        max_connections: int,
        max_per_client: int,
        rate_per_client: RateLike | None,
        blocked: BlockedPredicate | None = None,
        max_tracked: int = DEFAULT_MAX_TRACKED,
    ) -> None:
        if max_tracked <= 0:
            raise ValueError(f"max_tracked must be positive, got {max_tracked}")
        self._blocked = blocked
        self._max_tracked = max_tracked
        self._counts: dict[str, int] = {}
        self._total = 0
        # Theoretical arrival time per client, least recently admitted first.
        self._tat: OrderedDict[str, float] = OrderedDict()
        self._admitted = 0
        self._refused_total = 0
        self._refused_blocked = 0
        self._refused_per_client = 0
        self._refused_rate = 0
        self._max_connections = 0
        self._max_per_client = 0
        self._rate: tuple[float, float] | None = None
        self._emission = 0.0
        self._window = 0.0
        self.update(
            max_connections=max_connections,
            max_per_client=max_per_client,
            rate_per_client=rate_per_client,
        )

    def update(
        self, *, max_connections: int, max_per_client: int, rate_per_client: RateLike | None
    ) -> None:
        """Apply reloaded limits. Live counts are kept: lowering a limit below the current
        count refuses new connections until enough close, it never drops existing ones.
        Rate state is kept when the rate is unchanged and reset otherwise, as it is expressed
        in the old rate's units."""
        self._max_connections = _check_max("max_connections", max_connections)
        self._max_per_client = _check_max("max_per_client", max_per_client)
        rate = _rate_params(rate_per_client)
        if rate != self._rate:
            self._tat.clear()
        self._rate = rate
        if rate is not None:
            self._emission, self._window = rate

    def admit(self, client_ip: str, now: float) -> Reply | None:
        """Count a new connection from ``client_ip`` at time ``now`` (monotonic seconds).

        Checks run cheapest and most global first: total, blocked, per client, rate; rate is
        last so that only admitted connections consume it. ``blocked`` gets ``client_ip`` as
        passed in, not normalised.
        """
        if self._max_connections and self._total >= self._max_connections:
            self._refused_total += 1
            return TOO_MANY_CONNECTIONS
        if self._blocked is not None and self._blocked(client_ip, now):
            self._refused_blocked += 1
            return TEMPORARILY_BLOCKED
        key = client_key(client_ip)
        current = self._counts.get(key, 0)
        if self._max_per_client and current >= self._max_per_client:
            self._refused_per_client += 1
            return TOO_MANY_FROM_CLIENT
        if self._rate is not None and not self._take_rate(key, now):
            self._refused_rate += 1
            return RATE_LIMITED
        self._counts[key] = current + 1
        self._total += 1
        self._admitted += 1
        return None

    def release(self, client_ip: str) -> None:
        """Uncount a connection ``admit`` accepted; unknown clients are ignored."""
        key = client_key(client_ip)
        current = self._counts.get(key, 0)
        if current <= 0:
            return
        if current == 1:
            del self._counts[key]
        else:
            self._counts[key] = current - 1
        self._total -= 1

    def _take_rate(self, key: str, now: float) -> bool:
        tat = self._tat
        # Amortised purge: the front holds the least recently admitted clients.
        for _ in range(_PURGE_PER_ADMIT):
            if not tat:
                break
            oldest = next(iter(tat))
            if tat[oldest] > now:
                break
            del tat[oldest]
        previous = tat.get(key)
        new_tat = (now if previous is None or previous < now else previous) + self._emission
        if new_tat - now > self._window + _EPSILON:
            return False
        if previous is None:
            if len(tat) >= self._max_tracked:
                tat.popitem(last=False)
            tat[key] = new_tat
        else:
            tat[key] = new_tat
            tat.move_to_end(key)
        return True

    def purge(self, now: float) -> int:
        """Drop every rate state that has drained by ``now``; returns how many were dropped."""
        tat = self._tat
        expired = [key for key, value in tat.items() if value <= now]
        for key in expired:
            del tat[key]
        return len(expired)

    @property
    def total(self) -> int:
        return self._total

    def count(self, client_ip: str) -> int:
        """Live connections counted under ``client_ip``'s key (its /64 for IPv6)."""
        return self._counts.get(client_key(client_ip), 0)

    def stats(self) -> dict[str, int]:
        """Counters for the status API; refusals are cumulative since the gate was built."""
        return {
            "connections": self._total,
            "clients": len(self._counts),
            "rate_tracked_clients": len(self._tat),
            "max_connections": self._max_connections,
            "max_per_client": self._max_per_client,
            "admitted": self._admitted,
            "refused_total": self._refused_total,
            "refused_blocked": self._refused_blocked,
            "refused_per_client": self._refused_per_client,
            "refused_rate": self._refused_rate,
        }
