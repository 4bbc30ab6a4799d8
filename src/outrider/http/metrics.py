"""``GET /metrics``: Prometheus text exposition format 0.0.4, written here (it is simple).

Everything is read at scrape time from counters the daemon keeps anyway (the traffic
counters, the queue look-up, the overview), except the delivery latency histogram,
which :class:`LatencyHistogram` fills as an event subscriber: one bucket add per
delivered recipient.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from outrider.events.types import Delivered, Event
from outrider.policy.bounce_category import CATEGORIES

# seconds from received to delivered
LATENCY_BUCKETS = (
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
    14400.0,
    86400.0,
)
MODES = ("normal", "backoff", "paused")
QUEUE_GAUGES = (
    ("recipients", "outrider_queue_recipients", "Recipients waiting in the queue."),
    ("messages", "outrider_queue_messages", "Messages with recipients in the queue."),
    ("bytes", "outrider_queue_bytes", "Octets of the queue's messages."),
    ("oldest_age", "outrider_queue_oldest_age_seconds", "Age of the queue's oldest message."),
    ("connections", "outrider_queue_connections", "Open delivery connections of the queue."),
)
OTHER = "other"


@dataclass
class LatencyHistogram:
    """Delivery latency (received to delivered), cumulative from start."""

    bounds: tuple[float, ...] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    total: float = 0.0
    count: int = 0

    def handle(self, events: Sequence[Event]) -> None:
        for event in events:
            if type(event) is Delivered:
                self.observe(event.at - event.message.received_at)

    def observe(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.total += seconds
        self.count += 1


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one scrape reports, gathered by the server from the daemon's own numbers."""

    totals: dict[str, int]  # TrafficCounters.total: received, delivered, bounced, deferred
    queues: list[dict[str, Any]]  # queue_views rows, sorted by recipients
    top: int
    connections_in: int | None
    connections_out: int
    spool_messages: int
    spool_bytes: int
    uptime: float
    latency: LatencyHistogram
    webhooks: dict[str, dict[str, Any]] = field(default_factory=dict)  # overview["webhooks"]
    bounce_categories: dict[str, int] = field(default_factory=dict)  # TrafficCounters'
    cluster: dict[str, Any] | None = None  # overview["cluster"], with [cluster] redis


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in labels.items()) + "}"


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float, labels: dict[str, str] | None = None) -> None:
        self.lines.append(f"{name}{_labels(labels or {})} {_number(value)}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def fold_queues(queues: Iterable[dict[str, Any]], top: int) -> list[dict[str, Any]]:
    """The ``top`` queues with the most recipients, then one ``other`` row summing the
    rest (its ``mode_counts`` say how many of them are in each mode)."""
    ranked = sorted(queues, key=lambda q: (-int(q.get("recipients", 0)), str(q["queue"])))
    shown = ranked[:top]
    rest = ranked[top:]
    other: dict[str, Any] = {"queue": OTHER, "mode_counts": dict.fromkeys(MODES, 0)}
    for key, _, _ in QUEUE_GAUGES:
        values = [int(q.get(key) or 0) for q in rest]
        other[key] = max(values, default=0) if key == "oldest_age" else sum(values)
    for q in rest:
        mode = q.get("mode", "normal")
        if mode in other["mode_counts"]:
            other["mode_counts"][mode] += 1
    return [*shown, other]


def render(snap: Snapshot) -> str:
    w = _Writer()
    w.family("outrider_messages_received_total", "counter", "Messages accepted and queued.")
    w.sample("outrider_messages_received_total", snap.totals.get("received", 0))
    w.family("outrider_recipients_total", "counter", "Delivery results per recipient attempt.")
    for result in ("delivered", "bounced", "deferred"):
        w.sample("outrider_recipients_total", snap.totals.get(result, 0), {"result": result})
    w.family("outrider_bounces_total", "counter", "Bounced recipients by bounce category.")
    # Every category, from the start at 0: a closed set (docs/bounces.md), so a rate()
    # over a category that bounced for the first time starts from a known 0.
    categories = dict.fromkeys(CATEGORIES, 0) | snap.bounce_categories
    for category, n in categories.items():
        w.sample("outrider_bounces_total", n, {"bounce_category": category})

    rows = fold_queues(snap.queues, snap.top)
    for key, name, help_text in QUEUE_GAUGES:
        w.family(
            name, "gauge", help_text + f' Top queues by recipients, the rest as queue="{OTHER}".'
        )
        for row in rows:
            w.sample(name, int(row.get(key) or 0), {"queue": str(row["queue"])})
    w.family(
        "outrider_queue_mode",
        "gauge",
        f'1 for the queue\'s current mode, else 0; for queue="{OTHER}" the number of queues '
        "in each mode.",
    )
    for row in rows:
        for mode in MODES:
            if row["queue"] == OTHER:
                value = row["mode_counts"][mode]
            else:
                value = 1 if row.get("mode") == mode else 0
            w.sample("outrider_queue_mode", value, {"queue": str(row["queue"]), "mode": mode})

    w.family("outrider_connections", "gauge", "Open SMTP connections by direction.")
    if snap.connections_in is not None:
        w.sample("outrider_connections", snap.connections_in, {"direction": "in"})
    w.sample("outrider_connections", snap.connections_out, {"direction": "out"})
    w.family("outrider_spool_messages", "gauge", "Messages in the spool.")
    w.sample("outrider_spool_messages", snap.spool_messages)
    w.family("outrider_spool_bytes", "gauge", "Octets of the messages in the spool.")
    w.sample("outrider_spool_bytes", snap.spool_bytes)

    h = snap.latency
    name = "outrider_delivery_latency_seconds"
    w.family(name, "histogram", "Seconds from receipt to delivery, per delivered recipient.")
    cumulative = 0
    for bound, n in zip((*h.bounds, math.inf), h.counts, strict=True):
        cumulative += n
        w.sample(f"{name}_bucket", cumulative, {"le": _number(bound)})
    w.sample(f"{name}_sum", h.total)
    w.sample(f"{name}_count", h.count)
    _webhooks(w, snap.webhooks)
    _cluster(w, snap.cluster)
    w.family("outrider_uptime_seconds", "gauge", "Seconds since the daemon started.")
    w.sample("outrider_uptime_seconds", snap.uptime)
    return w.text()


WEBHOOK_METRICS = (
    ("queued", "outrider_webhook_queued_events", "gauge", "Events waiting in the webhook's queue."),
    ("sent", "outrider_webhook_sent_total", "counter", "Events the receiver accepted (2xx)."),
    ("failures", "outrider_webhook_failures_total", "counter", "POSTs that failed (retried)."),
    ("dropped", "outrider_webhook_dropped_total", "counter", "Events dropped (max-age, cap)."),
)


def _cluster(w: _Writer, cluster: dict[str, Any] | None) -> None:
    """With ``[cluster] redis`` only: whether Redis answers, and the fallback flag."""
    if cluster is None:
        return
    gauges = (
        (
            "outrider_cluster_redis_up",
            "1 when Redis answers, else 0.",
            "redis_up",
        ),
        (
            "outrider_cluster_fallback",
            "1 while local fallback limits apply.",
            "fallback",
        ),
        ("outrider_cluster_live_nodes", "Live nodes last seen in Redis.", "live_nodes"),
        ("outrider_cluster_leases", "Connection leases this node holds.", "leases"),
    )
    for name, help_text, key in gauges:
        w.family(name, "gauge", help_text)
        w.sample(name, int(cluster.get(key) or 0))
    w.family("outrider_cluster_redis_failures_total", "counter", "Redis calls failed or timed out.")
    w.sample("outrider_cluster_redis_failures_total", int(cluster.get("failures") or 0))


def _webhooks(w: _Writer, hooks: dict[str, dict[str, Any]]) -> None:
    """Per ``[[webhook]]``, since start; nothing when none is configured."""
    if not hooks:
        return
    for key, name, kind, help_text in WEBHOOK_METRICS:
        w.family(name, kind, help_text)
        for hook, numbers in sorted(hooks.items()):
            w.sample(name, int(numbers.get(key, 0)), {"webhook": hook})
