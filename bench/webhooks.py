"""Webhook cost: CPU per event on the delivery path, and events/s the disk queue absorbs.

Usage: python bench/webhooks.py [--events 100000] [--batch 20] [--runs 5] [--dir PATH]

1. ``handle()``: the subscriber's cost on the delivery path (the bus calls it with each
   batch of ``--batch`` events): CPU µs per event, best and median of ``--runs``.
2. Absorption: ``--events`` Delivered events handed to ``handle()`` in bus batches, with
   the flusher task writing them to the disk queue every 0.2 s (JSON encoding, one write
   and one fsync per flush), as in the daemon: events/s until the last one is on disk,
   and CPU µs per event for the whole path (encoding and writing included).

``--dir`` is where the queue goes (default: a temporary directory under /var/tmp; use a
real disk, not tmpfs, the fsync is part of the cost).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from outrider.events.types import Delivered, Event, MessageInfo
from outrider.webhooks.queue import DiskQueue
from outrider.webhooks.subscriber import Target, WebhookSubscriber


def make_events(count: int) -> list[Event]:
    now = time.time()
    events: list[Event] = []
    info = MessageInfo("", "", now, "", "", "", 0)
    for i in range(count):
        if i % 10 == 0:
            info = MessageInfo(
                f"1K1NBZX8C{i:010d}", "news@shop.example", now, "nov-promo", "", f"<{i}@s>", 4096
            )
        events.append(
            Delivered(
                now,
                info,
                f"user{i}@example.org",
                "",
                "2.0.0",
                "250 2.0.0 Ok: queued as 4Xyz",
                "mx1.example.org",
                "example.org/default",
                "default",
                "192.0.2.10",
                "198.51.100.7",
            )
        )
    return events


def target(directory: Path) -> Target:
    queue = DiskQueue(directory, max_bytes=1 << 34)
    return Target("bench", frozenset({"delivered"}), queue, asyncio.Lock(), asyncio.Event())


def handle_cost(events: list[Event], batch: int, directory: Path) -> float:
    """CPU µs per event of handle() alone."""
    sub = WebhookSubscriber([])
    start = time.process_time()
    for i in range(0, len(events), batch):
        sub.handle(events[i : i + batch])
    return (time.process_time() - start) / len(events) * 1e6


async def absorb(events: list[Event], batch: int, directory: Path) -> tuple[float, float]:
    t = target(directory)
    sub = WebhookSubscriber([t])
    flusher = asyncio.create_task(sub.run())
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(events), batch):
        sub.handle(events[i : i + batch])
        if i % (batch * 50) == 0:
            await asyncio.sleep(0)  # the delivery loop yields; the flusher gets its turns
    while t.queue.pending < len(events):  # noqa: ASYNC110 - polling the queue is the point
        await asyncio.sleep(0.01)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    flusher.cancel()
    return len(events) / wall, cpu / len(events) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    events = make_events(args.events)
    base = args.dir or Path("/var/tmp")
    handle_us, absorb_rates, absorb_us = [], [], []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(dir=base) as tmp:
            handle_us.append(handle_cost(events, args.batch, Path(tmp) / "h"))
            rate, us = asyncio.run(absorb(events, args.batch, Path(tmp) / f"q{run}"))
            absorb_rates.append(rate)
            absorb_us.append(us)
    print(f"events: {args.events}, bus batch: {args.batch}, runs: {args.runs}")
    print(
        f"handle() on the delivery path: best {min(handle_us):.3f} µs/event, "
        f"median {statistics.median(handle_us):.3f}"
    )
    print(
        f"handle + encode + disk queue: best {max(absorb_rates):,.0f} events/s, "
        f"median {statistics.median(absorb_rates):,.0f}; CPU best {min(absorb_us):.2f} µs/event, "
        f"median {statistics.median(absorb_us):.2f}"
    )


if __name__ == "__main__":
    main()
