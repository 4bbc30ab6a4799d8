"""CPU time per accounting row on the delivery path: ``row_of`` + ``write_rows``.

Usage: python bench/accounting_rows.py [--events 100000] [--batch 100] [--runs 15]
                                      [--diag TEXT]

Builds ``--events`` Delivered events (ten recipients per message, as one settle batch
shares its MessageInfo), then turns them into rows and writes them in batches of
``--batch``, flushing each batch as the accounting subscriber does, to a file in a
temporary directory. ``--diag`` is the remote reply in every row: one with a comma is
quoted, the slower path. Prints the best and median CPU time per row over ``--runs``
runs (CPU time: other processes on the machine change it less than wall time).
Compare two trees by running it with ``PYTHONPATH=<other tree>/src``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from outrider.accounting.subscriber import row_of
from outrider.accounting.writer import AccountingLog
from outrider.events.types import Delivered, MessageInfo


def make_events(count: int, diag: str) -> list[Delivered]:
    now = time.time()
    events = []
    info = MessageInfo("", "", now, "", "", "", 0)
    for i in range(count):
        if i % 10 == 0:
            info = MessageInfo(
                f"1K1NBZX8C{i:010d}",
                "news@shop.example",
                now,
                "nov-promo",
                "",
                f"<{i}@shop.example>",
                5120,
            )
        events.append(
            Delivered(
                now,
                info,
                f"user{i}@example.org",
                "",
                "2.0.0",
                diag,
                "mx1.example.org",
                "example.org/default",
                "default",
                "198.51.100.7",
                "203.0.113.25",
            )
        )
    return events


def run(events: list[Delivered], batch: int, log_dir: Path) -> float:
    with AccountingLog(log_dir) as log:
        start = time.process_time()
        for first in range(0, len(events), batch):
            rows = [row_of(e) for e in events[first : first + batch]]
            log.write_rows([r for r in rows if r is not None])
            log.flush()
        return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--diag", default="250 2.0.0 OK 1701118265 q7si1 - gsmtp")
    args = parser.parse_args()
    events = make_events(args.events, args.diag)
    times = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            times.append(run(events, args.batch, Path(tmp)))
    per_row = [1e6 * t / args.events for t in times]
    print(
        f"row_of + write_rows, {args.events} Delivered events: "
        f"best {min(per_row):.3f} us/row, median {statistics.median(per_row):.3f} us/row"
    )


if __name__ == "__main__":
    main()
