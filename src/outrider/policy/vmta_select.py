"""Choosing the virtual MTA (source IP and HELO name) a message is sent from.

Pools spread traffic with nginx's smooth weighted round robin: weights 2:1 give
``a a b`` interleaved as ``a b a``, never long runs of one member, so each source IP's
traffic to a destination stays as even in time as its weight allows.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

__all__ = ["PoolCursor", "select_vmta"]


def _given(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def select_vmta(
    *,
    header_value: str | None,
    listener_allows_header: bool,
    listener_default: str | None,
    sender_domain_default: str | None,
    server_default: str,
) -> str:
    """The first that applies: the message's header (when the listener honours it),
    the listener's default, the sender domain's default, the server's default.

    Blank values do not apply. Checking that the name exists is the caller's job.
    """
    if listener_allows_header:
        chosen = _given(header_value)
        if chosen is not None:
            return chosen
    for candidate in (listener_default, sender_domain_default):
        chosen = _given(candidate)
        if chosen is not None:
            return chosen
    return server_default


class PoolCursor:
    """Smooth weighted round robin over a pool's members; one cursor per pool (or per
    pool and destination, to spread each destination's traffic evenly)."""

    __slots__ = ("_current", "_members", "_weights")

    def __init__(self, members: Sequence[str], weights: Sequence[int] | None = None) -> None:
        if weights is None:
            weights = [1] * len(members)
        if len(weights) != len(members):
            raise ValueError(f"{len(members)} pool members but {len(weights)} weights")
        if len(set(members)) != len(members):
            raise ValueError("pool members must be distinct")
        for member, weight in zip(members, weights, strict=True):
            if weight < 1:
                raise ValueError(f"weight of {member!r} must be at least 1, got {weight}")
        self._members = tuple(members)
        self._weights = tuple(weights)
        self._current = [0] * len(members)

    @property
    def members(self) -> tuple[str, ...]:
        return self._members

    def next(self, *, exclude: Collection[str] = ()) -> str | None:
        """The next member, skipping ``exclude`` (e.g. source IPs disabled for the
        destination); None if every member is excluded. Excluded members keep no credit,
        so they do not get a burst when they come back."""
        current = self._current
        best = -1
        total = 0
        for i, member in enumerate(self._members):
            if exclude and member in exclude:
                current[i] = 0
                continue
            weight = self._weights[i]
            current[i] += weight
            total += weight
            if best < 0 or current[i] > current[best]:
                best = i
        if best < 0:
            return None
        current[best] -= total
        return self._members[best]
