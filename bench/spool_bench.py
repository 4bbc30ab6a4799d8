"""Throughput of DiskSpool.store(): N messages of 4 KiB from C concurrent callers.

Usage: python bench/spool_bench.py [--messages N] [--concurrency 1,20,100] [--dir PATH]
                                   [--workers W] [--no-fsync]

Prints messages/second and the flushes issued (file fsyncs, directory fsyncs, batches)
for each concurrency level; each level uses a fresh spool directory.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path

from outrider.message.envelope import Envelope, Recipient
from outrider.message.ids import new_queue_id
from outrider.spool.disk import DEFAULT_WORKERS, DiskSpool

BODY = (b"Subject: benchmark\r\n\r\n" + b"0123456789abcdef" * 256)[:4096]


async def run(directory: Path, messages: int, concurrency: int, fsync: bool, workers: int) -> str:
    spool = DiskSpool(directory, fsync=fsync, workers=workers)
    remaining = iter(range(messages))

    async def caller() -> None:
        for _ in remaining:
            env = Envelope(new_queue_id(), "bench@example.org", [Recipient("to@example.net")], 0.0)
            await spool.store(env, BODY)

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    await spool.close()
    s = spool.stats
    return (
        f"C={concurrency:<4d} {messages / elapsed:9.0f} msg/s  "
        f"fsyncs={s.fsyncs} dir_fsyncs={s.dir_fsyncs} batches={s.batches} "
        f"avg_batch={s.stores / max(1, s.batches):.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--concurrency", default="1,20,100")
    parser.add_argument("--dir", type=Path, default=None, help="parent dir (default: temp)")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    parser.add_argument("--no-fsync", action="store_true")
    args = parser.parse_args()

    parent = Path(tempfile.mkdtemp(prefix="spool-bench-", dir=args.dir))
    try:
        for level in (int(c) for c in args.concurrency.split(",")):
            directory = parent / f"c{level}"
            line = asyncio.run(
                run(directory, args.messages, level, not args.no_fsync, args.workers)
            )
            print(line, flush=True)
            shutil.rmtree(directory)
    finally:
        shutil.rmtree(parent, ignore_errors=True)


if __name__ == "__main__":
    main()
