"""Adopting stored messages that no receiver handed over (see :mod:`outrider.runtime.handoff`).

A request (a receiver's channel ended, or a reconnected receiver asked) scans the
spool at once and once more after :data:`MIN_AGE`: the first scan takes the orphans
already old enough, the second the ones that were too young to tell from messages
whose frames were still in flight. Requests arriving while a scan is due are merged
into it. A message's frame arriving after all is ignored by the scheduler, which
knows the queue id by then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from outrider.message.envelope import Envelope
from outrider.spool.orphans import find_orphans

__all__ = ["MIN_AGE", "OrphanAdopter"]

log = logging.getLogger("outrider.handoff")

# A receiver hands a message over microseconds after its store; a file this old that
# the scheduler does not know lost its frame.
MIN_AGE = 5.0


class OrphanAdopter:
    def __init__(
        self,
        spool_dir: Path,
        known: Callable[[str], bool],
        submit: Callable[[Envelope, bytes | None], None],
        *,
        min_age: float = MIN_AGE,
    ) -> None:
        self.spool_dir = spool_dir
        self.known = known
        self.submit = submit
        self.min_age = min_age
        self.adopted = 0
        self._now_due = False
        self._later_due = False
        self._tasks: set[asyncio.Task[None]] = set()

    def request(self) -> None:
        """Scan now and once more after ``min_age``."""
        if not self._now_due:
            self._now_due = True
            self._spawn(self._scan_now(), "adopt-now")
        if not self._later_due:
            self._later_due = True
            self._spawn(self._scan_later(), "adopt-later")

    async def _scan_now(self) -> None:
        self._now_due = False
        await self.scan()

    async def _scan_later(self) -> None:
        await asyncio.sleep(self.min_age + 0.5)
        self._later_due = False
        await self.scan()

    async def scan(self) -> int:
        """Schedule every orphan found; returns how many."""
        try:
            found = await asyncio.to_thread(find_orphans, self.spool_dir, self.known, self.min_age)
        except OSError as exc:
            log.error("cannot scan the spool for unscheduled messages: %s", exc)
            return 0
        count = 0
        for envelope in found:
            if self.known(envelope.queue_id):
                continue  # its frame came after all
            self.submit(envelope, None)
            count += 1
        if count:
            self.adopted += count
            log.warning("scheduled %d stored message(s) that were never handed over", count)
        return count

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
