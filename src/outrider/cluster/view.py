"""``outrider show cluster`` and ``GET /api/v1/cluster``: the cluster as Redis sees it.

Read-only and bounded: the live nodes (heartbeat age), and for every queue with leases,
a rate in use or a shared mode, the leases each node holds, the message rate each node
reports (its own count over the last :data:`RATE_WINDOW` seconds, published every
:data:`STATS_EVERY` seconds), the GCRA's booking ahead, and backoff or pause; then the
leases each node holds per (destination, source address). While
Redis is away the answer says so and carries only this node's view.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

from outrider.cluster.client import ClusterClient
from outrider.queue.model import DeliveryQueue

__all__ = ["RATE_WINDOW", "STATS_EVERY", "RateSampler", "cluster_view"]

RATE_WINDOW = 10.0  # seconds over which a node's per-queue rate is measured
STATS_EVERY = 2.0  # seconds between a node's published per-queue figures
MAX_QUEUES = 1000  # queues listed at most (lease keys scanned)


class RateSampler:
    """Per-queue messages sent (delivered, bounced or deferred) per second over the last
    :data:`RATE_WINDOW` seconds, from the scheduler's counters."""

    def __init__(self) -> None:
        self.samples: deque[tuple[float, dict[str, int]]] = deque()

    def sample(self, now: float, queues: Iterable[DeliveryQueue]) -> dict[str, dict[str, Any]]:
        counts = {q.name: q.delivered + q.failed + q.deferred for q in queues}
        active = {q.name: q.active for q in queues}
        self.samples.append((now, counts))
        while len(self.samples) > 1 and now - self.samples[0][0] > RATE_WINDOW:
            self.samples.popleft()
        then, old = self.samples[0]
        span = max(now - then, 1e-9)
        figures: dict[str, dict[str, Any]] = {}
        for name, count in counts.items():
            rate = (count - old.get(name, count)) / span if now > then else 0.0
            if rate > 0 or active.get(name):
                figures[name] = {"rate": round(rate, 2), "connections": active.get(name, 0)}
        return figures


async def cluster_view(client: ClusterClient, state: dict[str, Any]) -> dict[str, Any]:
    """Everything ``show cluster`` prints; ``state`` is this node's own part (fallback)."""
    view: dict[str, Any] = {"node": client.node, "redis_up": client.up, **client.status()}
    view["shared_state"] = state
    if not client.up:
        view["nodes"] = [{"node": client.node, "age": 0.0, "self": True}]
        view["queues"], view["addresses"] = [], []
        return view
    redis = client.redis
    now = time.time()
    names = await client.call(redis.zrangebyscore(client.key("nodes"), now * 1000, "+inf"))
    if names is None:
        view["redis_up"] = False
        view["nodes"], view["queues"], view["addresses"] = [], [], []
        return view
    pipe = redis.pipeline(transaction=False)
    for name in names:
        pipe.get(client.key("node", name))
        pipe.hgetall(client.key("stats", name))
    answers = await client.call(pipe.execute()) or []
    nodes = []
    per_queue: dict[str, dict[str, Any]] = {}

    def entry(queue: str) -> dict[str, Any]:
        return per_queue.setdefault(
            queue, {"queue": queue, "leases": {}, "rates": {}, "mode": "normal", "paused": False}
        )

    for index, name in enumerate(names):
        beat = answers[2 * index] if 2 * index < len(answers) else None
        at = _float(json.loads(beat).get("at")) if beat else None
        nodes.append(
            {"node": name, "age": round(now - at, 2) if at else None, "self": name == client.node}
        )
        stats = answers[2 * index + 1] if 2 * index + 1 < len(answers) else {}
        for queue, raw in (stats or {}).items():
            figures = json.loads(raw)
            entry(queue)["rates"][name] = figures.get("rate", 0.0)
    for queue, leases in (await _leases(client, "conn ", now)).items():
        entry(queue)["leases"] = leases
    # shared modes
    shared = await client.call(redis.hgetall(client.key("state"))) or {}
    for field, raw in shared.items():
        kind, _, name = field.partition(":")
        if kind in ("backoff", "queue"):
            try:
                on = bool(json.loads(raw).get("on"))
            except ValueError:
                continue
            if on and kind == "backoff":
                entry(name)["mode"] = "backoff"
            elif on:
                entry(name)["paused"] = True
    # the rates' booking ahead
    queues = sorted(per_queue)
    pipe = redis.pipeline(transaction=False)
    for queue in queues:
        pipe.hget(client.key("rate", f"msg {queue}"), "t")
    tats = await client.call(pipe.execute()) if queues else []
    for queue, tat in zip(queues, tats or [], strict=False):
        item = per_queue[queue]
        item["booked_ahead"] = round(max(0.0, float(tat) - now), 3) if tat else 0.0
        item["leases_total"] = sum(item["leases"].values())
        item["rate"] = round(sum(item["rates"].values()), 2)
    view["nodes"] = nodes
    view["queues"] = [per_queue[q] for q in queues]
    addresses = await _leases(client, "addr ", now)
    view["addresses"] = [
        {"address": name, "leases": held, "leases_total": sum(held.values())}
        for name, held in sorted(addresses.items())
    ]
    return view


async def _leases(client: ClusterClient, kind: str, now: float) -> dict[str, dict[str, int]]:
    """Live leases per limited key (``conn QUEUE`` or ``addr DESTINATION/IP``, without
    the kind) and node, from a bounded scan."""
    redis = client.redis
    prefix = client.key("lease", kind)
    keys: list[str] = []
    cursor: int | None = 0
    while cursor is not None and len(keys) < MAX_QUEUES:
        found = await client.call(redis.scan(cursor, match=prefix + "*", count=500))
        if found is None:
            break
        cursor, batch = found
        keys.extend(batch)
        if not cursor:
            cursor = None
    if not keys:
        return {}
    ms = int(now * 1000)
    pipe = redis.pipeline(transaction=False)
    for key in keys:
        pipe.zrangebyscore(key, f"({ms}", "+inf")
    members = await client.call(pipe.execute()) or []
    out: dict[str, dict[str, int]] = {}
    for key, held in zip(keys, members, strict=False):
        if not held:
            continue
        leases = out.setdefault(key.removeprefix(prefix), {})
        for member in held:
            node = member.rpartition(":")[0]
            leases[node] = leases.get(node, 0) + 1
    return out


def _float(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
