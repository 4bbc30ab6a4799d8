"""``/metrics`` rendering: valid text format 0.0.4, bounded queue labels, the histogram."""

from __future__ import annotations

import math
import re
from typing import Any

from outrider.events.types import Delivered, MessageInfo
from outrider.http.metrics import LatencyHistogram, Snapshot, fold_queues, render
from outrider.policy.bounce_category import CATEGORIES

SAMPLE = re.compile(
    r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*=\"(?:[^\"\\\n]|\\[\\n\"])*\",?)*\})?"
    r" (\S+)$"
)
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """A strict little parser of the text format: every line a HELP, a TYPE or a sample of
    the family last typed (histograms: _bucket, _sum, _count)."""
    assert text.endswith("\n")
    families: dict[str, list[tuple[dict[str, str], float]]] = {}
    kinds: dict[str, str] = {}
    current = ""
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped")
            assert name not in kinds, f"{name} typed twice"
            kinds[name] = kind
            current = name
            families[name] = []
            continue
        found = SAMPLE.match(line)
        assert found, f"bad line {line!r}"
        name = found.group(1)
        allowed = {current}
        if kinds[current] == "histogram":
            allowed = {f"{current}_bucket", f"{current}_sum", f"{current}_count"}
        assert name in allowed, f"{name} outside its family"
        labels = dict(LABEL.findall(found.group(2) or ""))
        families[current].append((labels | {"__name__": name}, float(found.group(3))))
    return families


def queue(name: str, recipients: int, mode: str = "normal") -> dict[str, Any]:
    return {
        "queue": name,
        "recipients": recipients,
        "messages": recipients,
        "bytes": recipients * 100,
        "oldest_age": recipients,
        "connections": 1,
        "mode": mode,
    }


def snapshot(**kwargs: Any) -> Snapshot:
    base: dict[str, Any] = {
        "totals": {"received": 7, "delivered": 5, "bounced": 2, "deferred": 3},
        "queues": [],
        "top": 2,
        "connections_in": 4,
        "connections_out": 1,
        "spool_messages": 3,
        "spool_bytes": 3000,
        "uptime": 12.5,
        "latency": LatencyHistogram(),
    }
    return Snapshot(**(base | kwargs))


def value(families: dict[str, Any], name: str, **labels: str) -> float:
    for family in families.values():
        for got, v in family:
            if got["__name__"] == name and all(got.get(k) == x for k, x in labels.items()):
                return float(v)
    raise KeyError((name, labels))


def test_counters_and_gauges() -> None:
    counts = {"bad-mailbox": 1, "quota-issues": 1}
    f = parse(render(snapshot(bounce_categories=counts)))
    assert value(f, "outrider_messages_received_total") == 7
    assert value(f, "outrider_recipients_total", result="deferred") == 3
    assert value(f, "outrider_bounces_total", bounce_category="bad-mailbox") == 1
    assert value(f, "outrider_bounces_total", bounce_category="quota-issues") == 1
    assert value(f, "outrider_connections", direction="in") == 4
    assert value(f, "outrider_spool_bytes") == 3000
    assert value(f, "outrider_uptime_seconds") == 12.5


def test_every_bounce_category_is_a_series_from_the_start() -> None:
    """A closed label set: each category is reported, at 0 until it bounces."""
    samples = parse(render(snapshot()))["outrider_bounces_total"]
    assert {labels["bounce_category"] for labels, _ in samples} == set(CATEGORIES)
    assert all(float(v) == 0 for _, v in samples)


def test_connections_in_may_be_unknown() -> None:
    f = parse(render(snapshot(connections_in=None)))
    assert value(f, "outrider_connections", direction="out") == 1
    assert not [s for s in f["outrider_connections"] if s[0].get("direction") == "in"]


def test_queue_labels_are_bounded_top_n_plus_other() -> None:
    queues = [queue(f"q{i}.test/default", i, "backoff" if i == 1 else "normal") for i in range(6)]
    queues.append(queue('we"ird\\name/x', 100, "paused"))
    f = parse(render(snapshot(queues=queues)))
    labels = {s[0]["queue"] for s in f["outrider_queue_recipients"]}
    assert labels == {'we\\"ird\\\\name/x', "q5.test/default", "other"}
    assert value(f, "outrider_queue_recipients", queue="other") == 0 + 1 + 2 + 3 + 4
    assert value(f, "outrider_queue_oldest_age_seconds", queue="other") == 4
    assert value(f, "outrider_queue_mode", queue="other", mode="backoff") == 1
    assert value(f, "outrider_queue_mode", queue="q5.test/default", mode="normal") == 1
    assert value(f, "outrider_queue_mode", queue="q5.test/default", mode="paused") == 0
    assert [r["queue"] for r in fold_queues(queues, 10)][-1] == "other"


def test_latency_histogram_from_delivered_events() -> None:
    hist = LatencyHistogram()
    info = MessageInfo("Q1", "s@x", 100.0, "", "", "", 10)
    events = [
        Delivered(100.0 + d, info, "r@x", "", "2.0.0", "250 ok", "mx", "q/default", "default")
        for d in (0.05, 3.0, 7200.0, 1e6)
    ]
    hist.handle(events)
    f = parse(render(snapshot(latency=hist)))
    buckets = [s for s in f["outrider_delivery_latency_seconds"] if "le" in s[0]]
    counts = [v for _, v in buckets]
    assert counts == sorted(counts)  # cumulative
    assert value(f, "outrider_delivery_latency_seconds_bucket", le="0.1") == 1
    assert value(f, "outrider_delivery_latency_seconds_bucket", le="5") == 2
    assert value(f, "outrider_delivery_latency_seconds_bucket", le="+Inf") == 4
    assert value(f, "outrider_delivery_latency_seconds_count") == 4
    assert math.isclose(value(f, "outrider_delivery_latency_seconds_sum"), 1007203.05)
