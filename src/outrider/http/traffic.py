"""``GET /api/v1/traffic``: the traffic counters' 10-second buckets as per-minute series."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from outrider.queue.summary import iso
from outrider.runtime.stats import BUCKET, KINDS

MINUTE = 60
MINUTES = 60


def per_minute(
    buckets: Mapping[int, Mapping[str, int]], now: float, minutes: int = MINUTES
) -> dict[str, Any]:
    """``minutes`` entries, oldest first, the last one the current (partial) minute."""
    per = int(MINUTE // BUCKET)
    current = int(now // MINUTE)
    first = current - minutes + 1
    sums = {m: dict.fromkeys(KINDS, 0) for m in range(first, current + 1)}
    for index, counts in buckets.items():
        minute = index // per
        if minute in sums:
            for kind, n in counts.items():
                sums[minute][kind] += n
    return {
        "bucket_seconds": MINUTE,
        "series": [{"t": iso(m * MINUTE), **sums[m]} for m in range(first, current + 1)],
    }
