"""The daemon's webhooks and event log: built from the config, rebuilt on reload.

Each ``[[webhook]]`` has a disk queue under ``[server] state-dir``/webhooks/NAME/ and a
sender task; one :class:`WebhookSubscriber` feeds them all. On reload the webhooks
whose settings are unchanged keep running; the others are stopped (their queue stays on
disk) and started again with the new settings. A webhook removed from the config stops;
its queue directory is left for the operator to delete.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from outrider.config.model import Config, WebhookSettings
from outrider.events.bus import EventBus
from outrider.local.srs import load_secret
from outrider.webhooks.event_log import EventLogFile
from outrider.webhooks.queue import DiskQueue
from outrider.webhooks.sender import WebhookSender
from outrider.webhooks.subscriber import Target, WebhookSubscriber

log = logging.getLogger("outrider.webhooks")


@dataclass(eq=False)
class Running:
    settings: WebhookSettings
    target: Target
    sender: WebhookSender
    task: asyncio.Task[None]


class Webhooks:
    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self.running: dict[str, Running] = {}
        self.subscriber = WebhookSubscriber([])
        self._flusher: asyncio.Task[None] | None = None
        self.event_log: EventLogFile | None = None

    def configure(self, config: Config) -> None:
        """Apply ``[[webhook]]`` and ``[event-log]`` (at start and on reload). A webhook
        whose secret file cannot be read is logged and left out."""
        wanted = {s.name: s for s in config.webhooks}
        for name in list(self.running):
            if wanted.get(name) != self.running[name].settings or self._new_secret(name):
                self._stop_one(name)
        base = config.server.state_dir / "webhooks"
        for name, settings in wanted.items():
            if name not in self.running:
                try:
                    self.running[name] = self._start_one(settings, base / name)
                except (OSError, ValueError) as exc:
                    log.error("webhook %s: not started: %s", name, exc)
        self.subscriber.targets = [r.target for r in self.running.values()]
        if self.running and self._flusher is None:
            self.bus.subscribe(self.subscriber)
            self._flusher = asyncio.get_running_loop().create_task(
                self.subscriber.run(), name="webhook-flusher"
            )
        self._configure_event_log(config.event_log.file)

    def _new_secret(self, name: str) -> bool:
        """The secret file was changed (a key rotation): the sender restarts with it."""
        running = self.running[name]
        try:
            return (
                load_secret(running.settings.secret_file, "webhook secret") != running.sender.secret
            )
        except (OSError, ValueError):
            return False  # reported when the webhook is started again; keep the old key

    def _configure_event_log(self, path: Path | None) -> None:
        current = self.event_log
        if current is not None and current.path != path:
            self.bus.unsubscribe(current)
            current.close()
            self.event_log = current = None
        if current is not None:
            current.reopen()
        elif path is not None:
            self.event_log = EventLogFile(path)
            self.bus.subscribe(self.event_log)

    def _start_one(self, settings: WebhookSettings, directory: Path) -> Running:
        secret = load_secret(settings.secret_file, "webhook secret")
        queue = DiskQueue(directory, max_bytes=settings.max_queue_size, name=settings.name)
        lock = asyncio.Lock()
        sender = WebhookSender(settings, queue, secret, lock)
        target = Target(settings.name, frozenset(settings.events), queue, lock, sender.wakeup)
        task = asyncio.get_running_loop().create_task(sender.run(), name=f"webhook-{settings.name}")
        task.add_done_callback(self._died)
        if queue.pending:
            log.info("webhook %s: %d event(s) queued from before", settings.name, queue.pending)
            sender.wakeup.set()
        return Running(settings, target, sender, task)

    def _died(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("webhook sender %s stopped", task.get_name(), exc_info=task.exception())

    def _stop_one(self, name: str) -> None:
        running = self.running.pop(name)
        running.task.cancel()

    def tick(self) -> None:
        """The daemon's once-a-second tick: the event log reaches the kernel."""
        if self.event_log is not None:
            self.event_log.flush()

    async def stop(self) -> None:
        """Queue what the subscriber holds, then stop the senders (their queues stay)."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self.subscriber.flush()
        for name in list(self.running):
            running = self.running[name]
            self._stop_one(name)
            await _cancelled(running.task)
        if self.event_log is not None:
            self.event_log.close()

    def status(self) -> dict[str, Any]:
        """Per webhook: events queued, sent, failed attempts, the last error."""
        return {
            name: {
                "queued": r.target.queue.pending + len(r.target.lines),
                "queue_bytes": r.target.queue.size,
                "sent": r.sender.stats.sent,
                "failures": r.sender.stats.failures,
                "dropped": r.target.queue.dropped + r.sender.stats.expired,
                "last_error": r.sender.stats.last_error,
            }
            for name, r in self.running.items()
        }


async def _cancelled(task: asyncio.Task[None], tries: int = 5) -> None:
    """Wait for a cancelled sender to end, cancelling again if it swallowed the first one:
    a cancellation that lands inside aiohttp's request timeout can come out as a
    TimeoutError, which the sender takes for a failed POST and backs off after (up to
    5 minutes), holding up the daemon's shutdown."""
    for _ in range(tries):
        done, _pending = await asyncio.wait({task}, timeout=1.0)
        if done:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                task.result()
            return
        task.cancel()
    log.error("webhook sender %s did not stop; left behind", task.get_name())
