"""The bus subscriber that feeds every webhook's disk queue, off the delivery path.

:meth:`WebhookSubscriber.handle` only extends a list (it runs on the delivery path for
every batch of events); :meth:`run` wakes every :data:`FLUSH_EVERY` seconds, turns the
events into JSON once, and appends each webhook's lines to its queue with one write and
one fsync, in a worker thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from outrider.events.types import Event
from outrider.webhooks.payload import event_record, webhook_kind
from outrider.webhooks.queue import DiskQueue

log = logging.getLogger("outrider.webhooks")

FLUSH_EVERY = 0.2  # seconds: events reach the disk queue this soon


@dataclass(eq=False)
class Target:
    """One webhook as the subscriber sees it: the kinds it wants and its queue."""

    name: str
    kinds: frozenset[str]
    queue: DiskQueue
    lock: asyncio.Lock
    wakeup: asyncio.Event
    lines: list[bytes] = field(default_factory=list)


class WebhookSubscriber:
    def __init__(self, targets: Sequence[Target]) -> None:
        self.targets = list(targets)
        self._events: list[Event] = []

    def handle(self, events: Sequence[Event]) -> None:
        self._events.extend(events)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            await self.flush()

    def encode(self) -> None:
        """Turn the events taken so far into each target's lines (JSON, once per event)."""
        events, self._events = self._events, []
        wanted = self.targets
        for event in events:
            kind = webhook_kind(event)
            if kind is None:
                continue
            line: bytes | None = None
            for target in wanted:
                if kind in target.kinds:
                    if line is None:
                        line = json.dumps(event_record(event, kind), separators=(",", ":")).encode()
                    target.lines.append(line)

    async def flush(self) -> None:
        """Write what was taken to the queues (also at shutdown)."""
        self.encode()
        for target in self.targets:
            if not target.lines:
                continue
            lines, target.lines = target.lines, []
            try:
                async with target.lock:
                    await asyncio.to_thread(target.queue.append, lines)
            except OSError as exc:
                log.error("webhook %s: cannot queue %d event(s): %s", target.name, len(lines), exc)
                continue
            target.wakeup.set()
