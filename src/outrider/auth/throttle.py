"""Failed-AUTH throttling per client: growing delays, then a block. ``now`` is passed in.

Each failed AUTH makes the next failure reply wait longer (``first_delay``,
doubling, capped at ``max_delay``), which slows a guessing client without
hurting a user who mistyped once. ``max_failures`` failures within ``window``
seconds block the client for ``block_time`` seconds. A success forgets the
client's failures.

Attempts are counted *before* the password is verified (:meth:`begin_attempt_async`,
then :meth:`end_attempt_async` with the outcome): a client that fires many AUTH
commands at once on parallel connections gets at most ``max_failures`` of them
verified, and at most ``max_concurrent`` in progress at a time, instead of every guess
being checked before the first failure is recorded.

IPv6 clients are tracked per /64, the smallest block a single subscriber is
normally given; otherwise one host could rotate through 2**64 addresses.

This class is the policy; the failures and blocks live in a
:class:`~outrider.throttle.Throttle` (by default a private
:class:`~outrider.throttle.LocalThrottle` holding at most ``max_clients`` clients of
each kind, least recently failed dropped first). The plain methods need a local
throttle; the ``*_async`` ones work with any (see :mod:`outrider.throttle`).
"""

from __future__ import annotations

import math

from outrider.policy.clients import client_key
from outrider.throttle import LocalThrottle, Throttle

__all__ = ["AuthThrottle", "client_key"]


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
        max_concurrent: int = 3,
        throttle: Throttle | None = None,
        namespace: str = "",
    ) -> None:
        """``throttle``: where the state lives (default: a private local one);
        ``namespace``: this policy's key prefix in a shared throttle."""
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
        self.max_concurrent = max_concurrent  # AUTH exchanges in progress per client; 0: any
        if throttle is None:
            throttle = LocalThrottle(max_keys=max_clients)
        self.throttle: Throttle = throttle
        self._local = throttle if isinstance(throttle, LocalThrottle) else None
        self._prefix = namespace
        self._busy_prefix = namespace + "busy "

    @property
    def local(self) -> bool:
        """True when the plain (synchronous) methods can be used."""
        return self._local is not None

    def __len__(self) -> int:
        """Clients with recorded failures or a block (local throttle only)."""
        sizes = self._sync("__len__").sizes()
        return sizes["events"] + sizes["blocks"]

    # -- synchronous, local throttle ------------------------------------------------------
    def delay_for(self, client_ip: str, now: float) -> float:
        """Seconds to hold this client's AUTH failure reply.

        Call after :meth:`record_failure`: one recent failure gives ``first_delay``,
        each further one doubles it up to ``max_delay``; a blocked client gets
        ``max_delay``; no recent failures gives 0.
        """
        local = self._sync("delay_for")
        key = self._prefix + client_key(client_ip)
        if local.blocked_until_now(key, now) is not None:
            return self.max_delay
        return self._delay(local.count_now(key, self.window, now))

    def record_failure(self, client_ip: str, now: float) -> bool:
        """Count a failed AUTH; True when this failure starts a block."""
        local = self._sync("record_failure")
        key = self._prefix + client_key(client_ip)
        if local.blocked_until_now(key, now) is not None:
            return False  # already blocked; the block is not extended by retries
        if local.add_event_now(key, self.window, now) < self.max_failures:
            return False
        local.clear_events_now(key)  # after the block the count starts afresh
        local.block_now(key, now + self.block_time, now)
        return True

    def record_success(self, client_ip: str, now: float) -> None:
        """Forget the client's failures (an active block is kept)."""
        self._sync("record_success").clear_events_now(self._prefix + client_key(client_ip))

    def is_blocked(self, client_ip: str, now: float) -> bool:
        local = self._sync("is_blocked")
        return local.blocked_until_now(self._prefix + client_key(client_ip), now) is not None

    def blocked_until(self, client_ip: str, now: float | None = None) -> float | None:
        """When the client's block ends; None if it is not blocked at ``now``
        (without ``now``: any block still remembered)."""
        local = self._sync("blocked_until")
        key = self._prefix + client_key(client_ip)
        return local.blocked_until_now(key, -math.inf if now is None else now)

    # -- awaitable, any throttle ----------------------------------------------------------
    async def delay_for_async(self, client_ip: str, now: float) -> float:
        key = self._prefix + client_key(client_ip)
        if await self.throttle.blocked_until(key, now) is not None:
            return self.max_delay
        return self._delay(await self.throttle.count(key, self.window, now))

    async def record_failure_async(self, client_ip: str, now: float) -> bool:
        throttle = self.throttle
        key = self._prefix + client_key(client_ip)
        if await throttle.blocked_until(key, now) is not None:
            return False
        if await throttle.add_event(key, self.window, now) < self.max_failures:
            return False
        await throttle.clear_events(key)
        await throttle.block(key, now + self.block_time, now)
        return True

    async def record_success_async(self, client_ip: str, now: float) -> None:
        await self.throttle.clear_events(self._prefix + client_key(client_ip))

    async def is_blocked_async(self, client_ip: str, now: float) -> bool:
        key = self._prefix + client_key(client_ip)
        return await self.throttle.blocked_until(key, now) is not None

    async def begin_attempt_async(self, client_ip: str, now: float) -> str | None:
        """Count an AUTH attempt before its credentials are checked.

        None: go on, and call :meth:`end_attempt_async` exactly once afterwards. Else
        why not, with nothing to end: ``"blocked"`` (blocked already, or this attempt is
        one more than ``max_failures`` within the window: a block starts) or ``"busy"``
        (``max_concurrent`` attempts of this client are in progress)."""
        throttle = self.throttle
        key = self._prefix + client_key(client_ip)
        if await throttle.blocked_until(key, now) is not None:
            return "blocked"
        busy_key = self._busy_prefix + client_key(client_ip)
        if self.max_concurrent and not await throttle.acquire(busy_key, self.max_concurrent):
            return "busy"
        if await throttle.add_event(key, self.window, now) > self.max_failures:
            if self.max_concurrent:
                await throttle.release(busy_key)
            await throttle.clear_events(key)
            await throttle.block(key, now + self.block_time, now)
            return "blocked"
        return None

    async def end_attempt_async(self, client_ip: str, now: float, success: bool | None) -> bool:
        """The attempt :meth:`begin_attempt_async` let through ended: ``success`` True
        forgets the client's failures, False keeps the attempt counted as a failure,
        None (abandoned) keeps it counted without starting a block. True when this
        failure starts a block (``max_failures`` within the window)."""
        throttle = self.throttle
        ckey = client_key(client_ip)
        if self.max_concurrent:
            await throttle.release(self._busy_prefix + ckey)
        key = self._prefix + ckey
        if success:
            await throttle.clear_events(key)
            return False
        if success is None or await throttle.blocked_until(key, now) is not None:
            return False
        if await throttle.count(key, self.window, now) < self.max_failures:
            return False
        await throttle.clear_events(key)
        await throttle.block(key, now + self.block_time, now)
        return True

    # -- helpers --------------------------------------------------------------------------
    def _delay(self, failures: int) -> float:
        if failures == 0:
            return 0.0
        # Cap the exponent first: 2.0**count overflows long before count is bounded.
        return min(self.first_delay * 2.0 ** min(failures - 1, 62), self.max_delay)

    def _sync(self, method: str) -> LocalThrottle:
        if self._local is None:
            raise TypeError(f"AuthThrottle.{method} needs a LocalThrottle; await the _async form")
        return self._local
