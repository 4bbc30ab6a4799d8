"""The throttle receiver processes share, over a real Unix socket: every call of the
interface, counts given back when a channel closes, and mail never waiting on an
unreachable server."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path

from outrider.auth.throttle import AuthThrottle
from outrider.throttle import RateLimit
from outrider.throttle.remote import RemoteThrottle, ThrottleServer


async def until(pred: object, timeout: float = 5.0) -> None:
    assert callable(pred)
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def connected(server: ThrottleServer) -> RemoteThrottle:
    client = RemoteThrottle(server.path)
    await client.connect()
    return client


async def test_every_call_is_answered_by_the_shared_state(tmp_path: Path) -> None:
    server = ThrottleServer(str(tmp_path / "t.sock"))
    await server.start()
    a, b = await connected(server), await connected(server)
    try:
        limit = RateLimit(10.0, burst=2)
        assert await a.rate("r", limit, 100.0) == 0.0
        assert await b.rate("r", limit, 100.0) == 0.0
        assert await a.rate("r", limit, 100.0) == 10.0  # the burst is used up by both
        assert await b.peek_rate("r", limit, 100.0) == 10.0
        assert await a.rate("none", RateLimit(math.inf), 0.0) == math.inf
        assert await a.rate("free", RateLimit(0.0), 0.0) == 0.0

        assert await a.acquire("c", 2) and await b.acquire("c", 2)
        assert not await a.acquire("c", 2)
        assert await b.held("c") == 2
        assert not await a.release("other")  # not held by this channel
        assert await a.release("c")
        assert not await a.release("c")  # a gave back its one
        assert await b.held("c") == 1

        assert await a.add_event("e", 60.0, 1.0) == 1
        assert await b.add_event("e", 60.0, 2.0) == 2
        assert await a.count("e", 60.0, 61.5) == 1
        await b.clear_events("e")
        assert await a.count("e", 60.0, 3.0) == 0

        await a.block("k", 50.0, 10.0)
        assert await b.blocked_until("k", 20.0) == 50.0
        assert await b.blocked_until("k", 50.0) is None
        assert server.calls > 15 and a.outages == b.outages == 0
    finally:
        await a.close()
        await b.close()
        await server.stop()


async def test_a_closed_channel_gives_back_its_counts(tmp_path: Path) -> None:
    server = ThrottleServer(str(tmp_path / "t.sock"))
    await server.start()
    dying, other = await connected(server), await connected(server)
    try:
        assert await dying.acquire("c", 2) and await dying.acquire("c", 2)
        assert await other.acquire("d", None)
        await dying.close()  # a receiver that died
        await until(lambda: server.throttle.held_now("c") == 0)
        assert await other.held("d") == 1
    finally:
        await other.close()
        await server.stop()


async def test_no_server_means_fresh_answers_and_a_reconnect(tmp_path: Path) -> None:
    path = tmp_path / "t.sock"
    server = ThrottleServer(str(path))
    await server.start()
    client = await connected(server)
    client.RECONNECT_MAX = 0.1
    try:
        assert await client.held("c") == 0  # the channel is up at both ends
        await server.stop()
        await until(lambda: not client.connected)
        # Answered as for a fresh key, at once: mail never waits for the limiter.
        assert await client.acquire("c", 0) is True
        assert await client.blocked_until("k", 0.0) is None
        assert await client.add_event("e", 60.0, 0.0) == 1
        assert await client.rate("r", RateLimit(1.0), 0.0) == 0.0
        assert client.outages == 4

        server = ThrottleServer(str(path))
        await server.start()
        await until(lambda: client.connected)
        await client.block("k", 100.0, 0.0)
        assert server.throttle.blocked_until_now("k", 1.0) == 100.0
    finally:
        await client.close()
        await server.stop()


async def test_a_server_slower_than_the_timeout_counts_as_an_outage(tmp_path: Path) -> None:
    ended = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # reads the calls, never answers
        writer.close()
        ended.set()

    server = await asyncio.start_unix_server(silent, path=str(tmp_path / "t.sock"))
    client = RemoteThrottle(str(tmp_path / "t.sock"), timeout=0.1)
    await client.connect()
    try:
        assert await client.blocked_until("k", 0.0) is None
        assert client.outages == 1
    finally:
        await client.close()
        await asyncio.wait_for(ended.wait(), 5)
        server.close()


async def test_parallel_auth_guesses_across_processes_get_max_failures_verified(
    tmp_path: Path,
) -> None:
    """Two receivers, each with its own AuthThrottle on the shared state: 20 attempts
    begun at once get 5 through (max_failures), the rest refused before verifying."""
    server = ThrottleServer(str(tmp_path / "t.sock"))
    await server.start()
    clients = [await connected(server), await connected(server)]
    policies = [
        AuthThrottle(max_failures=5, max_concurrent=0, throttle=c, namespace="auth l ")
        for c in clients
    ]
    try:
        answers = await asyncio.gather(
            *(policies[i % 2].begin_attempt_async("192.0.2.7", 100.0) for i in range(20))
        )
        assert answers.count(None) == 5
        assert set(answers) == {None, "blocked"}
        assert await policies[1].is_blocked_async("192.0.2.7", 101.0)
    finally:
        for c in clients:
            await c.close()
        await server.stop()


async def test_count_and_rate_in_one_round_trip(tmp_path: Path) -> None:
    server = ThrottleServer(str(tmp_path / "t.sock"))
    await server.start()
    client = await connected(server)
    try:
        rate = RateLimit(10.0, burst=2)
        calls = server.calls
        assert await client.acquire_within_rate("c", 5, "r", rate, 0.0) == 0
        assert server.calls == calls + 1
        assert await client.acquire_within_rate("c", 5, "r", rate, 0.0) == 0
        assert await client.acquire_within_rate("c", 5, "r", rate, 0.0) == 2  # rate spent
        assert await client.held("c") == 2  # the refused one gave its count back
        assert await client.acquire_within_rate("c", 2, "other", rate, 0.0) == 1
        await client.close()
        await until(lambda: server.throttle.held_now("c") == 0)  # the channel's counts
    finally:
        await client.close()
        await server.stop()
