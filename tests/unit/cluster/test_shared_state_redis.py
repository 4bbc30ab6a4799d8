"""Cluster-wide operator state against a real redis-server: a change published by one
node is applied by another, the newest change wins, and a Redis that lost its data is
filled again from the nodes' stamps. The operator is a stand-in recording the calls."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from itertools import count
from typing import Any

import pytest

from outrider.cluster.shared_state import SharedControl
from outrider.queue.control_state import ControlState
from tests.support.redis_server import RedisServer, redis_server, redis_throttle

__all__ = ["redis_server"]

_PREFIXES = count(1)


class _Ctx:
    def __init__(self) -> None:
        self.control = ControlState()
        self.share: Callable[[str, str, bool, float], None] | None = None
        self.saved = 0

    def shared(self, kind: str, name: str, on: bool, value: float = 0.0) -> None:
        if self.share is not None:
            self.share(kind, name, on, value)

    def save_control(self) -> None:
        self.saved += 1

    def spawn(self, coro: Any, name: str) -> None:
        asyncio.get_running_loop().create_task(coro, name=name)


class _Operator:
    """What SharedControl calls: the same effect on the control state as the real one."""

    def __init__(self) -> None:
        self.ctx = _Ctx()
        self.modes: dict[str, str] = {}

    def pause_queue(self, name: str) -> bool:
        self.ctx.control.paused_queues.add(name)
        self.ctx.shared("queue", name, True)
        return True

    def resume_queue(self, name: str) -> bool:
        self.ctx.control.paused_queues.discard(name)
        self.ctx.shared("queue", name, False)
        return True

    def set_mode(self, name: str, mode: str, reason: str = "manual") -> int:
        self.modes[name] = mode
        self.ctx.shared("backoff", name, mode == "backoff", 1.0)
        return 1


Node = tuple[SharedControl, _Operator, list[float]]


@pytest.fixture
async def nodes(redis_server: RedisServer) -> AsyncIterator[Callable[[str], Node]]:
    prefix = f"s{next(_PREFIXES)}:"
    made: list[SharedControl] = []

    def factory(name: str) -> Node:
        clock = [1000.0]
        operator = _Operator()
        client = redis_throttle(redis_server.url, prefix=prefix, node=name).client
        shared = SharedControl(client, operator, lambda: clock[0])  # type: ignore[arg-type]
        operator.ctx.share = shared.share
        made.append(shared)
        return shared, operator, clock

    yield factory
    for shared in made:
        await shared.client.redis.aclose()


async def test_a_pause_on_one_node_is_applied_on_the_other(
    nodes: Callable[[str], Node],
) -> None:
    a, op_a, _ = nodes("a")
    b, op_b, _ = nodes("b")
    await b.poll()
    op_a.pause_queue("example.org")
    await a.poll()
    await b.poll()
    assert op_b.ctx.control.paused_queues == {"example.org"}
    assert b.applied == 1 and op_b.ctx.saved
    # Not published back: b applied it, it did not make it.
    assert not b.pending
    op_b.resume_queue("example.org")
    await b.poll()
    await a.poll()
    assert op_a.ctx.control.paused_queues == set()
    # Backoff by name.
    op_a.set_mode("mx:x/default", "backoff")
    await a.poll()
    await b.poll()
    assert op_b.modes == {"mx:x/default": "backoff"}


async def test_the_newest_change_wins(nodes: Callable[[str], Node]) -> None:
    a, op_a, clock_a = nodes("a")
    b, op_b, clock_b = nodes("b")
    clock_a[0] = 2000.0
    op_a.pause_queue("example.org")  # newer
    clock_b[0] = 1999.0
    op_b.resume_queue("example.org")  # older (b's resume of what it had not paused)
    await a.poll()
    await b.poll()  # its write loses in Redis; it takes a's pause
    assert op_b.ctx.control.paused_queues == {"example.org"}
    await a.poll()
    assert op_a.ctx.control.paused_queues == {"example.org"}


async def test_a_redis_that_lost_its_data_is_filled_again(
    nodes: Callable[[str], Node], redis_server: RedisServer
) -> None:
    a, op_a, _ = nodes("a")
    op_a.pause_queue("example.org")
    await a.poll()
    redis_server.command("DEL", a.hash, a.version_key)  # as after a restart without data
    await a.poll()  # the version is gone: a writes its stamps again
    c, op_c, _ = nodes("c")
    await c.poll()
    assert op_c.ctx.control.paused_queues == {"example.org"}


async def test_changes_made_while_redis_is_away_are_written_when_it_is_back(
    nodes: Callable[[str], Node],
) -> None:
    a, op_a, _ = nodes("a")
    b, op_b, _ = nodes("b")
    a.client.up = False
    op_a.pause_queue("example.org")
    await a.poll()  # nothing written: Redis is "down"
    assert "queue:example.org" in a.pending
    a.client.up = True
    await a.poll()
    assert not a.pending
    await b.poll()
    assert op_b.ctx.control.paused_queues == {"example.org"}
