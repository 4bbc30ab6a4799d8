"""The blocked Bloom filter: no false negatives, a false-positive rate near 1%, its size."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from outrider.suppression.filter import (
    BITS_PER_ENTRY,
    MIN_CAPACITY,
    BlockedBloom,
    blocks_for,
)

scopes = st.sampled_from(["*", "news.example.com", "shop.test", "xn--strae-oqa.test"])
addresses = st.text(
    st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=1, max_size=40
).map(lambda s: s + "@x.test")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(scopes, addresses), max_size=300))
def test_never_a_false_negative(keys: list[tuple[str, str]]) -> None:
    bloom = BlockedBloom(len(keys))
    half = len(keys) // 2
    for scope, address in keys[:half]:
        bloom.add(scope, address)
    bloom.update(keys[half:])
    assert bloom.count == len(keys)
    for scope, address in keys:
        assert bloom.might_contain(scope, address)
        assert bloom.might_contain_any(["other.test", scope], address)


@settings(max_examples=50, deadline=None)
@given(st.tuples(scopes, addresses))
def test_keys_are_scope_and_address(key: tuple[str, str]) -> None:
    bloom = BlockedBloom(10)
    bloom.add(*key)
    assert bloom.might_contain(*key)
    assert not bloom.might_contain_any([], key[1])


def test_false_positive_rate_at_capacity() -> None:
    n = 50_000
    bloom = BlockedBloom(n)
    bloom.update(("s.test", f"u{i}@x.test") for i in range(n))
    assert not bloom.full
    absent = 50_000
    false = sum(bloom.might_contain("s.test", f"v{i}@x.test") for i in range(absent))
    assert false / absent < 0.02  # ~1% expected
    # the same address in another scope is another key
    other = sum(bloom.might_contain("o.test", f"u{i}@x.test") for i in range(absent))
    assert other / absent < 0.02


def test_size_and_fullness() -> None:
    assert blocks_for(10_000_000) == 10_000_000 * BITS_PER_ENTRY // 64 + 1
    assert blocks_for(0) == MIN_CAPACITY * BITS_PER_ENTRY // 64 + 1
    assert blocks_for(10**12) == 1 << 28  # capped: the hash's top 28 bits pick the block
    bloom = BlockedBloom(1_000_000)
    assert bloom.nbytes == blocks_for(1_000_000) * 8 == 1_500_008
    small = BlockedBloom(0)
    assert small.capacity == MIN_CAPACITY
    small.update(("*", f"{i}@x.test") for i in range(MIN_CAPACITY + 1))
    assert small.full
