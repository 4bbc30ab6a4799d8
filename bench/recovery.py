"""Spool recovery speed: N stored messages read back by ``DiskSpool.recover``.

Stores ``N`` single-recipient messages (1 KiB bodies, no fsync: only the read side is
measured) in a spool under ``BENCH_TMPDIR``, then times ``recover()`` with each number
of reader threads given, first with a cold page cache (``drop_caches``; needs root,
otherwise the figure is marked warm) and then warm. A restart after a reboot, or on a
host that reclaims idle page cache, is the cold case: every file is a random read.

    .venv/bin/python bench/recovery.py [N] [READERS ...]      # default 200000 1 16
    .venv/bin/python bench/recovery.py snapshot [N]            # restart from a snapshot

``snapshot`` mode (issue 12) stores N messages the same way, reads them back once
(cold) the usual way for comparison, marks them deferred, and writes the schedule
snapshot a clean stop writes; then, cold and warm, times what a start does with it:
take the snapshot (remove, read, decode), list the spool directory, and restore every
message into a real scheduler (``Scheduler.restore``, as ``Daemon._recover`` does).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.support

from outrider.message.envelope import Envelope, Recipient
from outrider.spool.disk import DiskSpool
from outrider.spool.snapshot import write_snapshot

BODY = b"Subject: recovery bench\r\n\r\n" + b"0123456789abcdef" * 64


async def fill(directory: Path, n: int) -> None:
    spool = DiskSpool(directory, fsync=False)
    numbers = iter(range(n))

    async def writer() -> None:
        for i in numbers:
            env = Envelope(
                queue_id=spool.new_queue_id(),
                sender="bench@src.test",
                recipients=[Recipient(f"u{i}@d{i % 1000}.scale.test")],
                received_at=time.time(),
                size=len(BODY),
            )
            await spool.store(env, BODY)

    await asyncio.gather(*(writer() for _ in range(50)))
    await spool.close()


def drop_caches() -> bool:
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def timed(directory: Path, readers: int) -> tuple[int, float]:
    spool = DiskSpool(directory, fsync=False)
    start = time.monotonic()
    count = sum(1 for _ in spool.recover(readers=readers))
    return count, time.monotonic() - start


def deferred(envelopes: list[Envelope]) -> None:
    """As a clean stop finds a backlog: each tried once, retried in an hour."""
    later = time.time() + 3600
    for env in envelopes:
        for rcpt in env.recipients:
            rcpt.attempts = 1
            rcpt.next_attempt = later
            rcpt.last_reply = "451 4.4.1 Connection refused"


async def restart_from_snapshot(directory: Path) -> dict[str, float]:
    """What ``Daemon._recover`` does with a snapshot, timed step by step."""
    from scale_memory import NullSpool  # bench/, beside this script
    from tests.support.fake_transport import FakeTransport

    from outrider.config.loader import parse_config
    from outrider.queue.scheduler import Scheduler

    state = directory.parent / "state"
    config = parse_config(
        f'[server]\nspool-dir = "{directory}"\nstate-dir = "{state}"\n'
        f'log-dir = "{state}"\n[[listener]]\naddress = "127.0.0.1:2525"\n'
        '[domain."*"]\nretry-after = ["1h"]\nmx-rollup = false\n'
    )
    sched = Scheduler(config=config, spool=NullSpool(), transports=FakeTransport())
    spool = DiskSpool(directory, fsync=False)
    times: dict[str, float] = {}
    start = time.monotonic()
    snapshot = spool.take_snapshot()
    times["take"] = time.monotonic() - start
    assert snapshot is not None, "no snapshot"
    restored = 0
    for env in spool.recover(known=sched.messages.__contains__, snapshot=snapshot):
        sched.restore(env)
        restored += 1
        if restored % 1000 == 0:
            await asyncio.sleep(0)
    sched.recovery_done()
    times["total"] = time.monotonic() - start
    times["list+restore"] = times["total"] - times["take"]
    stats = spool.recovery
    times["restored"] = restored
    times["from_snapshot"] = stats.from_snapshot
    times["files_read"] = stats.files_read
    return times


def snapshot_mode(n: int) -> None:
    base = Path(tempfile.mkdtemp(prefix="outrider-recovery-", dir=os.environ.get("BENCH_TMPDIR")))
    directory = base / "spool"
    try:
        start = time.monotonic()
        asyncio.run(fill(directory, n))
        print(f"stored {n} messages in {time.monotonic() - start:.1f} s")
        cold = drop_caches()
        label = "cold" if cold else "warm (no root: cannot drop the page cache)"
        spool = DiskSpool(directory, fsync=False)
        start = time.monotonic()
        envelopes = list(spool.recover())
        print(
            f"full read (16 readers): {len(envelopes)} in {time.monotonic() - start:6.1f} s {label}"
        )
        deferred(envelopes)
        for run in ("cold", "warm"):
            start = time.monotonic()
            size = write_snapshot(directory, envelopes, len(envelopes))  # fsynced
            write = time.monotonic() - start
            print(f"snapshot written: {size / 1e6:.1f} MB in {write:.1f} s (fsynced)", flush=True)
            if run == "cold" and not drop_caches():
                run = "warm (no root: cannot drop the page cache)"
            t = asyncio.run(restart_from_snapshot(directory))
            print(
                f"restart from the snapshot ({run}): {t['restored']:.0f} restored "
                f"({t['from_snapshot']:.0f} from the snapshot, {t['files_read']:.0f} files read) "
                f"in {t['total']:6.1f} s: take {t['take']:.1f} s, list + restore "
                f"{t['list+restore']:.1f} s",
                flush=True,
            )
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "snapshot":
        snapshot_mode(int(sys.argv[2]) if len(sys.argv) > 2 else 200_000)
        return
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    readers = [int(a) for a in sys.argv[2:]] or [1, 16]
    base = Path(tempfile.mkdtemp(prefix="outrider-recovery-", dir=os.environ.get("BENCH_TMPDIR")))
    try:
        start = time.monotonic()
        asyncio.run(fill(base / "spool", n))
        print(f"stored {n} messages in {time.monotonic() - start:.1f} s")
        for r in readers:
            cold = drop_caches()
            count, seconds = timed(base / "spool", r)
            label = "cold" if cold else "warm (no root: cannot drop the page cache)"
            print(f"readers {r:3d}: {count} recovered in {seconds:6.1f} s {label}", flush=True)
        for r in readers:
            count, seconds = timed(base / "spool", r)
            print(f"readers {r:3d}: {count} recovered in {seconds:6.1f} s warm", flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
