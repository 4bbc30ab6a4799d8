"""The idle-timeout sweep closes expired sessions in batches, one per event-loop turn,
so that thousands expiring together do not hold up the sessions still talking."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

from outrider.inbound.receiver import SWEEP_BATCH, Listener


class FakeSession:
    def __init__(self, idle: float, timed_out: list[FakeSession]) -> None:
        self.idle = idle
        self.busy = False
        self.conn = SimpleNamespace(closed=False)
        self._timed_out = timed_out

    def in_data(self) -> bool:
        return False

    def idle_for(self, now: float) -> float:
        return self.idle

    def timeout(self) -> None:
        self.conn.closed = True
        self._timed_out.append(self)


def listener_with(sessions: list[FakeSession]) -> Listener:
    ctx = SimpleNamespace(
        sessions=set(sessions), command_timeout=10.0, data_timeout=10.0, implicit_tls=False
    )
    return Listener(cast(Any, ctx), cast(Any, None))


async def test_mass_expiry_is_spread_over_loop_turns() -> None:
    timed_out: list[FakeSession] = []
    idle = [FakeSession(60.0, timed_out) for _ in range(2 * SWEEP_BATCH + 10)]
    talking = [FakeSession(1.0, timed_out) for _ in range(5)]
    listener = listener_with(idle + talking)

    listener.sweep_timeouts()
    assert len(timed_out) == SWEEP_BATCH  # the rest waits for the next turns
    await asyncio.sleep(0)
    assert len(timed_out) == 2 * SWEEP_BATCH
    await asyncio.sleep(0)
    assert sorted(map(id, timed_out)) == sorted(map(id, idle))


async def test_a_session_that_spoke_or_closed_meanwhile_is_spared() -> None:
    timed_out: list[FakeSession] = []
    sessions = [FakeSession(60.0, timed_out) for _ in range(SWEEP_BATCH + 3)]
    listener = listener_with(sessions)
    listener.sweep_timeouts()
    late = [s for s in sessions if s not in timed_out]
    late[0].idle = 0.5  # data arrived before its batch ran
    late[1].busy = True  # a task is storing its message
    listener.ctx.sessions.discard(cast(Any, late[2]))  # the client hung up
    await asyncio.sleep(0)
    assert [s for s in late if s in timed_out] == []


async def test_the_next_sweep_does_not_time_out_twice() -> None:
    timed_out: list[FakeSession] = []
    sessions = [FakeSession(60.0, timed_out) for _ in range(3)]
    listener = listener_with(sessions)
    listener.sweep_timeouts()
    listener.sweep_timeouts()  # closed ones stay in the set until connection_lost
    await asyncio.sleep(0)
    assert len(timed_out) == 3
