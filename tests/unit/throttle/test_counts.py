"""Concurrent counts (acquire/release), for every Throttle implementation."""

from __future__ import annotations

from outrider.throttle import Throttle


async def test_acquire_up_to_the_limit(throttle: Throttle) -> None:
    assert [await throttle.acquire("k", 2) for _ in range(3)] == [True, True, False]
    assert await throttle.held("k") == 2
    assert await throttle.release("k")
    assert await throttle.acquire("k", 2)
    assert not await throttle.acquire("k", 2)


async def test_a_refused_acquire_counts_nothing(throttle: Throttle) -> None:
    await throttle.acquire("k", 1)
    for _ in range(5):
        assert not await throttle.acquire("k", 1)
    assert await throttle.held("k") == 1


async def test_none_is_unlimited_but_counted(throttle: Throttle) -> None:
    assert all([await throttle.acquire("k", None) for _ in range(50)])
    assert await throttle.held("k") == 50
    assert not await throttle.acquire("k", 50)  # a limit applies to what is held
    assert await throttle.acquire("k", 51)


async def test_limit_zero_admits_nothing(throttle: Throttle) -> None:
    assert not await throttle.acquire("k", 0)
    assert await throttle.held("k") == 0


async def test_release_never_goes_negative(throttle: Throttle) -> None:
    assert not await throttle.release("unknown")
    await throttle.acquire("k", None)
    assert await throttle.release("k")
    assert not await throttle.release("k")
    assert await throttle.held("k") == 0
    assert await throttle.acquire("k", 1)


async def test_keys_are_independent(throttle: Throttle) -> None:
    assert await throttle.acquire("a", 1)
    assert await throttle.acquire("b", 1)
    assert not await throttle.acquire("a", 1)
    await throttle.release("a")
    assert await throttle.held("a") == 0
    assert await throttle.held("b") == 1


async def test_kinds_have_separate_key_spaces(throttle: Throttle) -> None:
    await throttle.acquire("k", None)
    await throttle.add_event("k", 60.0, 0.0)
    await throttle.block("k", 10.0, 0.0)
    assert await throttle.held("k") == 1
    assert await throttle.count("k", 60.0, 0.0) == 1
    assert await throttle.blocked_until("k", 0.0) == 10.0
