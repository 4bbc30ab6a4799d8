"""RetryTimers: bucketed retry timers behind one loop timer."""

from __future__ import annotations

import asyncio

import pytest

from outrider.message.envelope import Envelope, Recipient
from outrider.queue import timers
from outrider.queue.model import QueuedMessage
from outrider.queue.timers import RetryTimers


def message(i: int) -> QueuedMessage:
    env = Envelope(f"Q{i}", "s@a.test", [Recipient(f"r{i}@b.test")], received_at=0.0)
    return QueuedMessage(env, None)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def settle(turns: int = 5) -> None:
    for _ in range(turns):
        await asyncio.sleep(0)


async def test_fires_due_messages_only_and_once() -> None:
    clock = Clock()
    fired: list[str] = []
    t = RetryTimers(asyncio.get_running_loop(), clock, lambda m: fired.append(m.envelope.queue_id))
    early, late = message(1), message(2)
    t.arm(early, clock.now - 1)  # overdue: next loop turn
    t.arm(late, clock.now + 3600)
    assert t.armed(early) and t.armed(late)
    await settle()
    assert fired == ["Q1"]
    assert not t.armed(early) and t.armed(late)
    clock.now += 3600
    t.arm(message(3), clock.now - 1)  # wakes the loop timer; the late one is due too
    await settle()
    assert sorted(fired) == ["Q1", "Q2", "Q3"]
    assert len(t) == 0


async def test_cancel_and_rearm_skip_the_stale_entry() -> None:
    clock = Clock()
    fired: list[str] = []
    t = RetryTimers(asyncio.get_running_loop(), clock, lambda m: fired.append(m.envelope.queue_id))
    cancelled, moved = message(1), message(2)
    t.arm(cancelled, clock.now - 1)
    t.arm(moved, clock.now - 1)
    t.cancel(cancelled)
    assert not t.armed(cancelled)
    t.arm(moved, clock.now + 60)  # re-armed later: its first entry is stale
    await settle()
    assert fired == []
    clock.now += 61
    t.arm(message(3), clock.now - 5)  # an earlier bucket: wakes the (fake-clocked) loop timer
    await settle()
    assert sorted(fired) == ["Q2", "Q3"]


async def test_a_large_due_bucket_is_worked_off_in_slices(monkeypatch: object) -> None:
    clock = Clock()
    loop = asyncio.get_running_loop()
    per_turn: list[int] = []
    fired = 0

    def fire(msg: QueuedMessage) -> None:
        nonlocal fired
        fired += 1

    t = RetryTimers(loop, clock, fire)
    n = timers.SLICE * 3 + 5
    for i in range(n):
        t.arm(message(i), clock.now - 0.01)
    for _ in range(10):
        before = fired
        await asyncio.sleep(0)
        per_turn.append(fired - before)
    assert fired == n
    # other callbacks run between slices, each slice a full one
    assert [x for x in per_turn if x] == [timers.SLICE] * 3 + [5]


async def test_stop_cancels_everything() -> None:
    clock = Clock()
    fired: list[QueuedMessage] = []
    t = RetryTimers(asyncio.get_running_loop(), clock, fired.append)
    msgs = [message(i) for i in range(3)]
    for m in msgs:
        t.arm(m, clock.now - 1)
    t.stop()
    await settle()
    assert fired == [] and not any(t.armed(m) for m in msgs)


class LoopClock(Clock):
    """The test's clock, also the event loop's: loop timers fire when the test moves it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        super().__init__()
        monkeypatch.setattr(asyncio.get_running_loop(), "time", self)

    async def advance(self, seconds: float) -> None:
        self.now += seconds
        await settle()


async def test_a_timer_fires_at_its_time_at_most_one_grain_late(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = LoopClock(monkeypatch)
    fired: list[str] = []
    t = RetryTimers(asyncio.get_running_loop(), clock, lambda m: fired.append(m.envelope.queue_id))
    t.arm(message(1), clock.now + 10)
    await clock.advance(10 - timers.GRAIN)
    assert fired == []
    await clock.advance(timers.GRAIN)
    assert fired == ["Q1"]


async def test_an_earlier_timer_moves_the_loop_timer_forward_and_a_later_one_does_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = LoopClock(monkeypatch)
    fired: list[str] = []
    t = RetryTimers(asyncio.get_running_loop(), clock, lambda m: fired.append(m.envelope.queue_id))
    t.arm(message(1), clock.now + 60)
    t.arm(message(2), clock.now + 5)  # earlier: the loop timer now waits for this one
    t.arm(message(3), clock.now + 30)  # later than the armed one: changes nothing
    await clock.advance(5)
    assert fired == ["Q2"]
    await clock.advance(25)
    assert fired == ["Q2", "Q3"]
    await clock.advance(30)
    assert fired == ["Q2", "Q3", "Q1"]
    assert len(t) == 0


async def test_a_time_of_zero_still_arms_a_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    """0.0 means "no timer" in QueuedMessage.due, so a due time of 0 is moved just past it."""
    clock = LoopClock(monkeypatch)
    fired: list[str] = []
    t = RetryTimers(asyncio.get_running_loop(), clock, lambda m: fired.append(m.envelope.queue_id))
    msg = message(1)
    t.arm(msg, 0.0)
    assert t.armed(msg) and msg.due > 0.0
    await settle()
    assert fired == ["Q1"]


async def test_a_message_rearmed_into_its_own_bucket_fires_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = LoopClock(monkeypatch)
    fired: list[str] = []
    t = RetryTimers(asyncio.get_running_loop(), clock, lambda m: fired.append(m.envelope.queue_id))
    msg = message(1)
    t.arm(msg, clock.now + 10 - timers.GRAIN / 2)
    t.arm(msg, clock.now + 10 - timers.GRAIN / 4)  # the same bucket, entered twice
    assert len(t) == 2  # the stale entry is skipped, not searched for
    await clock.advance(10)
    assert fired == ["Q1"]


async def test_a_fired_message_may_arm_again_and_fires_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = LoopClock(monkeypatch)
    fired: list[float] = []
    loop = asyncio.get_running_loop()

    def fire(msg: QueuedMessage) -> None:
        fired.append(clock.now)
        if len(fired) < 3:
            t.arm(msg, clock.now + 1)

    t = RetryTimers(loop, clock, fire)
    t.arm(message(1), clock.now + 1)
    for _ in range(4):
        await clock.advance(1)
    assert fired == [1001.0, 1002.0, 1003.0]


async def test_stop_then_arm_starts_afresh(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = LoopClock(monkeypatch)
    fired: list[str] = []
    t = RetryTimers(asyncio.get_running_loop(), clock, lambda m: fired.append(m.envelope.queue_id))
    t.arm(message(1), clock.now + 60)
    t.stop()
    assert len(t) == 0
    t.arm(message(2), clock.now + 120)  # later than the stopped timer
    await clock.advance(60)
    assert fired == []
    await clock.advance(60)
    assert fired == ["Q2"]


async def test_due_messages_of_several_buckets_fire_in_one_turn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = LoopClock(monkeypatch)
    fired: list[str] = []
    t = RetryTimers(asyncio.get_running_loop(), clock, lambda m: fired.append(m.envelope.queue_id))
    t.arm(message(1), clock.now - 10)
    t.arm(message(2), clock.now - 5)
    await asyncio.sleep(0)
    assert sorted(fired) == ["Q1", "Q2"]


async def test_a_bucket_finished_at_the_end_of_a_slice_leaves_the_next_one_armed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = LoopClock(monkeypatch)
    fired: list[str] = []
    t = RetryTimers(asyncio.get_running_loop(), clock, lambda m: fired.append(m.envelope.queue_id))
    for i in range(timers.SLICE):
        t.arm(message(i), clock.now - 1)
    t.arm(message(-1), clock.now + 1)
    await settle()
    assert len(fired) == timers.SLICE
    await clock.advance(1)
    assert fired[-1] == "Q-1" and len(t) == 0


async def test_a_timer_armed_after_all_others_fired_still_fires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = LoopClock(monkeypatch)
    fired: list[str] = []
    t = RetryTimers(asyncio.get_running_loop(), clock, lambda m: fired.append(m.envelope.queue_id))
    t.arm(message(1), clock.now + 1)
    await clock.advance(1)
    assert fired == ["Q1"]
    t.arm(message(2), clock.now + 5)
    await clock.advance(5)
    assert fired == ["Q1", "Q2"]


async def test_a_timer_less_than_a_second_away_does_not_spin_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = LoopClock(monkeypatch)
    fired: list[str] = []
    t = RetryTimers(asyncio.get_running_loop(), clock, lambda m: fired.append(m.envelope.queue_id))
    runs = 0
    run = t._run

    def counted() -> None:
        nonlocal runs
        runs += 1
        run()

    t._run = counted  # type: ignore[method-assign]
    t.arm(message(1), clock.now + 0.5)
    await settle(20)
    assert runs == 0  # one loop timer waits; no callback per loop turn
    await clock.advance(0.5)
    assert fired == ["Q1"] and runs == 1


def test_stop_with_nothing_armed_is_harmless() -> None:
    loop = asyncio.new_event_loop()
    try:
        RetryTimers(loop, Clock(), lambda m: None).stop()
    finally:
        loop.close()
