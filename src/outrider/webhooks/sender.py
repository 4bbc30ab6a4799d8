"""Sends one webhook's queue: batches POSTed in order, retried with back-off until a 2xx.

A batch read from the queue is kept in memory until the receiver accepts it, so a
retry sends the same body under the same ``X-Outrider-Batch`` id (receivers can
de-duplicate); the cursor moves only after a 2xx. Events older than ``max-age`` when
their batch is read are dropped, and logged once per batch.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from outrider.config.model import WebhookSettings
from outrider.webhooks.queue import DiskQueue, Position
from outrider.webhooks.signing import backoff, client_error, signature

log = logging.getLogger("outrider.webhooks")


@dataclass
class SenderStats:
    sent: int = 0  # events the receiver accepted
    batches: int = 0
    failures: int = 0  # attempts that failed (every retry counts)
    expired: int = 0  # events dropped as older than max-age
    last_error: str = ""


@dataclass
class Batch:
    id: str
    body: bytes
    count: int  # lines read from the queue (acknowledged together)
    events: int  # events in the body (the lines that parsed and were not too old)
    end: Position


@dataclass
class WebhookSender:
    settings: WebhookSettings
    queue: DiskQueue
    secret: bytes
    lock: asyncio.Lock  # every queue call goes through it (the flusher appends concurrently)
    clock: Callable[[], float] = time.time
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    stats: SenderStats = field(default_factory=SenderStats)
    _failures_in_row: int = 0

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            batch: Batch | None = None
            while True:
                if batch is None:
                    await self._wait_for_events()
                    async with self.lock:
                        lines, end = await asyncio.to_thread(
                            self.queue.read, self.settings.batch_size
                        )
                    batch = self._make_batch(lines, end)
                    if batch.events == 0:
                        await self._ack(batch)
                        batch = None
                        continue
                if await self._post(session, batch):
                    await self._ack(batch)
                    self.stats.sent += batch.events
                    self.stats.batches += 1
                    self._failures_in_row = 0
                    batch = None
                else:
                    self.stats.failures += 1
                    self._failures_in_row += 1
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        # the stop's cancellation came out of aiohttp as a timeout
                        raise asyncio.CancelledError
                    await asyncio.sleep(backoff(self._failures_in_row))

    async def _wait_for_events(self) -> None:
        """Until a full batch is queued, or some events have waited ``batch-interval``."""
        while self.queue.pending == 0:
            self.wakeup.clear()
            await self.wakeup.wait()
        deadline = asyncio.get_running_loop().time() + self.settings.batch_interval
        while self.queue.pending < self.settings.batch_size:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return
            self.wakeup.clear()
            try:
                await asyncio.wait_for(self.wakeup.wait(), left)
            except TimeoutError:
                return

    def _make_batch(self, lines: list[bytes], end: Position) -> Batch:
        start = self.queue.cursor
        oldest = self.clock() - self.settings.max_age
        kept: list[bytes] = []
        too_old = bad = 0
        for line in lines:
            try:
                at = json.loads(line)["timestamp"]
            except (ValueError, KeyError, TypeError):
                bad += 1
                continue
            if not isinstance(at, int | float) or at < oldest:
                too_old += 1
                continue
            kept.append(line)
        if too_old:
            self.stats.expired += too_old
            log.warning(
                "webhook %s: dropped %d event(s) older than max-age", self.settings.name, too_old
            )
        if bad:
            log.warning("webhook %s: skipped %d unreadable queue line(s)", self.settings.name, bad)
        body = b"[" + b",".join(kept) + b"]"
        batch_id = f"{start.segment}-{start.offset}-{len(lines)}"
        return Batch(batch_id, body, len(lines), len(kept), end)

    async def _ack(self, batch: Batch) -> None:
        async with self.lock:
            await asyncio.to_thread(self.queue.ack, batch.end, batch.count)

    async def _post(self, session: aiohttp.ClientSession, batch: Batch) -> bool:
        stamp = int(self.clock())
        headers = dict(self.settings.headers)
        headers |= {
            "Content-Type": "application/json",
            "X-Outrider-Timestamp": str(stamp),
            "X-Outrider-Signature": signature(self.secret, stamp, batch.body),
            "X-Outrider-Batch": batch.id,
        }
        name = self.settings.name
        try:
            async with session.post(self.settings.url, data=batch.body, headers=headers) as reply:
                await reply.read()
                status = reply.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self._failed(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
            return False
        if 200 <= status < 300:
            if self.stats.last_error:
                log.info("webhook %s: delivering again", name)
                self.stats.last_error = ""
            return True
        self._failed(f"HTTP {status}")
        if client_error(status) and self._failures_in_row == 0:
            log.warning(
                "webhook %s: %s answered %d; retrying (the events stay queued): check the "
                "URL, the headers and the receiver's secret",
                name,
                self.settings.url,
                status,
            )
        return False

    def _failed(self, error: str) -> None:
        if self._failures_in_row == 0 or error != self.stats.last_error:
            log.warning(
                "webhook %s: POST failed (%s); retrying with back-off", self.settings.name, error
            )
        self.stats.last_error = error
