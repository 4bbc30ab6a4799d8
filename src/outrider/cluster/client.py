"""The connection to Redis: every call bounded, failures turned into a state, not errors.

A call that fails or takes longer than ``[cluster] timeout`` returns None and marks
Redis down; while it is down no decision waits for it (callers use their fallback at
once) and the maintenance loop tries again every second. The maintenance loop is also
the node registry: each round writes this node's heartbeat key (with a TTL of three
rounds) and its entry in the live-node set, and reads how many nodes are live, the
divisor of the fallback limits. Going down and coming back are logged once each.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from outrider.cluster import scripts

__all__ = ["ClusterClient", "ClusterOptions"]

log = logging.getLogger("outrider.cluster")

DOWN_RETRY = 1.0  # seconds between pings while Redis is down


@dataclass(frozen=True, slots=True)
class ClusterOptions:
    """What the client needs from ``[cluster]`` (a plain record, easy to build in tests)."""

    url: str
    node: str = socket.gethostname()
    prefix: str = "outrider:"
    password: str | None = None
    tls_ca_file: str | None = None
    lease_time: float = 15.0
    timeout: float = 0.2
    # False for a receiver process's client: it pings instead of registering as a node
    register: bool = True


class ClusterClient:
    """One node's Redis connection, its up/down state and its registration."""

    def __init__(self, options: ClusterOptions) -> None:
        self.options = options
        self.node = options.node
        self.prefix = options.prefix
        kwargs: dict[str, Any] = {
            "socket_timeout": options.timeout,
            "socket_connect_timeout": options.timeout,
            "retry_on_timeout": False,
            "health_check_interval": 0,
            "decode_responses": True,
        }
        if options.password is not None:
            kwargs["password"] = options.password
        if options.tls_ca_file is not None:
            kwargs["ssl_ca_certs"] = options.tls_ca_file
        self.redis: aioredis.Redis = aioredis.Redis.from_url(options.url, **kwargs)
        self.up = False
        self.ever_up = False
        self.live_nodes = 1  # last known, at least 1
        self.failures = 0  # calls that failed or timed out
        self.since = time.time()  # when ``up`` last changed
        self.last_error = ""
        self._scripts: dict[str, AsyncScript] = {}
        self._task: asyncio.Task[None] | None = None
        self._rounds: list[Callable[[], Awaitable[None]]] = []

    # -- calls ---------------------------------------------------------------------------
    def script(self, name: str) -> AsyncScript:
        found = self._scripts.get(name)
        if found is None:
            found = self._scripts[name] = self.redis.register_script(getattr(scripts, name))
        return found

    async def run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any | None:
        """Run script ``name``; None when Redis is down, fails or is too slow."""
        if not self.up:
            return None
        return await self.call(self.script(name)(keys=list(keys), args=list(args)))

    async def call(self, work: Awaitable[Any]) -> Any | None:
        """Await ``work`` within the timeout; None (and Redis marked down) on failure."""
        try:
            result = await asyncio.wait_for(work, self.options.timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # connection refused, timeout, script error: all "down"
            self._down(exc)
            return None
        return result

    def _down(self, exc: BaseException) -> None:
        self.failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if self.up:
            self.up = False
            self.since = time.time()
            log.warning(
                "cluster: Redis unreachable (%s); local limits / %d node(s) until it is back",
                self.last_error,
                self.live_nodes,
            )

    def _recovered(self) -> None:
        if not self.up:
            self.up = True
            self.since = time.time()
            if self.ever_up:
                log.warning("cluster: Redis is back; shared limits in force again")
            else:
                log.info("cluster: connected to Redis as node %s", self.node)
            self.ever_up = True

    # -- node registry -------------------------------------------------------------------
    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    async def heartbeat(self) -> bool:
        """Register this node as live; True when Redis answered (and is now up)."""
        ttl = int(self.options.lease_time * 1000)
        if not self.up:
            # Pooled connections from before the outage would each fail once more (a
            # restarted Redis closed them): start afresh.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    self.redis.connection_pool.disconnect(), self.options.timeout
                )
        info = json.dumps({"node": self.node, "at": time.time()})
        keys = [self.key("node", self.node), self.key("nodes")]
        try:
            if self.options.register:
                live = await asyncio.wait_for(
                    self.script("HEARTBEAT")(keys=keys, args=[self.node, ttl, info]),
                    self.options.timeout,
                )
            else:
                await asyncio.wait_for(self.redis.ping(), self.options.timeout)
                live = self.live_nodes
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._down(exc)
            if not self.ever_up and self.failures == 1:
                log.warning(
                    "cluster: Redis unreachable at start (%s); local limits until it answers",
                    self.last_error,
                )
            return False
        self.live_nodes = max(1, int(live))
        self._recovered()
        return True

    def every_round(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run ``work`` after each successful heartbeat (lease renewal)."""
        self._rounds.append(work)

    async def start(self) -> None:
        """First heartbeat (bounded by the timeout), then the maintenance loop."""
        await self.heartbeat()
        self._task = asyncio.get_running_loop().create_task(self._maintain(), name="cluster")

    async def _maintain(self) -> None:
        interval = self.options.lease_time / 3
        while True:
            await asyncio.sleep(interval if self.up else min(interval, DOWN_RETRY))
            try:
                if await self.heartbeat():
                    for work in self._rounds:
                        await work()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("cluster: maintenance round failed")

    async def stop(self) -> None:
        """Leave the live-node set and close the connection (bounded)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.up and self.options.register:
            pipe = self.redis.pipeline(transaction=False)
            pipe.zrem(self.key("nodes"), self.node)
            pipe.delete(self.key("node", self.node))
            await self.call(pipe.execute())
        with contextlib.suppress(Exception):  # closing a dead connection: nothing to save
            await asyncio.wait_for(self.redis.aclose(), self.options.timeout)

    def status(self) -> dict[str, Any]:
        """For ``show status`` and /metrics."""
        return {
            "node": self.node,
            "redis_up": self.up,
            "fallback": not self.up,
            "live_nodes": self.live_nodes,
            "since": self.since,
            "failures": self.failures,
            "last_error": self.last_error,
        }
