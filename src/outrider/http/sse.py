"""``GET /api/v1/events``: the bus's events as server-sent events.

:class:`EventStream` subscribes to the bus only while a client is connected, so the
message path pays nothing when nobody watches. Each client has a bounded buffer: a
client that falls more than :data:`CLIENT_BUFFER` events behind is dropped (it gets a
final ``event: dropped`` and may reconnect), never slowing delivery.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from outrider.events.types import (
    Deferred,
    Event,
    Feedback,
    MessageDone,
    MessageQueued,
    QueueEvent,
    RecipientEvent,
    RemoteBounce,
)
from outrider.queue.summary import iso
from outrider.runtime.stats import kind_of

TYPES = (
    "received",
    "delivered",
    "bounced",
    "deferred",
    "queue",
    "done",
    "complained",
    "unsubscribed",
)
CLIENT_BUFFER = 1000
KEEPALIVE = 15.0  # seconds between comments on an idle stream


def event_type(event: Event) -> str | None:
    kind = kind_of(event)  # received, delivered, bounced, deferred: as the traffic counters
    if kind is not None:
        return kind
    if isinstance(event, QueueEvent):
        return "queue"
    if isinstance(event, MessageDone):
        return "done"
    if isinstance(event, Feedback):
        return event.kind  # "complained" or "unsubscribed"
    if isinstance(event, RemoteBounce):
        return "bounced"  # with "async": true
    return None  # NoticeDue: internal


def event_json(event: Event) -> dict[str, Any] | None:
    """The stream's object for one event (None: not streamed)."""
    kind = event_type(event)
    if kind is None:
        return None
    out: dict[str, Any] = {"type": kind, "time": iso(event.at)}
    if isinstance(event, RecipientEvent):
        out |= {
            "id": event.message.queue_id,
            "rcpt": event.recipient,
            "queue": event.queue,
            "vmta": event.vmta,
            "status": event.status,
            "diagnostic": event.diagnostic,
            "category": event.category,  # "" for a delivery
        }
        if isinstance(event, Deferred):
            out["next_attempt"] = iso(event.next_attempt)
    elif isinstance(event, MessageQueued):
        out |= {
            "id": event.message.queue_id,
            "sender": event.message.sender,
            "recipients": event.recipients,
            "size": event.message.size,
            "vmta": event.vmta,
        }
    elif isinstance(event, QueueEvent):
        out |= {
            "queue": event.queue,
            "vmta": event.vmta,
            "action": event.action,
            "diagnostic": event.reply,
        }
    elif isinstance(event, MessageDone):
        out["id"] = event.queue_id
    elif isinstance(event, Feedback):
        out |= {
            "id": event.queue_id,
            "rcpt": event.recipient,
            "sender_domain": event.sender_domain,
            "job_id": event.job_id,
            "detail": event.detail,
        }
    elif isinstance(event, RemoteBounce):
        out |= {
            "id": event.queue_id,
            "rcpt": event.recipient,
            "status": event.status,
            "diagnostic": event.diagnostic,
            "category": event.category,
            "async": True,
        }
    return out


def frame(data: dict[str, Any], event: str | None = None) -> bytes:
    """One SSE frame: optional ``event:`` line, one ``data:`` line, a blank line."""
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


KEEPALIVE_FRAME = b": keep-alive\n\n"


def parse_types(raw: str) -> frozenset[str]:
    """``?types=a,b``; ValueError naming an unknown type."""
    wanted = frozenset(t.strip() for t in raw.split(",") if t.strip())
    unknown = sorted(wanted - set(TYPES))
    if unknown:
        raise ValueError(f"unknown event type {unknown[0]!r} (known: {', '.join(TYPES)})")
    return wanted or frozenset(TYPES)


@dataclass(eq=False)
class Client:
    types: Collection[str]
    limit: int = CLIENT_BUFFER
    pending: deque[bytes] = field(default_factory=deque)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    dropped: bool = False
    closed: bool = False

    def offer(self, kind: str, payload: bytes) -> bool:
        """Queue one frame; False (and dropped) when the client is too far behind."""
        if kind not in self.types:
            return True
        if len(self.pending) >= self.limit:
            self.dropped = True
            self.pending.clear()
            self.wakeup.set()
            return False
        self.pending.append(payload)
        self.wakeup.set()
        return True

    def close(self) -> None:
        self.closed = True
        self.wakeup.set()

    def take(self) -> list[bytes]:
        frames = list(self.pending)
        self.pending.clear()
        self.wakeup.clear()
        return frames


class EventStream:
    """The bus subscriber behind every SSE client; subscribed only while one is connected."""

    def __init__(
        self, subscribe: Callable[[Any], None], unsubscribe: Callable[[Any], None]
    ) -> None:
        self._subscribe = subscribe
        self._unsubscribe = unsubscribe
        self.clients: set[Client] = set()

    def add(self, client: Client) -> None:
        if not self.clients:
            self._subscribe(self)
        self.clients.add(client)

    def remove(self, client: Client) -> None:
        if client in self.clients:
            self.clients.discard(client)
            if not self.clients:
                self._unsubscribe(self)

    def close_all(self) -> None:
        for client in list(self.clients):
            client.close()

    def handle(self, events: Sequence[Event]) -> None:
        if not self.clients:
            return
        for event in events:
            data = event_json(event)
            if data is None:
                continue
            payload = frame(data)
            for client in list(self.clients):
                if not client.offer(data["type"], payload):
                    self.remove(client)
