"""The cluster's pieces against a real redis-server: batched GCRA, connection leases
(expiry, renewal, release, a dead holder), the node registry, and the fallback while
Redis is away; plus the ``[cluster]`` config."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from itertools import count
from pathlib import Path

import pytest

from outrider.cluster.build import options_of
from outrider.cluster.client import ClusterClient, ClusterOptions
from outrider.cluster.fallback import share_count, share_rate
from outrider.cluster.throttle import RedisThrottle
from outrider.config.loader import parse_config
from outrider.config.model import ConfigError
from outrider.throttle.rate import RateLimit
from tests.support.daemon import free_port
from tests.support.redis_server import RedisServer, redis_server, redis_throttle

__all__ = ["redis_server"]

_PREFIXES = count(1)
Make = Callable[..., RedisThrottle]


@pytest.fixture
async def make(redis_server: RedisServer) -> AsyncIterator[Make]:
    """Throttles of several nodes sharing one fresh key prefix."""
    prefix = f"c{next(_PREFIXES)}:"
    made: list[RedisThrottle] = []

    def factory(node: str = "a", lease_time: float = 15.0) -> RedisThrottle:
        made.append(
            redis_throttle(redis_server.url, prefix=prefix, node=node, lease_time=lease_time)
        )
        return made[-1]

    yield factory
    for throttle in made:
        await throttle.client.redis.aclose()


# -- GCRA ---------------------------------------------------------------------------------
async def test_reserve_takes_the_admissions_due_within_ahead(make: Make) -> None:
    t = make()
    limit = RateLimit(0.1)
    now = time.time()
    slots, wait = await t.reserve("q", limit, now, want=5, ahead=0.25)
    assert wait == 0.0
    assert slots == pytest.approx([0.0, 0.1, 0.2], abs=1e-6)
    slots, wait = await t.reserve("q", limit, now, want=5, ahead=0.0)
    assert slots == [] and wait == pytest.approx(0.3, abs=1e-6)
    slots, _ = await t.reserve("q", limit, now + 0.3, want=2, ahead=0.0)
    assert slots == [0.0]  # exactly one is due, however many were wanted


async def test_two_nodes_share_one_rate(make: Make) -> None:
    a, b = make("a"), make("b")
    limit = RateLimit(1.0)
    now = time.time()
    assert await a.rate("q", limit, now) == 0.0
    assert await b.rate("q", limit, now) == pytest.approx(1.0)
    assert await b.rate("q", limit, now + 1.0) == 0.0
    assert a.round_trips == 1 and b.round_trips == 2


async def test_unlimited_rates_never_reach_redis(make: Make) -> None:
    t = make()
    assert await t.reserve("q", RateLimit(0.0), time.time(), want=3) == ([0.0] * 3, 0.0)
    assert t.round_trips == 0


# -- leases -------------------------------------------------------------------------------
async def test_leases_count_across_nodes_and_release(make: Make) -> None:
    a, b = make("a"), make("b")
    assert await a.lease("conn q", 2) == (0, 0.0)
    assert await b.lease("conn q", 2) == (0, 0.0)
    code, wait = await b.lease("conn q", 2)
    assert code == 1 and 0 < wait <= 15
    assert await a.held("conn q") == 2
    assert await a.release("conn q")
    assert not await a.release("conn q")  # it held one only
    assert await b.lease("conn q", 2) == (0, 0.0)


async def test_a_dead_holders_leases_expire_and_renewed_ones_do_not(make: Make) -> None:
    dead, alive, other = make("dead", 0.3), make("alive", 0.3), make("other", 0.3)
    assert (await dead.lease("conn q", 2))[0] == 0
    assert (await alive.lease("conn q", 2))[0] == 0
    assert (await other.lease("conn q", 2))[0] == 1
    for _ in range(4):  # ``alive`` renews every 0.1 s (lease-time / 3); ``dead`` never
        await asyncio.sleep(0.1)
        await alive.renew()
    assert (await other.lease("conn q", 2))[0] == 0  # dead's lease ran out
    assert (await other.lease("conn q", 2))[0] == 1  # alive's did not
    assert await other.held("conn q") == 2


async def test_renewal_puts_back_leases_a_restarted_redis_lost(
    make: Make, redis_server: RedisServer
) -> None:
    a = make("a")
    assert (await a.lease("conn q", 1))[0] == 0
    storage = a._key("lease", "conn q")
    await a.client.redis.delete(storage)  # as after a Redis restart
    assert await a.held("conn q") == 0
    await a.renew()
    assert await a.held("conn q") == 1
    assert (await make("b").lease("conn q", 1))[0] == 1


async def test_a_lease_refused_by_the_connect_rate_is_not_kept(make: Make) -> None:
    a = make()
    rate = RateLimit(10.0)
    now = time.time()
    assert await a.lease("conn q", 5, "connect q", rate, now) == (0, 0.0)
    code, wait = await a.lease("conn q", 5, "connect q", rate, now)
    assert code == 2 and wait == pytest.approx(10.0)
    assert await a.held("conn q") == 1
    assert await a.lease("conn q", 5, "connect q", RateLimit(float("inf")), now) == (
        2,
        float("inf"),
    )


# -- registry -----------------------------------------------------------------------------
async def test_heartbeats_count_live_nodes(redis_server: RedisServer) -> None:
    prefix = f"h{next(_PREFIXES)}:"
    clients = [
        ClusterClient(ClusterOptions(redis_server.url, node=n, prefix=prefix, lease_time=0.3))
        for n in ("a", "b")
    ]
    assert await clients[0].heartbeat()
    assert clients[0].live_nodes == 1 and clients[0].up
    assert await clients[1].heartbeat()
    assert clients[1].live_nodes == 2
    await asyncio.sleep(0.35)  # a's heartbeat is older than its TTL: a is gone
    assert await clients[1].heartbeat()
    assert clients[1].live_nodes == 1
    for client in clients:
        await client.stop()
    assert clients[0].status()["node"] == "a"


# -- fallback -----------------------------------------------------------------------------
def test_fallback_shares() -> None:
    assert share_rate(RateLimit(0.1), 3) == RateLimit(0.1 * 3)
    assert share_rate(RateLimit(0.0), 3) == RateLimit(0.0)
    assert share_rate(RateLimit(0.1, 5), 1) == RateLimit(0.1, 5)
    assert share_count(4, 3) == 1
    assert share_count(10, 3) == 3
    assert share_count(1, 5) == 1  # never stops a queue
    assert share_count(None, 3) is None
    assert share_count(0, 3) == 0


async def test_unreachable_redis_means_fallback_at_once(caplog: pytest.LogCaptureFixture) -> None:
    client = ClusterClient(
        ClusterOptions(f"redis://127.0.0.1:{free_port()}/0", node="a", timeout=0.2)
    )
    t = RedisThrottle(client)
    started = time.monotonic()
    await client.start()
    assert not client.up and client.status()["fallback"]
    client.live_nodes = 2  # as last seen
    now = time.time()
    assert await t.lease("conn q", 4) == (0, 0.0)
    assert await t.lease("conn q", 4) == (0, 0.0)
    assert (await t.lease("conn q", 4))[0] == 1  # 4 / 2 nodes
    assert await t.rate("m", RateLimit(0.1), now) == 0.0
    assert await t.rate("m", RateLimit(0.1), now) == pytest.approx(0.2)  # 0.1 s x 2 nodes
    assert await t.blocked_until("b", now) is None
    assert await t.add_event("e", 10, now) == 1
    assert time.monotonic() - started < 1.0  # nothing waited for Redis
    client.live_nodes = 1
    assert not t.over_share("conn q", 4)
    client.live_nodes = 4
    assert t.over_share("conn q", 4)  # 2 held, share 1: a connection gives up
    await client.stop()
    assert sum("Redis unreachable" in r.getMessage() for r in caplog.records) == 1


# -- config -------------------------------------------------------------------------------
BASE = '[[listener]]\naddress = "127.0.0.1:2525"\n'


def test_cluster_config(tmp_path: Path) -> None:
    assert parse_config(BASE).cluster.redis is None
    secret = tmp_path / "redis-password"
    secret.write_text("s3cret\n")
    config = parse_config(
        BASE + f'[cluster]\nredis = "rediss://10.0.0.5:6380/2"\nnode-name = "mta-1"\n'
        f'password-file = "{secret}"\nlease-time = "6s"\ntimeout = "50ms"\n'
    )
    options = options_of(config.cluster)
    assert options.url == "rediss://10.0.0.5:6380/2"
    assert options.node == "mta-1" and options.password == "s3cret"
    assert options.lease_time == 6.0 and options.timeout == 0.05
    assert options.prefix == "outrider:"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('redis = "http://x"', "expected redis://"),
        ('redis = "redis://:pw@host"', "password-file"),
        ('redis = "redis://host/abc"', "database must be a number"),
        ('node-name = "a b"', "expected letters"),
        ('timeout = "0s"', "greater than zero"),
    ],
)
def test_cluster_config_errors(line: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(BASE + f"[cluster]\n{line}\n", "o.toml")
    text = str(info.value)
    assert "o.toml:4: cluster." in text and message in text, text
