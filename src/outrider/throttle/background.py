"""Fire-and-forget throttle calls from synchronous code (asyncio protocol callbacks).

``connection_lost`` cannot await, yet with a shared throttle releasing a connection's
count is a network call. It runs as a task; the task is referenced here until it ends
(the event loop keeps only weak references) and a failure is logged, not lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

__all__ = ["in_background"]

log = logging.getLogger("outrider.throttle")

_running: set[asyncio.Task[Any]] = set()


def in_background(work: Coroutine[Any, Any, object], name: str) -> None:
    """Run ``work`` on the running loop without waiting for it."""
    task = asyncio.get_running_loop().create_task(work, name=name)
    _running.add(task)
    task.add_done_callback(_finished)


def _finished(task: asyncio.Task[Any]) -> None:
    _running.discard(task)
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("throttle: %s failed: %s", task.get_name(), exc, exc_info=exc)
