"""The event bus: publish is cheap and never blocks; subscribers get batches.

Events published during one pass of the event loop are handed to every subscriber
together on the next pass (one ``call_soon`` per batch, not per event), so the
delivery path pays a list append per event. A subscriber that raises is logged and
keeps its subscription: an accounting disk error must not stop deliveries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from outrider.events.types import Event

log = logging.getLogger("outrider.events")


class Subscriber(Protocol):
    def handle(self, events: Sequence[Event]) -> None:
        """Take a batch of events in publish order; must not block (spawn tasks for I/O)."""
        ...


class EventBus:
    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._subscribers: list[Subscriber] = []
        self._pending: list[Event] = []
        self._loop = loop
        self._scheduled = False

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.remove(subscriber)

    def publish(self, event: Event) -> None:
        self._pending.append(event)
        self._schedule()

    def publish_many(self, events: Sequence[Event]) -> None:
        if events:
            self._pending.extend(events)
            self._schedule()

    def _schedule(self) -> None:
        if self._scheduled:
            return
        loop = self._loop
        if loop is None:
            try:
                loop = self._loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop (a synchronous test): deliver now
                self.flush()
                return
        self._scheduled = True
        loop.call_soon(self.flush)

    def flush(self) -> None:
        """Hand every pending event to the subscribers now (also used at shutdown)."""
        self._scheduled = False
        while self._pending:
            batch, self._pending = self._pending, []
            for subscriber in list(self._subscribers):
                try:
                    subscriber.handle(batch)
                except Exception:
                    log.exception("event subscriber %r failed", subscriber)
