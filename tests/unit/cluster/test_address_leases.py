"""Per-source-address connection leases against a real redis-server: the queue's lease
and its source address's are taken in one ACQUIRE call, all or nothing, renewed and
released together, expire together, and are counted locally while Redis is away."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from itertools import count

import pytest

from outrider.cluster.client import ClusterClient, ClusterOptions
from outrider.cluster.throttle import RedisThrottle
from outrider.config.model import VirtualMta
from outrider.queue.model import DeliveryQueue
from outrider.throttle.rate import RateLimit
from tests.support.daemon import free_port
from tests.support.redis_server import RedisServer, redis_server, redis_throttle

__all__ = ["redis_server"]

_PREFIXES = count(1)
Make = Callable[..., RedisThrottle]
ADDR = "addr gmail.com/127.0.0.1"  # both virtual MTAs send from 127.0.0.1


@pytest.fixture
async def make(redis_server: RedisServer) -> AsyncIterator[Make]:
    prefix = f"addr{next(_PREFIXES)}:"
    made: list[RedisThrottle] = []

    def factory(node: str = "a", lease_time: float = 15.0) -> RedisThrottle:
        made.append(
            redis_throttle(redis_server.url, prefix=prefix, node=node, lease_time=lease_time)
        )
        return made[-1]

    yield factory
    for throttle in made:
        await throttle.client.redis.aclose()


async def test_two_queues_on_one_address_share_its_limit(make: Make) -> None:
    a, b = make("a"), make("b")
    assert await a.lease("conn gmail.com/mta1", 2, also=ADDR) == (0, 0.0)
    assert await b.lease("conn gmail.com/mta2", 2, also=ADDR) == (0, 0.0)
    code, wait = await b.lease("conn gmail.com/mta2", 2, also=ADDR)
    assert code == 1 and 0 < wait <= 15
    # all or nothing: the refused call kept no lease on mta2's queue either
    assert await b.held("conn gmail.com/mta2") == 1
    assert await a.held(ADDR) == 2
    assert a.held_here() == 1  # one connection: its two leases count once
    assert await a.release("conn gmail.com/mta1", also=ADDR)
    assert await a.held(ADDR) == 1 and await a.held("conn gmail.com/mta1") == 0
    assert await b.lease("conn gmail.com/mta2", 2, also=ADDR) == (0, 0.0)


async def test_a_full_queue_takes_no_address_lease(make: Make) -> None:
    a = make()
    for _ in range(2):
        assert (await a.lease("conn gmail.com/mta1", 2))[0] == 0
    assert (await a.lease("conn gmail.com/mta1", 2, also=ADDR))[0] == 1
    assert await a.held(ADDR) == 0


async def test_a_refused_connect_rate_takes_neither_lease(make: Make) -> None:
    a = make()
    rate = RateLimit(10.0)
    now = time.time()
    queue = "conn gmail.com/mta1"
    assert await a.lease(queue, 5, "connect q", rate, now, also=ADDR) == (0, 0.0)
    code, wait = await a.lease(queue, 5, "connect q", rate, now, also=ADDR)
    assert code == 2 and wait == pytest.approx(10.0)
    assert await a.held(queue) == 1 and await a.held(ADDR) == 1


async def test_a_limit_of_zero_refuses_without_error(make: Make) -> None:
    a = make()
    assert await a.lease("conn gmail.com/mta1", 0, also=ADDR) == (1, 0.0)


async def test_a_dead_nodes_address_leases_expire_and_renewed_ones_do_not(make: Make) -> None:
    dead, alive, other = make("dead", 0.3), make("alive", 0.3), make("other", 0.3)
    assert (await dead.lease("conn gmail.com/mta1", 2, also=ADDR))[0] == 0
    assert (await alive.lease("conn gmail.com/mta2", 2, also=ADDR))[0] == 0
    assert (await other.lease("conn gmail.com/mta3", 2, also=ADDR))[0] == 1
    for _ in range(4):  # alive renews every 0.1 s (lease-time / 3); dead never
        await asyncio.sleep(0.1)
        await alive.renew()
    assert await other.held("conn gmail.com/mta1") == 0  # expired with its address lease
    assert (await other.lease("conn gmail.com/mta3", 2, also=ADDR))[0] == 0
    assert (await other.lease("conn gmail.com/mta3", 2, also=ADDR))[0] == 1
    assert await other.held(ADDR) == 2


async def test_fallback_counts_address_leases_locally() -> None:
    client = ClusterClient(
        ClusterOptions(f"redis://127.0.0.1:{free_port()}/0", node="a", timeout=0.2)
    )
    t = RedisThrottle(client)
    await client.start()
    assert not client.up
    client.live_nodes = 2  # as last seen: a share of 4 / 2 = 2
    assert await t.lease("conn gmail.com/mta1", 4, also=ADDR) == (0, 0.0)
    assert await t.lease("conn gmail.com/mta2", 4, also=ADDR) == (0, 0.0)
    assert (await t.lease("conn gmail.com/mta2", 4, also=ADDR))[0] == 1  # the address
    assert await t.held("conn gmail.com/mta2") == 1
    client.live_nodes = 4
    assert t.over_share("conn gmail.com/mta1", 4, ADDR)  # the address's 2 > share 1
    assert not t.over_share("conn gmail.com/mta1", 4)
    assert await t.release("conn gmail.com/mta2", also=ADDR)
    assert await t.held(ADDR) == 1
    await client.stop()


def test_address_lease_key_needs_a_source_ip() -> None:
    queue = DeliveryQueue.__new__(DeliveryQueue)
    queue.key, queue.vmta = "gmail.com", "mta1"
    with_ip = {"mta1": VirtualMta("mta1", "127.0.0.1", "mx.example")}
    without = {"mta1": VirtualMta("mta1", None, "mx.example")}
    assert queue.address_lease_key(with_ip) == ADDR
    assert queue.address_lease_key(without) is None
    assert queue.address_lease_key({}) is None


def test_show_cluster_lists_address_leases() -> None:
    from outrider.admin import tables

    view = {
        "node": "a",
        "redis_up": True,
        "nodes": [{"node": "a", "age": 0.1, "self": True}],
        "queues": [],
        "addresses": [
            {"address": "gmail.com/127.0.0.1", "leases": {"a": 1, "b": 1}, "leases_total": 2}
        ],
    }
    text = tables.cluster(view)
    assert "DESTINATION/SOURCE IP" in text
    line = next(line for line in text.splitlines() if "gmail.com/127.0.0.1" in line)
    assert "a=1 b=1" in line and " 2 " in line
    assert "SOURCE IP" not in tables.cluster(view | {"addresses": []})
