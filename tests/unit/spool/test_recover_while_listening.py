"""Recovery while the listeners already take mail: it leaves fresh mail to its hand-off."""

from __future__ import annotations

import os
import time
from pathlib import Path

from outrider.spool.disk import DiskSpool
from tests.unit.spool.conftest import make_envelope


async def test_recovery_skips_known_ids_and_files_written_since_the_start(
    tmp_path: Path,
) -> None:
    spool = DiskSpool(tmp_path / "spool")
    old, scheduled = make_envelope(), make_envelope()
    for env in (old, scheduled):
        await spool.store(env, b"body\r\n")
    started_ns = time.time_ns()
    past = (started_ns - 10**9) / 1e9
    for env in (old, scheduled):  # written before the start
        os.utime(spool.directory / env.queue_id, (past, past))
    fresh = make_envelope()
    await spool.store(fresh, b"body\r\n")  # written after it: its hand-off schedules it
    future = (started_ns + 10**9) / 1e9
    os.utime(spool.directory / fresh.queue_id, (future, future))
    found = [
        e.queue_id
        for e in spool.recover(known={scheduled.queue_id}.__contains__, started_ns=started_ns)
    ]
    assert found == [old.queue_id]
    # Without the filters (a start with nothing taken yet) every file is recovered.
    assert {e.queue_id for e in spool.recover()} == {
        old.queue_id,
        scheduled.queue_id,
        fresh.queue_id,
    }
    await spool.close()
