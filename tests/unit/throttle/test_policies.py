"""The policies on a throttle: their awaitable forms, on a shared throttle, decide exactly
like their synchronous forms on a local one (sync when local, awaitable when shared)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outrider.auth.rates import UserRateLimiter
from outrider.auth.throttle import AuthThrottle
from outrider.inbound.limits import ConnectionGate
from outrider.policy.rate import Rate
from tests.support.throttle import SharedStandIn
from tests.unit.throttle.drive import drive

IPS = ["192.0.2.1", "192.0.2.2", "::ffff:192.0.2.1", "2001:db8::1", "2001:db8::2"]
steps = st.floats(0.0, 3.0)


@settings(max_examples=100, deadline=None)
@given(
    ops=st.lists(
        st.tuples(st.sampled_from(["fail", "success", "delay", "blocked"]), st.sampled_from(IPS)),
        max_size=60,
    ),
    dts=st.lists(steps, min_size=60, max_size=60),
)
def test_auth_throttle_async_matches_sync(ops: list[tuple[str, str]], dts: list[float]) -> None:
    settings_ = {"max_failures": 3, "window": 10.0, "block_time": 8.0, "max_delay": 4.0}
    local = AuthThrottle(**settings_)  # type: ignore[arg-type]
    shared = AuthThrottle(**settings_, throttle=SharedStandIn(), namespace="auth ")  # type: ignore[arg-type]
    assert local.local and not shared.local
    now = 0.0
    for (op, ip), dt in zip(ops, dts, strict=False):
        now += dt
        if op == "fail":
            assert drive(shared.record_failure_async(ip, now)) == local.record_failure(ip, now)
        elif op == "success":
            drive(shared.record_success_async(ip, now))
            local.record_success(ip, now)
        elif op == "delay":
            assert drive(shared.delay_for_async(ip, now)) == local.delay_for(ip, now)
        else:
            assert drive(shared.is_blocked_async(ip, now)) == local.is_blocked(ip, now)


@settings(max_examples=100, deadline=None)
@given(
    max_connections=st.integers(0, 4),
    max_per_client=st.integers(0, 2),
    rate=st.none() | st.builds(Rate, st.integers(1, 3), st.sampled_from([1.0, 5.0])),
    ops=st.lists(st.tuples(st.booleans(), st.sampled_from(IPS), steps), max_size=60),
)
def test_gate_async_matches_sync(
    max_connections: int,
    max_per_client: int,
    rate: Rate | None,
    ops: list[tuple[bool, str, float]],
) -> None:
    limits = {
        "max_connections": max_connections,
        "max_per_client": max_per_client,
        "rate_per_client": rate,
    }
    blocked = {"2001:db8::2"}
    trusted = {"192.0.2.2", "2001:db8::1"}  # exempt from the per-client limits

    def is_blocked(ip: str, now: float) -> bool:
        return ip in blocked

    local = ConnectionGate(**limits, blocked=is_blocked)  # type: ignore[arg-type]
    stand_in = SharedStandIn()
    shared = ConnectionGate(**limits, blocked=is_blocked, throttle=stand_in, namespace="g ")  # type: ignore[arg-type]
    assert local.local and not shared.local
    now = 0.0
    admitted: list[str] = []  # callers release only what was admitted (Admission does)
    for admit, ip, dt in ops:
        now += dt
        exempt = ip in trusted
        if admit:
            answer = local.admit(ip, now, exempt=exempt)
            assert drive(shared.admit_async(ip, now, exempt=exempt)) == answer
            if answer is None:
                admitted.append(ip)
        elif ip in admitted:
            admitted.remove(ip)
            local.release(ip)
            if exempt:
                shared.release(ip, exempt=True)
            else:
                drive(shared.release_async(ip))
    assert shared.total == local.total  # each process counts its own total
    counters = {k: v for k, v in local.stats().items() if k.startswith(("refused", "admitted"))}
    assert {k: shared.stats()[k] for k in counters} == counters


@settings(max_examples=50, deadline=None)
@given(
    ops=st.lists(
        st.tuples(st.sampled_from(["u", "v"]), st.sampled_from(["3/m", "1/h", None]), steps),
        max_size=40,
    )
)
def test_user_rates_async_matches_sync(ops: list[tuple[str, str | None, float]]) -> None:
    local, shared = UserRateLimiter(), UserRateLimiter(SharedStandIn(), namespace="user ")
    assert local.local and not shared.local
    now = 0.0
    for user, rate, dt in ops:
        now += dt * 10
        assert drive(shared.allow_async(user, rate, now)) == local.allow(user, rate, now)


def test_sync_forms_need_a_local_throttle() -> None:
    auth = AuthThrottle(throttle=SharedStandIn())
    gate = ConnectionGate(
        max_connections=1, max_per_client=1, rate_per_client=None, throttle=SharedStandIn()
    )
    rates = UserRateLimiter(SharedStandIn())
    for call in (
        lambda: auth.record_failure("192.0.2.1", 0.0),
        lambda: auth.is_blocked("192.0.2.1", 0.0),
        lambda: len(auth),
        lambda: gate.admit("192.0.2.1", 0.0),
        lambda: gate.release("192.0.2.1"),
        lambda: rates.allow("u", "1/m", 0.0),
    ):
        with pytest.raises(TypeError, match="LocalThrottle"):
            call()
    assert gate.purge(0.0) == 0
    assert "clients" not in gate.stats()
    # A trusted client needs only the process's own total: admitted at once.
    assert gate.admit("192.0.2.1", 0.0, exempt=True) is None
    assert gate.total == 1 and gate.stats()["connections"] == 1
    gate.release("192.0.2.1", exempt=True)
    assert gate.total == 0


def test_policies_share_one_throttle_by_namespace() -> None:
    """One throttle (as a shared one would be) carries several policies' state apart."""
    stand_in = SharedStandIn()
    first = AuthThrottle(max_failures=1, throttle=stand_in, namespace="auth a ")
    second = AuthThrottle(max_failures=1, throttle=stand_in, namespace="auth b ")
    assert drive(first.record_failure_async("192.0.2.1", 0.0))
    assert drive(first.is_blocked_async("192.0.2.1", 1.0))
    assert not drive(second.is_blocked_async("192.0.2.1", 1.0))
