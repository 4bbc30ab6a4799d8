"""Per-source-address connection leases across ``outrider run`` nodes and a real
redis-server: two virtual MTAs with different names but the same source address
(127.0.0.1), one on each node, both with ``max-smtp-out = 2``, send to one destination;
the destination never sees more than 2 connections from that address at once, and
``show cluster`` lists the address's leases."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.daemon import DaemonHandle, control, inject
from tests.support.redis_server import RedisServer, redis_server
from tests.support.smtp_server import ScriptedSmtpServer

__all__ = ["redis_server"]

pytestmark = pytest.mark.slow

RCPTS = [f"r{i}@example.org" for i in range(50)]
LIMITS = 'max-msg-rate = "25/s"\nmax-smtp-out = 2\n'
ADDRESS = "mx:mx1.example.org/127.0.0.1"  # the destination (mx-rollup) / the source IP


def _node(make_daemon: Callable[..., DaemonHandle], redis: RedisServer, i: int) -> DaemonHandle:
    vmta = f"shared-ip-{i}"  # a different name on each node, the same address
    extra = (
        f'[cluster]\nredis = "{redis.url}"\nnode-name = "addr{i}"\n'
        f'[virtual-mta.{vmta}]\nsmtp-source-host = "127.0.0.1 {vmta}.outrider.test"\n'
        f'[sender-domain."sender.test"]\nvirtual-mta = "{vmta}"\n'
    )
    node = make_daemon(domain_defaults=LIMITS, extra=extra)
    node.start()
    return node


def test_two_virtual_mtas_on_one_address_share_its_connections(
    make_daemon: Callable[..., DaemonHandle],
    redis_server: RedisServer,
    sink: ScriptedSmtpServer,
) -> None:
    redis_server.command("DEL", f"outrider:lease:addr {ADDRESS}")
    nodes = [_node(make_daemon, redis_server, i) for i in range(2)]
    seen: list[dict[str, Any]] = []
    done = threading.Event()

    def watch() -> None:  # what ``show cluster`` says while mail flows
        while not done.is_set():
            view = control(nodes[0], {"cmd": "cluster"})["cluster"]
            assert isinstance(view, dict)
            seen.extend(a for a in view["addresses"] if a["address"] == ADDRESS)
            time.sleep(0.1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    threads = [threading.Thread(target=inject, args=(node, RCPTS, 120)) for node in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        messages = sink.wait_for_messages_sync(240, timeout=40)
    finally:
        done.set()
        watcher.join()
    assert len(messages) == 240
    assert {s.peer[0] for s in sink.sessions} == {"127.0.0.1"}
    # Without the address lease each queue would open 2: 4 from one address.
    print(f"at most {sink.max_concurrent} connections from 127.0.0.1")
    assert sink.max_concurrent <= 2
    assert seen and max(a["leases_total"] for a in seen) <= 2
    assert {node for a in seen for node in a["leases"]} <= {"addr0", "addr1"}
    # both nodes sent part of it, from their own virtual MTA
    for i, node in enumerate(nodes):
        rows = [r for r in node.accounting_rows() if r["type"] == "d"]
        assert rows and all(r.get("vmta", f"shared-ip-{i}") == f"shared-ip-{i}" for r in rows)
    print(f"show cluster saw {max(a['leases_total'] for a in seen)} address lease(s) at most")
