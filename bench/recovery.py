"""Spool recovery speed: N stored messages read back by ``DiskSpool.recover``.

Stores ``N`` single-recipient messages (1 KiB bodies, no fsync: only the read side is
measured) in a spool under ``BENCH_TMPDIR``, then times ``recover()`` with each number
of reader threads given, first with a cold page cache (``drop_caches``; needs root,
otherwise the figure is marked warm) and then warm. A restart after a reboot, or on a
host that reclaims idle page cache, is the cold case: every file is a random read.

    .venv/bin/python bench/recovery.py [N] [READERS ...]      # default 200000 1 16
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from outrider.message.envelope import Envelope, Recipient
from outrider.spool.disk import DiskSpool

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


def main() -> None:
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
