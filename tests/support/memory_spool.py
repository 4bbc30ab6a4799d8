"""An in-memory stand-in for the Spool interface, for scheduling tests."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from outrider.message.envelope import Envelope, Recipient


class MemorySpool:
    """The Spool interface without a disk, for scheduling tests."""

    def __init__(self) -> None:
        self.bodies: dict[str, bytes] = {}

    async def store(self, envelope: Envelope, body: bytes) -> None:
        self.bodies[envelope.queue_id] = body

    async def load_body(self, queue_id: str) -> bytes:
        return self.bodies[queue_id]

    async def record(self, envelope: Envelope, recipients: Sequence[Recipient]) -> None:
        return None

    async def remove(self, queue_id: str) -> None:
        self.bodies.pop(queue_id, None)

    def recover(self) -> Iterator[Envelope]:
        return iter(())

    async def close(self) -> None:
        return None
