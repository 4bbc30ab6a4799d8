"""An in-memory stand-in for the Spool interface, for scheduling tests."""

from __future__ import annotations

import copy
import os
import tempfile
from collections.abc import Iterator, Sequence

from outrider.message.envelope import Envelope, Recipient
from outrider.spool import temps
from outrider.spool.base import (
    DuplicateMessageError,
    SpoolError,
    SpoolFullError,
    UnknownMessageError,
)
from outrider.spool.spill import SpilledBody, SpillFile


def read_spilled(body: SpilledBody) -> bytes:
    """The octets of a spilled body, taking its file as a store does (it is removed);
    raises the error of a failed spill write."""
    tail = body.tail
    fd = tail.detach()
    try:
        rest = os.pread(fd, tail.size, tail.reserve)
    finally:
        os.close(fd)
        os.unlink(tail.path)
        temps.discard(tail.path)
    return body.head + rest


class SpillDir:
    """Spill files for a spool without a directory of its own (a temp dir, made once)."""

    def __init__(self) -> None:
        self.directory = ""

    def spill(self, head_len: int) -> SpillFile:
        if not self.directory:
            self.directory = tempfile.mkdtemp(prefix="outrider-spill-")
        return SpillFile(self.directory, head_len)


class MemorySpool:
    """The Spool interface without a disk, for scheduling tests.

    ``saved`` holds a copy of each message's envelope as last made durable, so a test
    can "crash" and restore from it; ``fail_*`` make the next calls fail like a full
    disk would.
    """

    def __init__(self) -> None:
        self.bodies: dict[str, bytes] = {}
        self.saved: dict[str, Envelope] = {}
        self.removed: list[str] = []
        self.records = 0
        # the recipients each record() call was given, by address: like the disk spool,
        # a record carries the changed recipients' states only
        self.recorded: list[list[str]] = []
        self.fail_record = 0  # fail this many record() calls
        self.fail_store = 0  # fail this many store() calls
        self.spills = SpillDir()

    def spill(self, head_len: int) -> SpillFile:
        return self.spills.spill(head_len)

    async def store(self, envelope: Envelope, body: bytes | SpilledBody) -> None:
        if not isinstance(body, bytes):
            body = read_spilled(body)
        if self.fail_store:
            self.fail_store -= 1
            raise SpoolFullError("spool store failed: no space left on device")
        if envelope.queue_id in self.bodies:
            raise DuplicateMessageError(f"queue id {envelope.queue_id} already in the spool")
        self.bodies[envelope.queue_id] = body
        self.saved[envelope.queue_id] = copy.deepcopy(envelope)

    async def load_body(self, queue_id: str) -> bytes:
        return self.bodies[queue_id]

    async def open_body(self, queue_id: str) -> bytes:
        if queue_id not in self.bodies:  # as the disk spool says of a file that is gone
            raise UnknownMessageError(f"spool read failed: no message {queue_id}")
        return self.bodies[queue_id]

    async def record(self, envelope: Envelope, recipients: Sequence[Recipient]) -> None:
        if self.fail_record:
            self.fail_record -= 1
            raise SpoolError("spool record failed: no space left on device")
        self.records += 1
        self.recorded.append([r.address for r in recipients])
        self.saved[envelope.queue_id] = copy.deepcopy(envelope)

    async def remove(self, queue_id: str) -> None:
        self.bodies.pop(queue_id, None)
        self.saved.pop(queue_id, None)
        self.removed.append(queue_id)

    def recover(self) -> Iterator[Envelope]:
        """What a restart would find: every stored message as last made durable."""
        return iter([copy.deepcopy(env) for env in self.saved.values()])

    async def close(self) -> None:
        return None
