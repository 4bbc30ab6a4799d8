"""Finding stored messages the delivery process was never told about."""

from __future__ import annotations

import os
import time

from outrider.message.envelope import RcptStatus
from outrider.spool.disk import DiskSpool
from outrider.spool.orphans import find_orphans
from tests.unit.spool.conftest import make_envelope


def age(spool: DiskSpool, queue_id: str, seconds: float) -> None:
    path = spool.directory / queue_id
    then = time.time() - seconds
    os.utime(path, (then, then))


async def test_only_unknown_unfinished_messages_old_enough(spool: DiskSpool) -> None:
    orphan, known, young, done = (make_envelope() for _ in range(4))
    notice = make_envelope(queue_id=orphan.queue_id + "-F")
    for env in (orphan, known, young, done, notice):
        await spool.store(env, b"Subject: x\r\n\r\nbody\r\n")
    done.recipients[0].status = RcptStatus.DELIVERED
    await spool.record(done, done.recipients)
    for env in (orphan, known, done, notice):
        age(spool, env.queue_id, 60)
    age(spool, young.queue_id, 1)
    (spool.directory / f"tmp.{os.getpid()}.{make_envelope().queue_id}").write_bytes(b"x")

    found = find_orphans(spool.directory, {known.queue_id}.__contains__, 5.0)

    assert [env.queue_id for env in found] == [orphan.queue_id]
    assert found[0].recipients[0].address == "user0@example.net"
    assert found[0].sender == orphan.sender


async def test_a_damaged_file_is_left_alone_for_recovery(spool: DiskSpool) -> None:
    env = make_envelope()
    await spool.store(env, b"Subject: x\r\n\r\nbody\r\n")
    path = spool.directory / env.queue_id
    data = bytearray(path.read_bytes())
    data[40] ^= 0xFF  # inside the envelope: its checksum fails
    path.write_bytes(bytes(data))
    age(spool, env.queue_id, 60)

    assert find_orphans(spool.directory, lambda _: False, 5.0) == []
    assert path.read_bytes() == bytes(data)  # neither truncated nor quarantined
    assert not (spool.directory / "quarantine").exists()


async def test_empty_files_are_reserved_names_not_orphans(spool: DiskSpool) -> None:
    """A receiver's reserved names (spool.names) are empty until stored into; the scan
    neither adopts nor complains about them, however old."""
    name = make_envelope().queue_id
    (spool.directory / name).write_bytes(b"")
    age(spool, name, 3600)

    assert find_orphans(spool.directory, lambda _: False, 5.0) == []
    assert (spool.directory / name).exists()
