"""A blocked Bloom filter of (scope, address) keys: "certainly not on the list" in about
a microsecond, so the suppression check of a message whose recipients are all absent
(nearly every message) runs no SQLite query.

Each key sets :data:`K` bits inside one 64-bit word chosen by its hash (one read and one
``or`` per insertion, one read and one ``and`` per look-up), which in pure Python is
several times cheaper than a classic Bloom filter's ``K`` scattered bits, for a slightly
higher false-positive rate at the same size: about 1% at :data:`BITS_PER_ENTRY` bits per
entry when full. A hit only means "ask SQLite": nothing ever depends on the filter
being exact, only on it having no false negatives.

The hash is Python's own ``hash()`` of the ``(scope, address)`` tuple (SipHash of the
strings, cached on them): fast, and good enough since the filter lives in one process
and is never written to disk (the per-process hash seed is then irrelevant).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable

K = 6  # bits set per key, each chosen by 6 bits of the hash (36 bits in all)
BITS_PER_ENTRY = 12  # at capacity: ~1% false positives with K = 6 in 64-bit blocks
_INDEX_BITS = 28  # the hash's top 28 bits choose the block: up to 2**28 blocks (2 GB)
_MASK64 = (1 << 64) - 1
MIN_CAPACITY = 16_384


def blocks_for(capacity: int) -> int:
    """How many 64-bit words a filter for ``capacity`` keys needs."""
    wanted = max(capacity, MIN_CAPACITY) * BITS_PER_ENTRY // 64 + 1
    return min(wanted, 1 << _INDEX_BITS)


def _mask(h: int) -> int:
    return (
        (1 << (h & 63))
        | (1 << ((h >> 6) & 63))
        | (1 << ((h >> 12) & 63))
        | (1 << ((h >> 18) & 63))
        | (1 << ((h >> 24) & 63))
        | (1 << ((h >> 30) & 63))
    )


class BlockedBloom:
    """A fixed-size set of (scope, address) keys with false positives and no false
    negatives. Not thread-safe: filled by one thread, then handed over whole."""

    __slots__ = ("_blocks", "_words", "capacity", "count")

    def __init__(self, capacity: int) -> None:
        self._blocks = blocks_for(capacity)
        self._words = array("Q", bytes(8 * self._blocks))
        self.capacity = max(capacity, MIN_CAPACITY)
        self.count = 0  # insertions (a key added twice counts twice)

    @property
    def nbytes(self) -> int:
        """The memory the bits take (the object itself adds ~100 bytes)."""
        return self._blocks * 8

    @property
    def full(self) -> bool:
        """More insertions than it was sized for: false positives climb past ~1%."""
        return self.count > self.capacity

    def add(self, scope: str, address: str) -> None:
        h = hash((scope, address)) & _MASK64
        self._words[((h >> 36) * self._blocks) >> _INDEX_BITS] |= _mask(h)
        self.count += 1

    def update(self, keys: Iterable[tuple[str, str]]) -> None:
        """Add many (scope, address) keys: the build's inner loop, kept local-variable tight."""
        words = self._words
        blocks = self._blocks
        n = 0
        for key in keys:
            h = hash(key) & _MASK64
            words[((h >> 36) * blocks) >> _INDEX_BITS] |= (
                (1 << (h & 63))
                | (1 << ((h >> 6) & 63))
                | (1 << ((h >> 12) & 63))
                | (1 << ((h >> 18) & 63))
                | (1 << ((h >> 24) & 63))
                | (1 << ((h >> 30) & 63))
            )
            n += 1
        self.count += n

    def might_contain_any(self, scopes: Iterable[str], address: str) -> bool:
        """Whether ``address`` may be on any of the ``scopes``' lists (the look-up loop)."""
        words = self._words
        blocks = self._blocks
        for scope in scopes:
            h = hash((scope, address)) & _MASK64
            mask = (
                (1 << (h & 63))
                | (1 << ((h >> 6) & 63))
                | (1 << ((h >> 12) & 63))
                | (1 << ((h >> 18) & 63))
                | (1 << ((h >> 24) & 63))
                | (1 << ((h >> 30) & 63))
            )
            if words[((h >> 36) * blocks) >> _INDEX_BITS] & mask == mask:
                return True
        return False

    def might_contain(self, scope: str, address: str) -> bool:
        """False: certainly not added. True: probably added (about 1% are not)."""
        h = hash((scope, address)) & _MASK64
        mask = _mask(h)
        return self._words[((h >> 36) * self._blocks) >> _INDEX_BITS] & mask == mask
