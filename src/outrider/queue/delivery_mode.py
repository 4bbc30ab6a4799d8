"""Deliver on arrival or hold for the next queue run (Exim's queue_only family).

New mail is delivered at once unless ``queue-only`` says to store it only, the load
average is above ``queue-only-load``, or ``queue-remote-only`` holds remote mail while
local mail goes straight into its mailboxes. Held mail is attempted at the next queue
run: a tick every ``queue-run-interval``, aligned to the clock, so mail held at 10:01
and 10:04 both go at 10:05 (with a 5-minute interval) as one batch.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

LOAD_EVERY = 5.0  # seconds between two readings of the load average


@dataclass(frozen=True, slots=True)
class DeliveryMode:
    local_now: bool  # mail for local domains is delivered on arrival
    remote_now: bool  # remote mail is delivered on arrival
    reason: str  # "" when everything is delivered at once

    @property
    def name(self) -> str:
        if self.local_now and self.remote_now:
            return "immediate"
        return "queue-remote-only" if self.local_now else "queue-only"


IMMEDIATE = DeliveryMode(True, True, "")


def delivery_mode(
    *, queue_only: bool, queue_only_load: float | None, queue_remote_only: bool, load: float
) -> DeliveryMode:
    if queue_only:
        return DeliveryMode(False, False, "queue-only is set")
    if queue_only_load is not None and load > queue_only_load:
        return DeliveryMode(
            False, False, f"load average {load:.2f} is above queue-only-load {queue_only_load:g}"
        )
    if queue_remote_only:
        return DeliveryMode(True, False, "queue-remote-only is set")
    return IMMEDIATE


def next_queue_run(now: float, interval: float) -> float:
    """The first queue run strictly after ``now``."""
    return (math.floor(now / interval) + 1) * interval


def one_minute_load() -> float:
    return os.getloadavg()[0]


class LoadReading:
    """The 1-minute load average, read at most every :data:`LOAD_EVERY` seconds."""

    def __init__(
        self,
        read: Callable[[], float] = one_minute_load,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.read = read
        self.clock = clock
        self.value = 0.0
        self.at = -math.inf

    def current(self) -> float:
        now = self.clock()
        if now - self.at >= LOAD_EVERY:
            self.at = now
            try:
                self.value = self.read()
            except OSError:  # no load average on this system: never "loaded"
                self.value = 0.0
        return self.value
