"""The limits a node applies alone while Redis is away (pure).

Each of ``live`` nodes takes its share of a shared limit: a rate's interval is ``live``
times longer, a connection limit is ``limit // live`` (at least one connection, so a
queue never stops). ``live`` is the last number of live nodes Redis reported, so the
cluster as a whole stays near its limits even when no node can coordinate.
"""

from __future__ import annotations

from outrider.throttle.rate import RateLimit

__all__ = ["share_count", "share_rate"]


def share_rate(limit: RateLimit, live: int) -> RateLimit:
    """This node's part of ``limit`` among ``live`` nodes (unlimited and zero stay as they are)."""
    if live <= 1 or limit.interval == 0.0 or limit.interval == float("inf"):
        return limit
    return RateLimit(limit.interval * live, limit.burst)


def share_count(limit: int | None, live: int) -> int | None:
    """This node's part of a concurrent-count ``limit`` among ``live`` nodes, at least 1."""
    if limit is None or live <= 1:
        return limit
    if limit <= 0:
        return 0
    return max(1, limit // live)
