"""Failed-AUTH throttling per client: growing delays, then a block. Pure; ``now`` is passed in.

Each failed AUTH makes the next failure reply wait longer (``first_delay``,
doubling, capped at ``max_delay``), which slows a guessing client without
hurting a user who mistyped once. ``max_failures`` failures within ``window``
seconds block the client for ``block_time`` seconds. A success forgets the
client's failures.

IPv6 clients are tracked per /64, the smallest block a single subscriber is
normally given; otherwise one host could rotate through 2**64 addresses.
Memory is bounded: entries are kept in least-recently-touched order, stale
ones are dropped as new failures arrive, and past ``max_clients`` the oldest
entry is evicted.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

from outrider.policy.clients import client_key

__all__ = ["AuthThrottle", "client_key"]


@dataclass(slots=True)
class _Client:
    failures: deque[float] = field(default_factory=deque)
    blocked_until: float | None = None
    touched: float = 0.0


class AuthThrottle:
    def __init__(
        self,
        *,
        max_failures: int = 5,
        window: float = 600.0,
        block_time: float = 900.0,
        first_delay: float = 1.0,
        max_delay: float = 10.0,
        max_clients: int = 100_000,
    ) -> None:
        if max_failures < 1 or max_clients < 1:
            raise ValueError("max_failures and max_clients must be at least 1")
        if min(window, block_time, first_delay, max_delay) < 0:
            raise ValueError("durations must not be negative")
        self.max_failures = max_failures
        self.window = window
        self.block_time = block_time
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.max_clients = max_clients
        self._clients: OrderedDict[str, _Client] = OrderedDict()

    def __len__(self) -> int:
        return len(self._clients)

    def delay_for(self, client_ip: str, now: float) -> float:
        """Seconds to hold this client's AUTH failure reply.

        Call after :meth:`record_failure`: one recent failure gives ``first_delay``,
        each further one doubles it up to ``max_delay``; a blocked client gets
        ``max_delay``; no recent failures gives 0.
        """
        client = self._clients.get(client_key(client_ip))
        if client is None:
            return 0.0
        if client.blocked_until is not None and now < client.blocked_until:
            return self.max_delay
        count = self._recent_failures(client, now)
        if count == 0:
            return 0.0
        # Cap the exponent first: 2.0**count overflows long before count is bounded.
        return min(self.first_delay * 2.0 ** min(count - 1, 62), self.max_delay)

    def record_failure(self, client_ip: str, now: float) -> bool:
        """Count a failed AUTH; True when this failure starts a block."""
        key = client_key(client_ip)
        self._evict_stale(now)
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = _Client()
            if len(self._clients) > self.max_clients:
                self._clients.popitem(last=False)
        else:
            self._clients.move_to_end(key)
        client.touched = now
        if client.blocked_until is not None and now < client.blocked_until:
            return False  # already blocked; the block is not extended by retries
        client.blocked_until = None
        self._recent_failures(client, now)
        client.failures.append(now)
        if len(client.failures) >= self.max_failures:
            client.failures.clear()
            client.blocked_until = now + self.block_time
            return True
        return False

    def record_success(self, client_ip: str, now: float) -> None:
        """Forget the client's failures (an active block is kept)."""
        key = client_key(client_ip)
        client = self._clients.get(key)
        if client is None:
            return
        if client.blocked_until is not None and now < client.blocked_until:
            client.failures.clear()
        else:
            del self._clients[key]

    def is_blocked(self, client_ip: str, now: float) -> bool:
        client = self._clients.get(client_key(client_ip))
        if client is None or client.blocked_until is None:
            return False
        if now < client.blocked_until:
            return True
        client.blocked_until = None
        return False

    def blocked_until(self, client_ip: str) -> float | None:
        """When the client's current or most recent block ends, None if it was never blocked."""
        client = self._clients.get(client_key(client_ip))
        return None if client is None else client.blocked_until

    def _recent_failures(self, client: _Client, now: float) -> int:
        failures = client.failures
        horizon = now - self.window
        while failures and failures[0] <= horizon:
            failures.popleft()
        return len(failures)

    def _evict_stale(self, now: float) -> None:
        """Drop least-recently-touched entries that no longer hold failures or a block."""
        keep_for = max(self.window, self.block_time)
        clients = self._clients
        while clients:
            key, client = next(iter(clients.items()))
            if now - client.touched < keep_for:
                return
            if client.blocked_until is not None and now < client.blocked_until:
                return
            del clients[key]
