"""Cluster-wide operator state between two ``outrider run`` nodes and a real redis-server:
a pause, a resume and a backoff made on one node apply on the other within a second, and
``show cluster`` (control verb and ``GET /api/v1/cluster``) lists the nodes and leases."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from outrider.auth.store import UserStore
from tests.support.daemon import (
    THROTTLE_PATTERNS,
    THROTTLED_REPLY,
    DaemonHandle,
    control,
    free_port,
    inject,
    wait_until,
)
from tests.support.redis_server import RedisServer, own_redis
from tests.support.smtp_server import ScriptedSmtpServer, ServerScript

__all__ = ["own_redis"]

pytestmark = pytest.mark.slow

RCPTS = [f"r{i}@example.org" for i in range(10)]
QUEUE = "mx:mx1.example.org/default"


def _nodes(make_daemon: Callable[..., DaemonHandle], redis: RedisServer) -> list[DaemonHandle]:
    nodes = []
    for i in range(2):
        extra = (
            f'[cluster]\nredis = "{redis.url}"\nnode-name = "n{i}"\n'
            f'[http]\naddress = "127.0.0.1:{free_port()}"\n'
        )
        node = make_daemon(domain_defaults="max-smtp-out = 2\n", extra=extra)
        node.start()
        nodes.append(node)
    return nodes


def _status(node: DaemonHandle) -> dict[str, object]:
    reply = control(node, {"cmd": "status"})
    status = reply["status"]
    assert isinstance(status, dict)
    return status


def _mode(node: DaemonHandle, name: str) -> str:
    queues = _status(node)["queues"]
    assert isinstance(queues, list)
    return next((str(q["mode"]) for q in queues if q["name"] == name), "")


def test_pause_and_backoff_across_nodes(
    make_daemon: Callable[..., DaemonHandle],
    own_redis: RedisServer,
    sink: ScriptedSmtpServer,
) -> None:
    first, second = _nodes(make_daemon, own_redis)
    # Both nodes deliver once, so both know the queue.
    inject(first, RCPTS, 2)
    inject(second, RCPTS, 2)
    sink.wait_for_messages_sync(4, timeout=10)

    # A pause on n0 holds the domain's mail on n1 too.
    assert control(first, {"cmd": "pause", "queue": "example.org"})["ok"] is True
    paused_at = time.monotonic()
    wait_until(lambda: "example.org" in _status(second)["paused_queues"], 3, "paused on n1")
    print(f"pause seen on n1 after {time.monotonic() - paused_at:.2f} s")
    assert time.monotonic() - paused_at < 1.5
    inject(second, RCPTS, 5)
    inject(first, RCPTS, 5)
    time.sleep(1.5)
    assert len(sink.messages) == 4  # nothing from either node
    # Resumed on n1: both deliver.
    assert control(second, {"cmd": "resume", "queue": "example.org"})["ok"] is True
    sink.wait_for_messages_sync(14, timeout=10)
    assert "example.org" not in _status(first)["paused_queues"]

    # Backoff entered on n1 is seen by n0 within a second; back to normal likewise.
    assert control(second, {"cmd": "backoff", "queue": QUEUE})["ok"] is True
    entered = time.monotonic()
    wait_until(lambda: _mode(first, QUEUE) == "backoff", 3, "backoff on n0")
    print(f"backoff seen on n0 after {time.monotonic() - entered:.2f} s")
    assert time.monotonic() - entered < 1.5
    assert control(first, {"cmd": "normal", "queue": QUEUE})["ok"] is True
    wait_until(lambda: _mode(second, QUEUE) == "normal", 3, "normal on n1")
    assert "backoff" not in json.loads((first.workdir / "var/state/control.json").read_text())[
        "backoff"
    ].get(QUEUE, "")


def test_show_cluster_lists_the_nodes_and_the_leases(
    make_daemon: Callable[..., DaemonHandle],
    own_redis: RedisServer,
    sink: ScriptedSmtpServer,
) -> None:
    first, _ = _nodes(make_daemon, own_redis)
    # Leases are listed while connections are open.
    inject(first, RCPTS, 10)
    reply = control(first, {"cmd": "cluster"})
    assert reply["ok"] is True, reply
    view = reply["cluster"]
    assert isinstance(view, dict)
    assert sorted(n["node"] for n in view["nodes"]) == ["n0", "n1"]
    http = first.config_path.read_text().split('[http]\naddress = "')[1].split('"')[0]
    with urllib.request.urlopen(f"http://{http}/api/v1/cluster", timeout=5) as resp:
        body = json.loads(resp.read())["cluster"]
    assert sorted(n["node"] for n in body["nodes"]) == ["n0", "n1"]

    def leases_listed() -> bool:
        queues = control(first, {"cmd": "cluster"})["cluster"]["queues"]  # type: ignore[index]
        return any(q["queue"] == QUEUE and q["leases_total"] > 0 for q in queues)

    wait_until(leases_listed, 5, "n0's leases listed")
    # The console command prints the same.
    out = subprocess.run(
        [sys.executable, "-m", "outrider", "show", "cluster", "-c", str(first.config_path)],
        capture_output=True,
        text=True,
        timeout=20,
        cwd=first.workdir,
    )
    assert out.returncode == 0, out.stderr
    assert "n0 (this node)" in out.stdout and "n1" in out.stdout
    assert "LEASES" in out.stdout or "no shared limits in use" in out.stdout


def _suppression(node: DaemonHandle, *words: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "outrider", "suppression", *words, "-c", str(node.config_path)],
        capture_output=True,
        text=True,
        timeout=20,
        cwd=node.workdir,
    )


def test_a_suppression_added_on_one_node_stops_delivery_from_the_other(
    make_daemon: Callable[..., DaemonHandle],
    own_redis: RedisServer,
    sink: ScriptedSmtpServer,
) -> None:
    first, second = _nodes(make_daemon, own_redis)
    added = _suppression(first, "add", "r1@example.org")
    assert added.returncode == 0, added.stderr
    # n0's daemon publishes the CLI's add; n1 applies it to its own list.
    wait_until(
        lambda: "r1@example.org" in _suppression(second, "list").stdout, 5, "suppressed on n1"
    )
    inject(second, ["r0@example.org", "r1@example.org"], 2)
    sink.wait_for_messages_sync(1, timeout=10)
    wait_until(lambda: {"b", "d"} <= {r["type"] for r in second.accounting_rows()}, 5, "rows")
    rows = second.accounting_rows()
    assert [r["rcpt"] for r in rows if r["type"] == "d"] == ["r0@example.org"]
    bounced = [r for r in rows if r["type"] == "b"]
    assert [r["rcpt"] for r in bounced] == ["r1@example.org"]
    # A removal on n1 reaches n0 the same way.
    removed = _suppression(second, "remove", "r1@example.org")
    assert removed.returncode == 0, removed.stderr
    wait_until(
        lambda: "r1@example.org" not in _suppression(first, "list").stdout, 5, "removed on n0"
    )
    inject(first, ["r1@example.org"], 1)
    sink.wait_for_messages_sync(2, timeout=10)


STRANGER = "127.0.0.9"  # not in the listener's relay-networks


def _auth_node(
    make_daemon: Callable[..., DaemonHandle],
    redis: RedisServer,
    users: Path,
    index: int,
    receivers: int,
) -> tuple[DaemonHandle, int]:
    port = free_port()
    node = make_daemon(
        receiver_processes=receivers,
        extra=f"""
[[listener]]
address = "127.0.0.1:{port}"
role = "submission"
relay-networks = ["127.0.0.1/32"]
allow-plaintext-auth = true
auth-max-failures = 4
auth-failure-delay = "0s"

[auth]
users-file = "{users}"

[cluster]
redis = "{redis.url}"
node-name = "a{index}"
""",
    )
    node.start()
    return node, port


def _guess(port: int, *, wait: bool = True) -> bytes:
    """One wrong AUTH PLAIN on a fresh connection: the greeting if refused, else the reply
    (``wait=False``: hang up 0.5 s after the guess, without waiting for the reply)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.bind((STRANGER, 0))
    sock.connect(("127.0.0.1", port))
    try:
        reader = sock.makefile("rb")
        greeting = reader.readline()
        if not greeting.startswith(b"220"):
            return greeting
        sock.sendall(b"EHLO stranger.test\r\n")
        while reader.readline()[3:4] == b"-":
            pass
        sock.sendall(b"AUTH PLAIN " + base64.b64encode(b"\0alice\0wrong") + b"\r\n")
        if not wait:
            time.sleep(0.5)
            return b""
        return reader.readline()
    finally:
        sock.close()


def test_failed_auth_is_counted_across_nodes(
    make_daemon: Callable[..., DaemonHandle], own_redis: RedisServer, tmp_path: Path
) -> None:
    users = tmp_path / "users"
    UserStore(users).add("alice", "correct horse", allowed_senders=["alice@sender.test"])
    _, first_port = _auth_node(make_daemon, own_redis, users, 0, 0)
    _, second_port = _auth_node(make_daemon, own_redis, users, 1, 2)
    for _ in range(3):
        assert _guess(first_port).startswith(b"535"), "a wrong password on a0"
    # The fourth failure, on the other node (in one of its receiver processes), blocks
    # (its reply is held back max-delay, 10 s: the failure is counted before that).
    _guess(second_port, wait=False)
    refused = _guess(second_port)
    assert refused.startswith(b"421 4.7.0 Too many authentication failures"), refused
    assert _guess(first_port).startswith(b"421 4.7.0 Too many authentication failures")


def test_a_backoff_entered_by_a_matched_421_on_one_node_holds_on_the_other(
    make_daemon: Callable[..., DaemonHandle],
    own_redis: RedisServer,
    sink: ScriptedSmtpServer,
) -> None:
    nodes = []
    for i in range(2):
        node = make_daemon(
            domain_defaults='smtp-pattern-list = "throttle"\nbackoff-to-normal-after = "1h"\n',
            extra=THROTTLE_PATTERNS + f'[cluster]\nredis = "{own_redis.url}"\nnode-name = "p{i}"\n',
        )
        node.start()
        nodes.append(node)
    first, second = nodes
    inject(second, RCPTS, 1)  # n1 knows the queue
    sink.wait_for_messages_sync(1, timeout=10)
    sink.script = ServerScript(rcpt_replies={"slow@example.org": THROTTLED_REPLY})
    inject(first, ["slow@example.org"], 1)
    wait_until(lambda: _mode(first, QUEUE) == "backoff", 10, "backoff on p0")
    entered = time.monotonic()
    wait_until(lambda: _mode(second, QUEUE) == "backoff", 3, "backoff on p1")
    assert time.monotonic() - entered < 1.5
    wait_until(
        lambda: any(
            r["type"] == "q" and r["dsnAction"] == "backoff" for r in second.accounting_rows()
        ),
        5,
        "p1's queue record",
    )
