"""Suppression list look-ups at 10 million entries (src/outrider/suppression/store.py).

    nice -n 10 .venv/bin/python bench/suppression.py [--entries 10000000] [--dir /var/tmp]

Builds a list of ``--entries`` addresses in a temporary directory (95% in one sender
domain's list, 5% global; one transaction, keys in order, so SQLite appends), then prints:
the build time and file size; look-ups per second one address at a time (what a
one-recipient message costs) and in batches of 100 (a message with 100 recipients),
half of them hits; the cost per accepted message with 1 and 10 recipients, as the
scheduler pays it (cached count + one query); and the same with an empty list.
Those are SQLite alone (``prefilter=False``, as before the in-memory filter).

Then the same file through the in-memory filter: its build time (a worker thread; the
SQLite look-up rate on the main thread meanwhile), its memory and false-positive rate,
look-ups per second for misses and for hits, and the cost per message whose recipients
are all absent (the common case) or half on the list.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import tempfile
import time
from pathlib import Path

from outrider.suppression.store import _SCHEMA, SuppressionStore

SCOPE = "news.example.com"
DOMAINS = 1000


def address(i: int) -> str:
    return f"user{i:09d}@d{i % DOMAINS}.example"


def build(path: Path, entries: int) -> float:
    start = time.perf_counter()
    db = sqlite3.connect(str(path), isolation_level=None)
    db.execute("PRAGMA journal_mode=OFF")
    db.execute("PRAGMA synchronous=OFF")
    db.execute(_SCHEMA)
    db.execute("BEGIN")
    now = time.time()
    global_every = 20
    db.executemany(
        "INSERT INTO suppression VALUES ('*', ?, 'import', ?, 'bench')",
        ((address(i), now) for i in range(0, entries, global_every)),
    )
    db.executemany(
        "INSERT INTO suppression VALUES (?, ?, 'bad-mailbox', ?, 'bench')",
        ((SCOPE, address(i), now) for i in range(entries) if i % global_every),
    )
    db.execute("COMMIT")
    db.close()
    return time.perf_counter() - start


def pick(rng: random.Random, entries: int, hits: float) -> str:
    """An address on the list with probability ``hits``, else one that is not."""
    if rng.random() < hits:
        return address(rng.randrange(entries))
    return address(entries + rng.randrange(entries))


def lookups(
    store: SuppressionStore, entries: int, batch: int, rounds: int, hits: float = 0.5
) -> float:
    """Addresses checked per second, a share ``hits`` of them on the list."""
    rng = random.Random(1)
    work = [[pick(rng, entries, hits) for _ in range(batch)] for _ in range(rounds)]
    start = time.perf_counter()
    found = 0
    for group in work:
        found += len(store.check(group, SCOPE))
    elapsed = time.perf_counter() - start
    assert abs(found / (batch * rounds) - hits) < 0.2, found
    return batch * rounds / elapsed


def per_message_us(
    store: SuppressionStore, entries: int, rcpts: int, count: int, hits: float = 0.5
) -> float:
    rng = random.Random(2)
    msgs = [[pick(rng, entries, hits) for _ in range(rcpts)] for _ in range(count)]
    start = time.perf_counter()
    for group in msgs:
        if not store.is_empty():
            store.check(group, SCOPE)
    return (time.perf_counter() - start) / count * 1e6


def with_filter(path: Path, entries: int) -> None:
    store = SuppressionStore(path)
    store.start_filter()
    rng = random.Random(4)
    during = 0
    start = time.perf_counter()
    while store.filter_stats().state == "building":  # SQLite answers meanwhile
        store.check([pick(rng, entries, 0.5)], SCOPE)
        during += 1
    took = time.perf_counter() - start
    stats = store.filter_stats()
    assert stats.state == "ready", stats
    print("-- with the in-memory filter")
    print(f"filter build       {took:>12.1f} s  ({stats.build_seconds:.1f} s in the thread)")
    print(f"  look-ups meanwhile {during / took:>10,.0f} /s  (SQLite, main thread)")
    print(f"filter memory      {stats.nbytes / 1e6:>12.1f} MB  ({stats.entries:,} keys)")
    rng = random.Random(3)
    probes = [address(entries + rng.randrange(entries)) for _ in range(100_000)]
    before = store.filter_stats().queries
    for one in probes:
        store.check([one], SCOPE)
    queries = store.filter_stats().queries - before
    print(f"false positives    {queries / len(probes):>12.2%}  (misses that still query SQLite)")
    for label, hits in (("misses", 0.0), ("hits", 1.0), ("half", 0.5)):
        rate = lookups(store, entries, 1, 50_000, hits)
        print(f"look-ups, {label:<7}  {rate:>12,.0f} /s  ({1e6 / rate:.1f} µs each)")
    for rcpts in (1, 10):
        for hits in (0.0, 0.5):
            us = per_message_us(store, entries, rcpts, 20_000, hits)
            print(f"per message, {rcpts:>2} rcpt, {hits:.0%} on list {us:>6.1f} µs")
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=10_000_000)
    parser.add_argument("--dir", default=None, help="where the temporary directory goes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "suppression.db"
        took = build(path, args.entries)
        # switches the file to WAL, as the daemon opens it; SQLite alone
        store = SuppressionStore(path, prefilter=False)
        size = path.stat().st_size
        print(f"entries            {store.count():>12,}")
        print(f"build              {took:>12.1f} s  ({args.entries / took:,.0f} entries/s)")
        print(f"file size          {size / 1e6:>12.0f} MB  ({size / args.entries:.0f} B/entry)")
        lookups(store, args.entries, 1, 20_000)  # warm the page cache
        single = lookups(store, args.entries, 1, 50_000)
        batched = lookups(store, args.entries, 100, 1_000)
        print(f"look-ups, single   {single:>12,.0f} /s  ({1e6 / single:.1f} µs each)")
        print(f"look-ups, batched  {batched:>12,.0f} /s  (100 per query)")
        for rcpts in (1, 10):
            us = per_message_us(store, args.entries, rcpts, 20_000)
            print(f"per message, {rcpts:>2} rcpt {us:>10.1f} µs")
        store.close()
        with_filter(path, args.entries)
        empty = SuppressionStore(Path(tmp) / "empty.db")
        us = per_message_us(empty, args.entries, 10, 200_000)
        print(f"empty list, 10 rcpt {us:>9.2f} µs per message")
        empty.close()


if __name__ == "__main__":
    main()
