"""Run a coroutine on uvloop when it is installed, else on asyncio's default loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

log = logging.getLogger("outrider.runtime")


def run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a declared dependency on Linux
        log.debug("event loop: asyncio (uvloop is not installed)")
        return asyncio.run(coro)
    log.debug("event loop: uvloop")
    result: T = uvloop.run(coro)
    return result
