"""Admitting one inbound connection: the failed-AUTH block, the connection gate, and
giving the gate's count back exactly once when the connection ends.

The listener context is a stand-in holding only what :class:`Admission` reads; the gate
and the AUTH throttle are the real ones, local or on a shared-throttle stand-in."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import pytest

from outrider.auth.throttle import AuthThrottle
from outrider.inbound.admission import AUTH_BLOCKED_CONNECT, Admission
from outrider.inbound.limits import TOO_MANY_CONNECTIONS, TOO_MANY_FROM_CLIENT, ConnectionGate
from tests.support.throttle import SharedStandIn
from tests.unit.throttle.drive import drive

if TYPE_CHECKING:
    from outrider.inbound.session import ListenerContext

CLIENT = "192.0.2.7"


@dataclass
class Clock:
    now: float = 100.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Context:
    """What Admission reads from a ListenerContext."""

    gate: ConnectionGate | None = None
    throttle: AuthThrottle | None = None
    limits_exempt_trusted: bool = False
    name: str = "mx"
    monotonic: Clock = field(default_factory=Clock)


def admission(ctx: Context) -> Admission:
    return Admission(cast("ListenerContext", ctx))


def gate(
    *, shared: bool = False, max_connections: int = 0, max_per_client: int = 0
) -> ConnectionGate:
    return ConnectionGate(
        max_connections=max_connections,
        max_per_client=max_per_client,
        rate_per_client=None,
        throttle=SharedStandIn() if shared else None,
    )


def blocked_throttle(*, shared: bool = False, client: str = CLIENT) -> AuthThrottle:
    """An AUTH throttle that has blocked ``client`` (one failure blocks) at time 100."""
    throttle = AuthThrottle(max_failures=1, throttle=SharedStandIn() if shared else None)
    if shared:
        assert drive(throttle.record_failure_async(client, 100.0))
    else:
        assert throttle.record_failure(client, 100.0)
    return throttle


def test_local_only_when_both_gate_and_throttle_answer_at_once() -> None:
    assert admission(Context()).local
    assert admission(Context(gate=gate(), throttle=AuthThrottle())).local
    assert not admission(Context(gate=gate(shared=True), throttle=AuthThrottle())).local
    assert not admission(
        Context(gate=gate(), throttle=AuthThrottle(throttle=SharedStandIn()))
    ).local


def test_trusted_client_is_exempt_only_when_the_listener_says_so() -> None:
    shared = gate(shared=True)
    plain = admission(Context(gate=shared))
    assert not plain.exempt(True) and not plain.answers_now(True)
    exempting = admission(Context(gate=shared, limits_exempt_trusted=True))
    assert exempting.exempt(True) and exempting.answers_now(True)
    assert not exempting.exempt(False) and not exempting.answers_now(False)
    # A local listener answers every client at once.
    assert admission(Context(gate=gate())).answers_now(False)


def test_no_limits_admits_and_counts_nothing() -> None:
    a = admission(Context())
    assert a.admit(CLIENT) is None
    assert a.client_ip == CLIENT and not a.admitted
    a.release()


def test_admitted_connection_is_counted_until_released_once() -> None:
    g = gate(max_per_client=1)
    a = admission(Context(gate=g))
    assert a.admit(CLIENT) is None
    assert a.admitted and g.count(CLIENT) == 1 and g.total == 1
    a.release()
    assert not a.admitted and g.total == 0
    # A second connection from the same client holds a count; the first one's release
    # (repeated) must not give it back.
    b = admission(Context(gate=g))
    assert b.admit(CLIENT) is None
    a.release()
    assert g.count(CLIENT) == 1 and g.total == 1


def test_refused_connection_gives_back_nothing() -> None:
    g = gate(max_per_client=1)
    first, second = admission(Context(gate=g)), admission(Context(gate=g))
    assert first.admit(CLIENT) is None
    assert second.admit(CLIENT) == TOO_MANY_FROM_CLIENT
    assert not second.admitted
    second.release()  # the refused session closes: the first one's count stays
    assert g.count(CLIENT) == 1 and g.total == 1


def test_gate_sees_the_listener_clock() -> None:
    seen: list[tuple[str, float]] = []

    def blocked(ip: str, now: float) -> bool:
        seen.append((ip, now))
        return False

    g = ConnectionGate(max_connections=0, max_per_client=0, rate_per_client=None, blocked=blocked)
    assert admission(Context(gate=g, monotonic=Clock(42.5))).admit(CLIENT) is None
    assert seen == [(CLIENT, 42.5)]


def test_client_blocked_after_failed_auth_is_refused_before_the_gate_counts_it() -> None:
    g = gate()
    ctx = Context(gate=g, throttle=blocked_throttle(), monotonic=Clock(101.0))
    a = admission(ctx)
    assert a.admit(CLIENT) == AUTH_BLOCKED_CONNECT
    assert (AUTH_BLOCKED_CONNECT.code, AUTH_BLOCKED_CONNECT.enhanced) == (421, "4.7.0")
    assert not a.admitted and g.total == 0
    # Another client is not blocked; and the block ends with its block time.
    assert admission(ctx).admit("192.0.2.8") is None
    ctx.monotonic.now = 100.0 + 900.0 + 1.0
    assert admission(ctx).admit(CLIENT) is None


def test_trusted_client_admitted_at_once_despite_a_shared_auth_block() -> None:
    """With shared AUTH state, a trusted client's connection is not refused (its AUTH
    is); it needs no round trip at all."""
    g = gate(shared=True)
    ctx = Context(gate=g, throttle=blocked_throttle(shared=True), limits_exempt_trusted=True)
    a = admission(ctx)
    assert a.answers_now(True)
    assert a.admit(CLIENT, trusted=True) is None
    assert a.admitted and g.total == 1


def test_exempt_client_skips_the_per_client_limit_and_is_released_at_once() -> None:
    g = gate(shared=True, max_per_client=1)
    ctx = Context(gate=g, limits_exempt_trusted=True)
    sessions = [admission(ctx) for _ in range(3)]
    assert [s.admit(CLIENT, trusted=True) for s in sessions] == [None, None, None]
    assert g.total == 3
    for s in sessions:  # no running loop needed: the total is this process's own count
        s.release()
        assert not s.admitted and not s.admitted_exempt
    assert g.total == 0


def test_untrusted_client_is_held_to_the_per_client_limit_even_when_listener_exempts() -> None:
    g = gate(max_per_client=1)
    ctx = Context(gate=g, limits_exempt_trusted=True)
    assert admission(ctx).admit(CLIENT) is None
    assert admission(ctx).admit(CLIENT) == TOO_MANY_FROM_CLIENT


async def test_async_admission_through_a_shared_gate_is_released_in_the_background() -> None:
    g = gate(shared=True, max_per_client=1)
    stand_in = cast(SharedStandIn, g.throttle)
    a = admission(Context(gate=g))
    assert await a.admit_async(CLIENT, lambda: False) is None
    assert a.admitted and a.client_ip == CLIENT and g.total == 1
    refused = admission(Context(gate=g))
    assert await refused.admit_async(CLIENT, lambda: False) == TOO_MANY_FROM_CLIENT
    assert not refused.admitted
    refused.release()
    assert g.total == 1
    a.release()
    assert not a.admitted
    for _ in range(5):
        await asyncio.sleep(0)
    assert g.total == 0 and stand_in.state.held_now("client " + CLIENT) == 0


async def test_async_admission_given_back_when_the_client_left_meanwhile() -> None:
    g = gate(shared=True, max_per_client=1)
    a = admission(Context(gate=g))
    assert await a.admit_async(CLIENT, lambda: True) is None
    assert not a.admitted and g.total == 0
    # The count really was given back: the client may connect again.
    assert await admission(Context(gate=g)).admit_async(CLIENT, lambda: False) is None


async def test_async_admission_refused_when_blocked_after_failed_auth() -> None:
    g = gate(shared=True)
    ctx = Context(gate=g, throttle=blocked_throttle(shared=True), monotonic=Clock(101.0))
    a = admission(ctx)
    assert await a.admit_async(CLIENT, lambda: False) == AUTH_BLOCKED_CONNECT
    assert not a.admitted and g.total == 0
    assert await admission(ctx).admit_async("192.0.2.8", lambda: False) is None


async def test_async_admission_passes_the_exemption_and_refusals_through() -> None:
    g = gate(shared=True, max_connections=1, max_per_client=1)
    ctx = Context(gate=g, limits_exempt_trusted=True)
    trusted = [admission(ctx), admission(ctx)]
    # Exempt from the per-client limit; the total (1, plus the trusted reserve) still counts.
    assert [await s.admit_async(CLIENT, lambda: False, trusted=True) for s in trusted] == [
        None,
        None,
    ]
    assert await admission(ctx).admit_async("192.0.2.8", lambda: False) == TOO_MANY_CONNECTIONS


async def test_async_admission_without_a_gate_counts_nothing() -> None:
    a = admission(Context(throttle=AuthThrottle(throttle=SharedStandIn())))
    assert await a.admit_async(CLIENT, lambda: False) is None
    assert a.client_ip == CLIENT and not a.admitted


def test_refusals_are_logged_with_client_listener_and_reply(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="outrider.inbound")
    g = gate(max_per_client=1)
    ctx = Context(gate=g, name="submission")
    assert admission(ctx).admit(CLIENT) is None
    assert admission(ctx).admit(CLIENT) == TOO_MANY_FROM_CLIENT
    blocked = Context(throttle=blocked_throttle(), monotonic=Clock(101.0))
    assert admission(blocked).admit(CLIENT) == AUTH_BLOCKED_CONNECT
    assert caplog.messages == [
        f"refused: client={CLIENT} listener=submission: {TOO_MANY_FROM_CLIENT}",
        f"refused: client={CLIENT} blocked after failed AUTH",
    ]


async def test_async_refusals_are_logged_with_client_listener_and_reply(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="outrider.inbound")
    g = gate(shared=True, max_per_client=1)
    ctx = Context(gate=g, name="submission")
    assert await admission(ctx).admit_async(CLIENT, lambda: False) is None
    assert await admission(ctx).admit_async(CLIENT, lambda: False) == TOO_MANY_FROM_CLIENT
    blocked = Context(throttle=blocked_throttle(shared=True), monotonic=Clock(101.0))
    assert await admission(blocked).admit_async(CLIENT, lambda: False) == AUTH_BLOCKED_CONNECT
    assert caplog.messages == [
        f"refused: client={CLIENT} listener=submission: {TOO_MANY_FROM_CLIENT}",
        f"refused: client={CLIENT} blocked after failed AUTH",
    ]


async def test_async_gate_sees_the_listener_clock() -> None:
    seen: list[float] = []

    def blocked(ip: str, now: float) -> bool:
        seen.append(now)
        return False

    g = ConnectionGate(
        max_connections=0,
        max_per_client=0,
        rate_per_client=None,
        blocked=blocked,
        throttle=SharedStandIn(),
    )
    a = admission(Context(gate=g, monotonic=Clock(42.5)))
    assert await a.admit_async(CLIENT, lambda: False) is None
    assert seen == [42.5]
