"""Several ``outrider run`` nodes sharing one queue's limits through a real redis-server.

Each node has its own spool and is injected with its share of the mail over SMTP; the
destination is one loopback sink, which records arrival times and the most connections
open at once. The queue allows ``max-msg-rate = "30/s"`` and ``max-smtp-out = 4`` in
total, whatever the number of nodes.
"""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.request
from collections.abc import Callable

import pytest

from tests.support.daemon import DaemonHandle, control, free_port, inject, wait_until
from tests.support.redis_server import RedisServer, own_redis, redis_server
from tests.support.smtp_server import ReceivedMessage, ScriptedSmtpServer

__all__ = ["own_redis", "redis_server"]

pytestmark = pytest.mark.slow

RCPTS = [f"r{i}@example.org" for i in range(50)]
LIMITS = 'max-msg-rate = "30/s"\nmax-smtp-out = 4\n'
LEASE_KEY = "outrider:lease:conn mx:mx1.example.org/default"  # the queue, mx-rollup


def _nodes(
    make_daemon: Callable[..., DaemonHandle],
    redis: RedisServer,
    count: int,
    *,
    lease_time: str = "15s",
    http: bool = False,
) -> list[DaemonHandle]:
    nodes = []
    for i in range(count):
        extra = (
            f'[cluster]\nredis = "{redis.url}"\nnode-name = "n{i}"\nlease-time = "{lease_time}"\n'
        )
        if http:
            extra += f'[http]\naddress = "127.0.0.1:{free_port()}"\n'
        node = make_daemon(domain_defaults=LIMITS, extra=extra)
        node.start()
        nodes.append(node)
    return nodes


def _inject_all(nodes: list[DaemonHandle], counts: list[int]) -> None:
    threads = [
        threading.Thread(target=inject, args=(node, RCPTS, n))
        for node, n in zip(nodes, counts, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _steady_rate(messages: list[ReceivedMessage], trim: float = 1.0) -> float:
    """Messages per second between ``trim`` seconds after the first and before the last."""
    times = sorted(m.arrived_at for m in messages)
    start, end = times[0] + trim, times[-1] - trim
    inside = [t for t in times if start <= t < end]
    return len(inside) / (end - start)


def _cluster_status(node: DaemonHandle) -> dict[str, object]:
    reply = control(node, {"cmd": "overview"})
    status = reply["status"]
    assert isinstance(status, dict)
    cluster = status["cluster"]
    assert isinstance(cluster, dict)
    return cluster


def _leases(redis: RedisServer) -> list[str]:
    raw = redis.command("ZRANGE", LEASE_KEY, "0", "-1").decode()
    return [line for line in raw.split("\r\n") if line.startswith("n")]


def test_three_nodes_share_the_rate_and_the_connections(
    make_daemon: Callable[..., DaemonHandle],
    redis_server: RedisServer,
    sink: ScriptedSmtpServer,
) -> None:
    nodes = _nodes(make_daemon, redis_server, 3)
    for node in nodes:
        assert _cluster_status(node)["redis_up"] is True
    wait_until(lambda: _cluster_status(nodes[0])["live_nodes"] == 3, 5, "three live nodes")
    _inject_all(nodes, [100, 100, 100])
    messages = sink.wait_for_messages_sync(300, timeout=30)
    rate = _steady_rate(messages)
    print(f"steady rate {rate:.2f} msg/s, at most {sink.max_concurrent} connections")
    assert 27 <= rate <= 33, rate
    assert sink.max_concurrent <= 4

    # every node delivered part of it
    def delivered() -> list[int]:  # the sink may see the last message before its d row
        return [len([r for r in n.accounting_rows() if r["type"] == "d"]) for n in nodes]

    wait_until(lambda: sum(delivered()) == 300, 5, "300 d rows")
    assert min(delivered()) > 0, delivered()


def test_a_killed_nodes_leases_return_within_the_lease_time(
    make_daemon: Callable[..., DaemonHandle],
    redis_server: RedisServer,
    sink: ScriptedSmtpServer,
) -> None:
    redis_server.command("DEL", LEASE_KEY)
    first, second = _nodes(make_daemon, redis_server, 2, lease_time="3s")
    inject(first, RCPTS, 200)  # a backlog of ~7 s: n0 keeps all four connections busy
    wait_until(lambda: len(_leases(redis_server)) == 4, 10, "n0 holds four leases")
    assert all(m.startswith("n0:") for m in _leases(redis_server))
    first.kill()  # SIGKILL: nothing is given back
    killed = time.monotonic()
    assert len(_leases(redis_server)) == 4  # still counted until they expire
    before = len(sink.messages)
    inject(second, RCPTS, 20)
    wait_until(lambda: len(sink.messages) >= before + 20, 10, "n1's mail delivered")
    assert time.monotonic() - killed < 3 + 2.5  # within the lease time (+ a poll and sends)
    wait_until(lambda: all(m.startswith("n1:") for m in _leases(redis_server)), 5, "n1 only")
    assert sink.max_concurrent <= 4


def test_redis_stopped_then_restarted(
    make_daemon: Callable[..., DaemonHandle],
    own_redis: RedisServer,
    sink: ScriptedSmtpServer,
) -> None:
    nodes = _nodes(make_daemon, own_redis, 2, lease_time="3s", http=True)
    wait_until(lambda: _cluster_status(nodes[0])["live_nodes"] == 2, 5, "two live nodes")
    # Enough mail that neither node runs dry before the fallback's rate is measured, even
    # when the shares take a while to settle on a loaded machine (20 s at 30/s).
    _inject_all(nodes, [300, 300])
    sink.wait_for_messages_sync(40, timeout=10)
    assert sink.max_concurrent <= 4
    own_redis.stop()
    wait_until(lambda: all(_cluster_status(n)["fallback"] for n in nodes), 5, "fallback")
    status = control(nodes[0], {"cmd": "overview"})["status"]
    assert isinstance(status, dict)
    assert status["cluster"]["live_nodes"] == 2
    http = nodes[0].config_path.read_text().split('[http]\naddress = "')[1].split('"')[0]
    with urllib.request.urlopen(f"http://{http}/metrics", timeout=5) as resp:
        metrics = resp.read().decode()
    assert "outrider_cluster_redis_up 0" in metrics
    assert "outrider_cluster_fallback 1" in metrics

    # Delivery goes on under each node's share: 15/s and 2 connections each. A node that
    # held more leases than its share gives the extra connections up after one message.
    # (a connection over the share ends after its message in flight, which can take a
    # moment on a loaded machine: the fallback's limit is measured from then on)
    # (a node over its share still holds its extra connection while the other opens its own:
    # the fallback's limit holds once each node is within its share)
    def within_shares() -> bool:
        outs = [control(n, {"cmd": "overview"})["status"]["connections"]["out"] for n in nodes]  # type: ignore[index]
        return all(out <= 2 for out in outs) and sink.current_connections <= 4

    wait_until(within_shares, 15, "connections within the shares")
    sink.max_concurrent = sink.current_connections
    during = len(sink.messages)
    time.sleep(3)
    fallback_rate = (len(sink.messages) - during) / 3
    print(f"fallback rate {fallback_rate:.2f} msg/s, at most {sink.max_concurrent} connections")
    assert len(sink.messages) < 560, "a node ran out of mail before the rate was measured"
    assert 20 <= fallback_rate <= 36, fallback_rate
    assert sink.max_concurrent <= 4
    own_redis.start()  # empty: throttles need no persistence
    wait_until(lambda: not any(_cluster_status(n)["fallback"] for n in nodes), 5, "shared again")
    with urllib.request.urlopen(f"http://{http}/metrics", timeout=5) as resp:
        assert "outrider_cluster_redis_up 1" in resp.read().decode()
    wait_until(lambda: len(_leases(own_redis)) > 0, 5, "leases written again")
    sink.wait_for_messages_sync(600, timeout=40)
    wait_until(
        lambda: (
            sum(len([r for r in n.accounting_rows() if r["type"] == "d"]) for n in nodes) == 600
        ),
        5,
        "600 delivered rows",
    )
    assert len(sink.messages) == 600  # nothing lost, nothing twice
    for node in nodes:
        log = node.log_text()
        assert log.count("Redis unreachable") == 1, log[-2000:]
        assert log.count("Redis is back") == 1
    assert json.dumps(_cluster_status(nodes[1]))  # still a plain JSON object
    for node in nodes:
        node.signal(signal.SIGTERM)
        assert node.stop() == 0
