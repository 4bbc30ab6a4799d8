"""Traffic counters for ``outrider show status``: an event subscriber.

Counts messages received and recipients delivered, bounced and deferred since start,
and in 10-second buckets over the last hour, so the last minute and the last hour are
read without keeping one entry per event; and bounces by bounce category since start
(for ``/metrics``: the categories are a closed set, so the labels stay bounded).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from outrider import __version__
from outrider.events.types import Bounced, Deferred, Delivered, Event, MessageQueued
from outrider.policy.bounce_category import OTHER
from outrider.queue.summary import iso

BUCKET = 10.0  # seconds per bucket
BUCKETS = 360  # one hour
KINDS = ("received", "delivered", "bounced", "deferred")


def kind_of(event: Event) -> str | None:
    """Which counter an event adds to (a received message counts once)."""
    if isinstance(event, MessageQueued):
        return "received"
    if isinstance(event, Delivered):
        return "delivered"
    if isinstance(event, Bounced):
        return "bounced"
    if isinstance(event, Deferred):
        return "deferred"
    return None


@dataclass
class TrafficCounters:
    clock: Callable[[], float]
    total: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    # bucket index (time // BUCKET) -> counts; at most BUCKETS + 1 kept
    buckets: dict[int, dict[str, int]] = field(default_factory=dict)
    bounce_categories: dict[str, int] = field(default_factory=dict)  # since start

    def handle(self, events: Sequence[Event]) -> None:
        for event in events:
            kind = kind_of(event)
            if kind is not None:
                self.add(kind, event.at)
                if kind == "bounced":
                    assert isinstance(event, Bounced)
                    category = event.category or OTHER
                    counts = self.bounce_categories
                    counts[category] = counts.get(category, 0) + 1

    def add(self, kind: str, at: float) -> None:
        self.total[kind] += 1
        index = int(at // BUCKET)
        bucket = self.buckets.get(index)
        if bucket is None:
            bucket = self.buckets[index] = dict.fromkeys(KINDS, 0)
            oldest = index - BUCKETS
            for stale in [i for i in self.buckets if i <= oldest]:
                del self.buckets[stale]
        bucket[kind] += 1

    def window(self, seconds: float) -> dict[str, int]:
        """Counts over about the last ``seconds`` (whole buckets, the current one too)."""
        now_index = int(self.clock() // BUCKET)
        first = now_index - int(seconds // BUCKET) + 1
        counts = dict.fromkeys(KINDS, 0)
        for index, bucket in self.buckets.items():
            if first <= index <= now_index:
                for kind, n in bucket.items():
                    counts[kind] += n
        return counts

    def snapshot(self) -> dict[str, dict[str, int]]:
        return {
            "last_minute": self.window(60),
            "last_hour": self.window(3600),
            "total": dict(self.total),
        }


def disk_free(path: Path) -> int | None:
    """Octets free for an unprivileged writer on the file system holding ``path``."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def overview(
    *,
    started: float,
    now: float,
    counters: TrafficCounters,
    connections_in: int | None,
    connections_out: int,
    spool_messages: int,
    spool_bytes: int,
    spool_dir: Path,
    delivery: tuple[str, str] = ("immediate", ""),
) -> dict[str, Any]:
    """``show status``: what the daemon is doing and how fast. ``connections_in`` is
    None when the listeners run in receiver processes (they count their own);
    ``delivery`` is whether new mail goes at once or waits for a queue run, and why."""
    return {
        "version": __version__,
        "started": iso(started),
        "uptime": max(0, int(now - started)),
        "connections": {"in": connections_in, "out": connections_out},
        "delivery": {"mode": delivery[0], "reason": delivery[1]},
        "traffic": counters.snapshot(),
        "spool": {
            "path": str(spool_dir),
            "messages": spool_messages,
            "bytes": spool_bytes,
            "free_bytes": disk_free(spool_dir),
        },
    }
