"""Run a coroutine to its end without an event loop.

LocalThrottle's awaitable methods must never suspend (that is what makes each call
atomic under asyncio); ``done`` proves it by refusing any that does. ``drive`` also
runs coroutines that only ever ``await asyncio.sleep(0)``, like the shared stand-in.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def done(coro: Coroutine[Any, Any, T]) -> T:
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    coro.close()
    raise AssertionError("the coroutine suspended")


def drive(coro: Coroutine[Any, Any, T]) -> T:
    while True:
        try:
            coro.send(None)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
