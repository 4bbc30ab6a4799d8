"""Client connection limits for one SMTP listener (like Postfix's anvil).

Three limits, checked when a connection is accepted and before any greeting is sent:
total concurrent connections, concurrent connections per client, and connection rate per
client. The caller passes the time, so the gate is trivially testable; with its default
local throttle it costs a few dict operations per connection.

A client the caller declares *exempt* (one in ``relay-networks`` when the listener's
``limits-exempt-relay-networks`` is on, as Postfix exempts ``$mynetworks`` with
``smtpd_client_event_limit_exceptions``) counts towards the total but is not held to
the per-client count or rate.

Client addresses are normalised before counting (see :func:`client_key`): an IPv4-mapped
IPv6 address counts as its IPv4 address, and IPv6 clients are grouped by /64, because a
single host or subscriber is routinely given a whole /64 and can pick a fresh address from
it for every connection; per-address limits would be trivially bypassed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from outrider.policy.clients import client_key
from outrider.smtp.replies import Reply
from outrider.throttle import LocalThrottle, RateLimit, Throttle

__all__ = [
    "DEFAULT_MAX_TRACKED",
    "RATE_LIMITED",
    "TEMPORARILY_BLOCKED",
    "TOO_MANY_CONNECTIONS",
    "TOO_MANY_FROM_CLIENT",
    "BlockedPredicate",
    "ConnectionGate",
    "RateLike",
    "client_key",
]

TOO_MANY_CONNECTIONS = Reply(421, "4.7.0", "Too many connections, try again later")
TOO_MANY_FROM_CLIENT = Reply(421, "4.7.0", "Too many connections from your address")
RATE_LIMITED = Reply(421, "4.7.0", "Connection rate limit exceeded")
TEMPORARILY_BLOCKED = Reply(421, "4.7.0", "Temporarily blocked, try again later")

DEFAULT_MAX_TRACKED = 100_000


class RateLike(Protocol):
    """A configured rate such as ``60/m``: ``count`` events per ``per_seconds``."""

    @property
    def count(self) -> int: ...

    @property
    def per_seconds(self) -> float: ...


BlockedPredicate = Callable[[str, float], bool]


def _rate_params(rate: RateLike | None) -> tuple[int, float] | None:
    """(count, per_seconds), or None when the rate is unlimited."""
    if rate is None:
        return None
    count, per = int(rate.count), float(rate.per_seconds)
    if count <= 0 or not per > 0:
        raise ValueError(f"connection rate must be positive, got {count}/{per}s")
    return count, per


def _check_max(name: str, value: int) -> int:
    if value < 0:
        raise ValueError(f"{name} must be >= 0 (0 = unlimited), got {value}")
    return value


class ConnectionGate:
    """Per listener: total connections, connections per client address, connection rate per client.

    ``admit`` either counts the connection and returns None, or returns the 421 reply to send
    before closing; a refused connection is not counted and uses none of the client's rate.
    Every admitted connection must be paired with exactly one ``release``.

    The rate is a GCRA: a client may open ``count`` connections at once and then one every
    ``per_seconds / count`` seconds. The counts and rates live in ``throttle``, by default a
    private :class:`~outrider.throttle.LocalThrottle` that drops a client's rate state once it
    has drained and keeps at most ``max_tracked`` of them (least recently admitted dropped
    first). The plain methods need a local throttle; ``admit_async`` and ``release_async``
    work with any (see :mod:`outrider.throttle`).
    """

    __slots__ = (
        "_admitted",
        "_admitted_exempt",
        "_blocked",
        "_client_limit",
        "_client_prefix",
        "_local",
        "_max_connections",
        "_max_per_client",
        "_namespace",
        "_rate",
        "_rate_params",
        "_rate_prefix",
        "_refused_blocked",
        "_refused_per_client",
        "_refused_rate",
        "_refused_total",
        "_reserve",
        "_total_key",
        "_total_limit",
        "_totals",
        "throttle",
    )

    def __init__(
        self,
        *,
        max_connections: int,
        max_per_client: int,
        rate_per_client: RateLike | None,
        blocked: BlockedPredicate | None = None,
        max_tracked: int = DEFAULT_MAX_TRACKED,
        throttle: Throttle | None = None,
        namespace: str = "",
    ) -> None:
        """``throttle``: where the state lives (default: a private local one);
        ``namespace``: this gate's key prefix in a shared throttle."""
        if max_tracked <= 0:
            raise ValueError(f"max_tracked must be positive, got {max_tracked}")
        if throttle is None:
            throttle = LocalThrottle(max_keys=max_tracked)
        self.throttle: Throttle = throttle
        self._local = throttle if isinstance(throttle, LocalThrottle) else None
        # The total is this process's: with a shared throttle the caller gives each
        # process its share of max_connections. Counting it here keeps trusted clients
        # (which need nothing else) off the network.
        self._totals = self._local if self._local is not None else LocalThrottle()
        self._blocked = blocked
        self._namespace = namespace
        self._total_key = namespace + "total"
        self._client_prefix = namespace + "client "
        self._admitted = 0
        self._admitted_exempt = 0
        self._refused_total = 0
        self._refused_blocked = 0
        self._refused_per_client = 0
        self._refused_rate = 0
        self._max_connections = 0
        self._max_per_client = 0
        self._total_limit: int | None = None
        self._client_limit: int | None = None
        self._rate_params: tuple[int, float] | None = None
        self._rate: RateLimit | None = None
        self._rate_prefix = ""
        self.update(
            max_connections=max_connections,
            max_per_client=max_per_client,
            rate_per_client=rate_per_client,
        )

    @property
    def local(self) -> bool:
        """True when the plain (synchronous) methods can be used."""
        return self._local is not None

    def update(
        self, *, max_connections: int, max_per_client: int, rate_per_client: RateLike | None
    ) -> None:
        """Apply reloaded limits. Live counts are kept: lowering a limit below the current
        count refuses new connections until enough close, it never drops existing ones.
        Rate state is kept when the rate is unchanged and reset otherwise, as it is expressed
        in the old rate's units: each rate has its own keys, so a shared throttle lets the
        old ones expire, and a local one drops them now."""
        self._max_connections = _check_max("max_connections", max_connections)
        self._max_per_client = _check_max("max_per_client", max_per_client)
        self._total_limit = max_connections or None
        # Room above the total that only exempt (trusted) clients may use, so strangers
        # filling the listener cannot lock out the servers that relay through it.
        self._reserve = max(10, max_connections // 10)
        self._client_limit = max_per_client or None
        params = _rate_params(rate_per_client)
        if params == self._rate_params:
            return
        if self._rate_prefix and self._local is not None:
            self._local.forget(self._rate_prefix)
        self._rate_params = params
        if params is None:
            self._rate, self._rate_prefix = None, ""
        else:
            count, per = params
            self._rate = RateLimit(per / count, burst=count)
            self._rate_prefix = f"{self._namespace}rate {count}/{per!r} "

    # -- synchronous, local throttle ------------------------------------------------------
    def admit(self, client_ip: str, now: float, *, exempt: bool = False) -> Reply | None:
        """Count a new connection from ``client_ip`` at time ``now`` (monotonic seconds).
        An ``exempt`` client may also use a reserve of 10% (at least 10) above the total.

        Checks run cheapest and most global first: total, blocked, per client, rate; rate is
        last so that only admitted connections consume it. ``blocked`` gets ``client_ip`` as
        passed in, not normalised. An ``exempt`` client (a trusted one) counts towards the
        total, but neither the per-client limit nor the rate applies to it, and it uses no
        rate; it can be admitted here even with a shared throttle (then it is counted in
        the total only, and released with ``release(client_ip, exempt=True)``).
        """
        local = self._local
        if local is None and not exempt:
            raise TypeError("ConnectionGate.admit needs a LocalThrottle; await admit_async")
        totals = self._totals
        total_key = self._total_key
        limit = self._total_limit
        if exempt and limit is not None:
            limit += self._reserve
        if not totals.acquire_now(total_key, limit):
            self._refused_total += 1
            return TOO_MANY_CONNECTIONS
        if self._blocked is not None and self._blocked(client_ip, now):
            totals.release_now(total_key)
            self._refused_blocked += 1
            return TEMPORARILY_BLOCKED
        if exempt or local is None:
            if local is not None:  # counted per client too, for count() and stats
                local.acquire_now(self._client_prefix + client_key(client_ip), None)
            self._admitted += 1
            self._admitted_exempt += 1
            return None
        key = client_key(client_ip)
        count_key = self._client_prefix + key
        if not local.acquire_now(count_key, self._client_limit):
            local.release_now(total_key)
            self._refused_per_client += 1
            return TOO_MANY_FROM_CLIENT
        rate = self._rate
        if rate is not None and local.rate_now(self._rate_prefix + key, rate, now) > 0.0:
            local.release_now(count_key)
            local.release_now(total_key)
            self._refused_rate += 1
            return RATE_LIMITED
        self._admitted += 1
        return None

    def release(self, client_ip: str, *, exempt: bool = False) -> None:
        """Uncount a connection ``admit`` accepted; unknown clients are ignored.
        ``exempt``: it was admitted as exempt (needed with a shared throttle)."""
        local = self._local
        if local is None:
            if not exempt:
                raise TypeError("ConnectionGate.release needs a LocalThrottle; await release_async")
            self._totals.release_now(self._total_key)
            return
        if local.release_now(self._client_prefix + client_key(client_ip)):
            local.release_now(self._total_key)

    @property
    def total(self) -> int:
        """Connections counted in this process's total."""
        return self._totals.held_now(self._total_key)

    def count(self, client_ip: str) -> int:
        """Live connections counted under ``client_ip``'s key (its /64 for IPv6)."""
        return self._sync().held_now(self._client_prefix + client_key(client_ip))

    def purge(self, now: float) -> int:
        """Drop every drained state of a local throttle now; returns how many were dropped.
        (A shared throttle expires its states by itself: 0.)"""
        return 0 if self._local is None else self._local.purge(now)

    # -- awaitable, any throttle ----------------------------------------------------------
    async def admit_async(
        self, client_ip: str, now: float, *, exempt: bool = False
    ) -> Reply | None:
        """:meth:`admit` for any throttle: the same checks in the same order."""
        if exempt:
            return self.admit(client_ip, now, exempt=True)
        throttle = self.throttle
        totals = self._totals
        total_key = self._total_key
        if not totals.acquire_now(total_key, self._total_limit):
            self._refused_total += 1
            return TOO_MANY_CONNECTIONS
        if self._blocked is not None and self._blocked(client_ip, now):
            totals.release_now(total_key)
            self._refused_blocked += 1
            return TEMPORARILY_BLOCKED
        key = client_key(client_ip)
        count_key = self._client_prefix + key
        rate = self._rate
        if rate is None:
            refused = 0 if await throttle.acquire(count_key, self._client_limit) else 1
        else:  # one round trip for both
            refused = await throttle.acquire_within_rate(
                count_key, self._client_limit, self._rate_prefix + key, rate, now
            )
        if refused:
            totals.release_now(total_key)
            if refused == 1:
                self._refused_per_client += 1
                return TOO_MANY_FROM_CLIENT
            self._refused_rate += 1
            return RATE_LIMITED
        self._admitted += 1
        return None

    async def release_async(self, client_ip: str) -> None:
        """Uncount a connection ``admit_async`` accepted (not an exempt one)."""
        if self._local is not None:
            self.release(client_ip)
            return
        # The total is given back whatever the shared answer: a throttle that was
        # unreachable at admission said yes without counting.
        await self.throttle.release(self._client_prefix + client_key(client_ip))
        self._totals.release_now(self._total_key)

    # -- status ---------------------------------------------------------------------------
    def stats(self) -> dict[str, int]:
        """Counters for the status API; admissions and refusals are cumulative since the
        gate was built (``admitted`` includes ``admitted_exempt``).

        ``connections`` is this process's total; ``clients`` and ``rate_tracked_clients``
        are read from a local throttle of the gate's own (absent with a shared throttle)."""
        stats: dict[str, int] = {"connections": self._totals.held_now(self._total_key)}
        if self._local is not None:
            total = stats["connections"]
            sizes = self._local.sizes()
            stats["clients"] = sizes["counts"] - (1 if total else 0)
            stats["rate_tracked_clients"] = sizes["rates"]
        stats.update(
            max_connections=self._max_connections,
            max_per_client=self._max_per_client,
            admitted=self._admitted,
            admitted_exempt=self._admitted_exempt,
            refused_total=self._refused_total,
            refused_blocked=self._refused_blocked,
            refused_per_client=self._refused_per_client,
            refused_rate=self._refused_rate,
        )
        return stats

    def _sync(self) -> LocalThrottle:
        if self._local is None:
            raise TypeError("this ConnectionGate method needs a LocalThrottle")
        return self._local
