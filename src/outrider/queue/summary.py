"""The console's views of the queue: pure aggregation of queued recipients.

Rows come from the inventory (every pending recipient, deferred ones included) and
facts about the live delivery queues (mode, connections, last error) from the
scheduler; nothing here reads the clock or the scheduler itself.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


def iso(at: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC (``None`` stays ``None``)."""
    if at is None:
        return None
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


@dataclass(frozen=True, slots=True)
class QueuedRcpt:
    """One pending recipient, as the console shows it."""

    queue_id: str
    sender: str
    rcpt: str
    queue: str  # "destination/vmta"
    domain: str
    vmta: str
    job: str
    attempts: int
    next_attempt: float  # 0 or past: due now
    last_error: str
    size: int
    received_at: float
    state: str  # queued, deferred or held

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.queue_id,
            "sender": self.sender,
            "rcpt": self.rcpt,
            "queue": self.queue,
            "job": self.job,
            "attempts": self.attempts,
            "next_attempt": iso(self.next_attempt) if self.state == "deferred" else None,
            "last_error": self.last_error,
            "state": self.state,
        }


@dataclass(frozen=True, slots=True)
class LiveQueue:
    """What the scheduler knows about a delivery queue beyond its recipients."""

    name: str
    domain: str  # the domain whose policy governs it
    vmta: str
    mode: str  # normal, backoff or paused
    reason: str  # why it is not normal ("" when it is)
    connections: int
    last_error: str


@dataclass(slots=True)
class _Acc:
    recipients: int = 0
    sizes: dict[str, int] = field(default_factory=dict)  # queue id -> size
    oldest: float = 0.0
    next_attempt: float = 0.0
    last_error: str = ""
    domains: set[str] = field(default_factory=set)

    def add(self, row: QueuedRcpt) -> None:
        self.recipients += 1
        self.sizes[row.queue_id] = row.size
        self.domains.add(row.domain)
        if not self.oldest or row.received_at < self.oldest:
            self.oldest = row.received_at
        if row.state == "deferred" and (
            not self.next_attempt or row.next_attempt < self.next_attempt
        ):
            self.next_attempt = row.next_attempt
        if row.last_error:
            self.last_error = row.last_error


def _group(rows: Iterable[QueuedRcpt], key: str) -> dict[str, _Acc]:
    groups: dict[str, _Acc] = {}
    for row in rows:
        name = getattr(row, key)
        acc = groups.get(name)
        if acc is None:
            acc = groups[name] = _Acc()
        acc.add(row)
    return groups


def _age(acc: _Acc, now: float) -> int:
    return max(0, int(now - acc.oldest)) if acc.oldest else 0


SORT_KEYS = {"recipients": "recipients", "age": "oldest_age", "size": "bytes"}


def queue_views(
    rows: Sequence[QueuedRcpt],
    live: Sequence[LiveQueue],
    now: float,
    *,
    domain: str = "",
    vmta: str = "",
    mode: str = "",
    sort: str = "recipients",
    limit: int = 0,
) -> list[dict[str, Any]]:
    """``show queues``: one object per queue with mail or connections, or not normal."""
    groups = _group(rows, "queue")
    facts = {q.name: q for q in live}
    held = {row.queue for row in rows if row.state == "held"}
    views: list[dict[str, Any]] = []
    for name in sorted(set(groups) | set(facts)):
        acc = groups.get(name) or _Acc()
        fact = facts.get(name)
        if fact is None:  # not routed since the start: mail waiting for its retry time
            dest, _, queue_vmta = name.rpartition("/")
            if name in held:
                fact = LiveQueue(name, dest, queue_vmta, "paused", "held by the operator", 0, "")
            else:
                fact = LiveQueue(name, dest, queue_vmta, "normal", "", 0, "")
        if not acc.recipients and not fact.connections and fact.mode == "normal":
            continue
        if domain and domain != fact.domain and domain not in acc.domains:
            continue
        if (vmta and vmta != fact.vmta) or (mode and mode != fact.mode):
            continue
        views.append(
            {
                "queue": name,
                "domain": fact.domain,
                "vmta": fact.vmta,
                "recipients": acc.recipients,
                "messages": len(acc.sizes),
                "bytes": sum(acc.sizes.values()),
                "oldest_age": _age(acc, now),
                "connections": fact.connections,
                "mode": fact.mode,
                "reason": fact.reason,
                "next_attempt": iso(acc.next_attempt or None),
                "last_error": fact.last_error or acc.last_error,
            }
        )
    views.sort(key=lambda v: (-v[SORT_KEYS.get(sort, "recipients")], v["queue"]))
    return views[:limit] if limit > 0 else views


def domain_views(rows: Sequence[QueuedRcpt], now: float, limit: int = 0) -> list[dict[str, Any]]:
    """``show topdomains``: recipient domains by queued recipients."""
    views: list[dict[str, Any]] = [
        {
            "domain": name,
            "recipients": acc.recipients,
            "messages": len(acc.sizes),
            "bytes": sum(acc.sizes.values()),
            "oldest_age": _age(acc, now),
        }
        for name, acc in _group(rows, "domain").items()
    ]
    views.sort(key=lambda v: (-v["recipients"], v["domain"]))
    return views[:limit] if limit > 0 else views


def vmta_views(
    rows: Sequence[QueuedRcpt],
    live: Sequence[LiveQueue],
    sources: Mapping[str, str | None],
    disabled_ips: Collection[str] = (),
) -> list[dict[str, Any]]:
    """``show vmtas``: every virtual MTA, configured (``sources``: name to source IP) or
    in use, with its queues and whether the operator disabled its source IP."""
    groups = _group(rows, "vmta")
    queues: dict[str, set[str]] = {}
    connections: dict[str, int] = {}
    for row in rows:
        queues.setdefault(row.vmta, set()).add(row.queue)
    for q in live:
        connections[q.vmta] = connections.get(q.vmta, 0) + q.connections
        if q.connections or q.mode != "normal":
            queues.setdefault(q.vmta, set()).add(q.name)
    names = sorted(set(sources) | set(groups) | set(connections))
    return [
        {
            "vmta": name,
            "source_ip": sources.get(name),
            "disabled": sources.get(name) in disabled_ips,
            "queues": len(queues.get(name, ())),
            "recipients": groups[name].recipients if name in groups else 0,
            "messages": len(groups[name].sizes) if name in groups else 0,
            "connections": connections.get(name, 0),
            "backoff_queues": sum(1 for q in live if q.vmta == name and q.mode == "backoff"),
        }
        for name in names
    ]


def job_views(rows: Sequence[QueuedRcpt], paused: Iterable[str]) -> list[dict[str, Any]]:
    """``show jobs``: every job with queued mail, and every paused one."""
    groups = _group((r for r in rows if r.job), "job")
    paused_set = set(paused)
    return [
        {
            "job": name,
            "recipients": groups[name].recipients if name in groups else 0,
            "messages": len(groups[name].sizes) if name in groups else 0,
            "paused": name in paused_set,
        }
        for name in sorted(set(groups) | paused_set)
    ]
