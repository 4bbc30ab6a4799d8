"""Where a stored message goes next: the scheduler, in this process or another.

A sink is told about a message only after the spool has made it durable, so losing
the sink (a dead delivery process) loses no mail: the next start recovers it from the
spool. A sink that cannot take the message raises :class:`SinkUnavailableError`; the
message is still acknowledged (it is on disk) and is scheduled from the spool.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from outrider.message.envelope import Envelope


class SinkUnavailableError(Exception):
    """The next stage cannot take messages now (e.g. the delivery process is gone)."""


class Sink(Protocol):
    def accept(self, envelope: Envelope, body: bytes | None) -> None:
        """Take a stored message. Synchronous: it only hands over, never waits. ``body``
        is None for one too big to hold in memory: it is read from the spool."""
        ...


@dataclass(frozen=True, slots=True)
class SchedulerSink:
    """Single-process mode: straight to the scheduler's ``submit``."""

    submit: Callable[[Envelope, bytes | None], None]

    def accept(self, envelope: Envelope, body: bytes | None) -> None:
        self.submit(envelope, body)


class HeldSink:
    """Keeps stored messages until the caller releases them: a DSN is scheduled only
    once its original has durably recorded that the notice is stored."""

    def __init__(self) -> None:
        self.held: dict[str, tuple[Envelope, bytes | None]] = {}

    def accept(self, envelope: Envelope, body: bytes | None) -> None:
        self.held[envelope.queue_id] = (envelope, body)

    def release(self, queue_id: str) -> tuple[Envelope, bytes | None] | None:
        return self.held.pop(queue_id, None)
