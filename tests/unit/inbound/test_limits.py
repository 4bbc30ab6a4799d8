from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outrider.inbound.limits import (
    RATE_LIMITED,
    TEMPORARILY_BLOCKED,
    TOO_MANY_CONNECTIONS,
    TOO_MANY_FROM_CLIENT,
    ConnectionGate,
    client_key,
)
from outrider.throttle import LocalThrottle
from tests.support.throttle import SharedStandIn
from tests.unit.throttle.drive import drive


@dataclass(frozen=True)
class Rate:
    count: int
    per_seconds: float


def gate(
    max_connections: int = 0,
    max_per_client: int = 0,
    rate: Rate | None = None,
    **kwargs: object,
) -> ConnectionGate:
    return ConnectionGate(
        max_connections=max_connections,
        max_per_client=max_per_client,
        rate_per_client=rate,
        **kwargs,  # type: ignore[arg-type]
    )


def test_replies_are_421_470() -> None:
    for reply in (TOO_MANY_CONNECTIONS, TOO_MANY_FROM_CLIENT, RATE_LIMITED, TEMPORARILY_BLOCKED):
        assert (reply.code, reply.enhanced) == (421, "4.7.0")
    assert TOO_MANY_FROM_CLIENT.text == "Too many connections from your address"
    assert RATE_LIMITED.text == "Connection rate limit exceeded"
    assert TEMPORARILY_BLOCKED.text.startswith("Temporarily blocked")


@pytest.mark.parametrize(
    ("max_connections", "max_per_client", "clients", "expected"),
    [
        # total limit: spread over distinct clients
        (3, 0, ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"], [None, None, None, "total"]),
        # per-client limit: one client, others unaffected
        (0, 2, ["10.0.0.1", "10.0.0.1", "10.0.0.1", "10.0.0.2"], [None, None, "client", None]),
        # both: total wins when both are exceeded
        (2, 1, ["10.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.3"], [None, "client", None, "total"]),
        # unlimited
        (0, 0, ["10.0.0.1"] * 50, [None] * 50),
        # per-client limit applies to the /64, and to mapped addresses as IPv4
        (0, 1, ["2001:db8::1", "2001:db8::2", "2001:db8:0:1::1"], [None, "client", None]),
        (0, 1, ["192.0.2.7", "::ffff:192.0.2.7"], [None, "client"]),
    ],
)
def test_concurrency_limits(
    max_connections: int, max_per_client: int, clients: list[str], expected: list[str | None]
) -> None:
    replies = {None: None, "total": TOO_MANY_CONNECTIONS, "client": TOO_MANY_FROM_CLIENT}
    g = gate(max_connections, max_per_client)
    got = [g.admit(ip, 0.0) for ip in clients]
    assert got == [replies[e] for e in expected]
    assert g.total == sum(e is None for e in expected)


@pytest.mark.parametrize(
    ("rate", "burst_times", "expected"),
    [
        # 3 per 3 s: burst of 3, fourth refused, one more after each 1 s interval
        (Rate(3, 3), [0, 0, 0, 0, 0.999, 1.0, 1.0, 2.0], [1, 1, 1, 0, 0, 1, 0, 1]),
        # 1 per 10 s
        (Rate(1, 10), [0, 5, 9.99, 10, 10], [1, 0, 0, 1, 0]),
        # fractional intervals do not lose a token to float rounding
        (Rate(3, 1), [0, 0, 0, 0, 1 / 3, 2 / 3, 1.0], [1, 1, 1, 0, 1, 1, 1]),
    ],
)
def test_rate_limit(rate: Rate, burst_times: list[float], expected: list[int]) -> None:
    g = gate(rate=rate)
    got = []
    for now in burst_times:
        reply = g.admit("198.51.100.1", now)
        assert reply in (None, RATE_LIMITED)
        got.append(int(reply is None))
    assert got == expected


def test_rate_is_per_client_and_counts_only_admitted() -> None:
    g = gate(max_per_client=1, rate=Rate(2, 60))
    assert g.admit("10.0.0.1", 0) is None
    # Refused by the per-client limit: must not consume rate.
    assert g.admit("10.0.0.1", 0) == TOO_MANY_FROM_CLIENT
    g.release("10.0.0.1")
    assert g.admit("10.0.0.1", 0) is None
    g.release("10.0.0.1")
    assert g.admit("10.0.0.1", 0) == RATE_LIMITED
    assert g.admit("10.0.0.2", 0) is None


@pytest.mark.parametrize(
    ("count", "per_seconds", "duration", "step"),
    [(60, 60.0, 600.0, 0.05), (10, 1.0, 30.0, 0.013), (5, 3600.0, 7200.0, 7.0), (1, 1.0, 10, 0.1)],
)
def test_rate_over_simulated_clock(
    count: int, per_seconds: float, duration: float, step: float
) -> None:
    g = gate(rate=Rate(count, per_seconds))
    admitted = 0
    ticks = int(duration / step)
    for i in range(ticks + 1):
        if g.admit("203.0.113.9", i * step) is None:
            admitted += 1
            g.release("203.0.113.9")
    # Burst of `count`, then one per interval over the elapsed time.
    allowed = count + (ticks * step) * count / per_seconds
    assert abs(admitted - allowed) <= 1, (admitted, allowed)


def test_blocked_predicate() -> None:
    calls: list[tuple[str, float]] = []

    def blocked(ip: str, now: float) -> bool:
        calls.append((ip, now))
        return ip == "10.6.6.6"

    g = gate(max_per_client=5, blocked=blocked)
    assert g.admit("10.6.6.6", 5.0) == TEMPORARILY_BLOCKED
    assert g.admit("10.0.0.1", 6.0) is None
    assert calls == [("10.6.6.6", 5.0), ("10.0.0.1", 6.0)]
    assert g.count("10.6.6.6") == 0
    assert g.total == 1
    assert g.stats()["refused_blocked"] == 1


def test_exempt_client_skips_per_client_count_and_rate_but_counts_in_total() -> None:
    g = gate(max_connections=30, max_per_client=2, rate=Rate(3, 60))
    for i in range(25):  # far beyond both the per-client limit and the rate's burst
        assert g.admit("127.0.0.1", i * 0.01, exempt=True) is None
    assert g.total == 25 and g.count("127.0.0.1") == 25
    # An outsider is still limited, and the trusted client used none of its own rate.
    assert [g.admit("192.0.2.9", 1.0) for _ in range(3)] == [None, None, TOO_MANY_FROM_CLIENT]
    g.release("192.0.2.9")
    assert g.admit("192.0.2.9", 1.0) is None
    g.release("192.0.2.9")
    assert g.admit("192.0.2.9", 1.0) == RATE_LIMITED
    assert g.total == 26  # 25 trusted, 1 outsider
    while g.total < 30:
        assert g.admit("127.0.0.1", 1.0, exempt=True) is None
    assert g.admit("192.0.2.10", 1.0) == TOO_MANY_CONNECTIONS  # the total holds for strangers
    while g.total < 40:  # trusted clients have a reserve: 10% of the total, at least 10
        assert g.admit("127.0.0.1", 1.0, exempt=True) is None
    assert g.admit("127.0.0.1", 1.0, exempt=True) == TOO_MANY_CONNECTIONS  # and it holds
    for _ in range(39):
        g.release("127.0.0.1")
    assert g.count("127.0.0.1") == 0 and g.total == 1
    stats = g.stats()
    assert (stats["admitted"], stats["admitted_exempt"]) == (42, 39)
    # The same client without the exemption is held to its limits again.
    assert [g.admit("127.0.0.1", 2.0) for _ in range(3)] == [None, None, TOO_MANY_FROM_CLIENT]


def test_exempt_client_is_still_refused_when_blocked() -> None:
    g = gate(blocked=lambda ip, now: True)
    assert g.admit("127.0.0.1", 0, exempt=True) == TEMPORARILY_BLOCKED
    assert g.total == 0


def test_release_admit_symmetry() -> None:
    g = gate(max_connections=4, max_per_client=2)
    ips = ["10.0.0.1", "10.0.0.1", "2001:db8::1", "::ffff:10.0.0.9"]
    for ip in ips:
        assert g.admit(ip, 0) is None
    assert g.total == 4
    assert g.admit("10.0.0.3", 0) == TOO_MANY_CONNECTIONS
    for ip in ips:
        g.release(ip)
    assert g.total == 0
    assert g.stats()["clients"] == 0
    # Surplus and unknown releases never go negative.
    g.release("10.0.0.1")
    g.release("192.0.2.1")
    assert g.total == 0
    assert g.count("10.0.0.1") == 0
    for ip in ips:
        assert g.admit(ip, 0) is None


@pytest.mark.parametrize(
    ("ip", "key"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("::FFFF:c000:0201", "192.0.2.1"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:0db8:0001:0002::ffff", "2001:db8:1:2::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("::1", "::/64"),
        ("", ""),
        ("not:an:address", "not:an:address"),
        ("/run/outrider.sock", "/run/outrider.sock"),
    ],
)
def test_client_key(ip: str, key: str) -> None:
    assert client_key(ip) == key


def test_ipv6_grouped_by_64() -> None:
    g = gate(max_per_client=3)
    for host in range(1, 4):
        assert g.admit(f"2001:db8:aa:bb::{host:x}", 0) is None
    assert g.admit("2001:db8:aa:bb:ffff:ffff:ffff:ffff", 0) == TOO_MANY_FROM_CLIENT
    assert g.admit("2001:db8:aa:bc::1", 0) is None
    assert g.count("2001:db8:aa:bb::99") == 3
    g.release("2001:db8:aa:bb::77")  # any address in the /64 releases the group's count
    assert g.count("2001:db8:aa:bb::1") == 2


def test_ipv6_rate_grouped_by_64() -> None:
    g = gate(rate=Rate(2, 60))
    assert g.admit("2001:db8::1", 0) is None
    assert g.admit("2001:db8::2", 0) is None
    assert g.admit("2001:db8::3", 0) == RATE_LIMITED


def test_mapped_address_shares_ipv4_state() -> None:
    g = gate(max_per_client=2, rate=Rate(3, 60))
    assert g.admit("192.0.2.5", 0) is None
    assert g.admit("::ffff:192.0.2.5", 0) is None
    assert g.count("192.0.2.5") == 2
    assert g.admit("192.0.2.5", 0) == TOO_MANY_FROM_CLIENT
    g.release("::ffff:192.0.2.5")
    assert g.admit("192.0.2.5", 0) is None
    g.release("192.0.2.5")
    assert g.admit("::ffff:192.0.2.5", 0) == RATE_LIMITED


def test_purge_bounds_memory() -> None:
    g = gate(rate=Rate(10, 10))  # a state drains 1 s after its client's last admit
    for i in range(5000):
        ip = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
        assert g.admit(ip, i / 1024) is None  # binary fractions: exact float arithmetic
        g.release(ip)
    # The amortised purge already dropped every client idle for a second or more: only
    # the last second's clients (i > 4999 - 1024) remain.
    assert g.stats()["rate_tracked_clients"] == 1024
    # Explicit purge drops everything drained by then, and nothing still in its window.
    assert g.purge(5.0) == 4096 - 3976 + 1  # TAT = i/1024 + 1 <= 5.0
    assert g.stats()["rate_tracked_clients"] == 1024 - 121
    assert g.purge(100.0) == 1024 - 121
    assert g.stats()["rate_tracked_clients"] == 0


def test_amortised_purge_keeps_only_recent_clients() -> None:
    g = gate(rate=Rate(1, 1))
    # One new client per 10 ms for 100 s: at most ~1 s worth (100) is still in its window.
    peak = 0
    for i in range(10_000):
        ip = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
        assert g.admit(ip, i * 0.01) is None
        g.release(ip)
        peak = max(peak, g.stats()["rate_tracked_clients"])
    assert peak <= 102


def test_tracked_clients_capped_oldest_dropped() -> None:
    g = gate(rate=Rate(1, 3600), max_tracked=100)
    for i in range(250):
        assert g.admit(f"10.0.{i >> 8}.{i & 255}", 0) is None
    assert g.stats()["rate_tracked_clients"] == 100
    # The oldest client's state was dropped, so it gets a fresh allowance...
    assert g.admit("10.0.0.0", 1) is None
    # ...while a recent one is still limited.
    assert g.admit("10.0.0.249", 1) == RATE_LIMITED


def test_update_keeps_counts() -> None:
    g = gate(max_connections=10, max_per_client=5, rate=Rate(100, 1))
    for _ in range(3):
        assert g.admit("10.0.0.1", 0) is None
    g.update(max_connections=10, max_per_client=2, rate_per_client=Rate(100, 1))
    assert g.count("10.0.0.1") == 3
    assert g.admit("10.0.0.1", 0) == TOO_MANY_FROM_CLIENT
    g.release("10.0.0.1")
    g.release("10.0.0.1")
    assert g.admit("10.0.0.1", 0) is None
    g.update(max_connections=2, max_per_client=0, rate_per_client=None)
    assert g.total == 2
    assert g.admit("10.0.0.2", 0) == TOO_MANY_CONNECTIONS
    assert g.stats()["rate_tracked_clients"] == 0


def test_update_rate_keeps_state_when_unchanged_and_resets_otherwise() -> None:
    g = gate(rate=Rate(1, 60))
    assert g.admit("10.0.0.1", 0) is None
    g.update(max_connections=0, max_per_client=0, rate_per_client=Rate(1, 60))
    assert g.admit("10.0.0.1", 1) == RATE_LIMITED
    g.update(max_connections=0, max_per_client=0, rate_per_client=Rate(2, 60))
    assert g.admit("10.0.0.1", 1) is None
    assert g.admit("10.0.0.1", 1) is None
    assert g.admit("10.0.0.1", 1) == RATE_LIMITED


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_connections": -1},
        {"max_per_client": -1},
        {"rate": Rate(0, 60)},
        {"rate": Rate(5, 0)},
        {"max_tracked": 0},
    ],
)
def test_invalid_limits(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        gate(**kwargs)  # type: ignore[arg-type]


def test_stats() -> None:
    g = gate(max_connections=2, max_per_client=1, rate=Rate(1, 60))
    g.admit("10.0.0.1", 0)
    g.admit("10.0.0.1", 0)
    g.release("10.0.0.1")
    g.admit("10.0.0.1", 1)
    g.admit("10.0.0.2", 1)
    g.admit("10.0.0.3", 1)
    g.admit("10.0.0.4", 1)
    assert g.stats() == {
        "connections": 2,
        "clients": 2,
        "rate_tracked_clients": 3,
        "max_connections": 2,
        "max_per_client": 1,
        "admitted": 3,
        "admitted_exempt": 0,
        "refused_total": 1,
        "refused_blocked": 0,
        "refused_per_client": 1,
        "refused_rate": 1,
    }


IPS = ["10.0.0.1", "10.0.0.2", "::ffff:10.0.0.1", "2001:db8::1", "2001:db8::2", "2001:db8:1::1"]


@settings(max_examples=200, deadline=None)
@given(
    max_connections=st.integers(0, 6),
    max_per_client=st.integers(0, 3),
    rate=st.none() | st.builds(Rate, st.integers(1, 5), st.sampled_from([0.5, 1.0, 10.0])),
    ops=st.lists(st.tuples(st.booleans(), st.sampled_from(IPS), st.floats(0, 0.5)), max_size=80),
)
def test_counts_stay_consistent(
    max_connections: int,
    max_per_client: int,
    rate: Rate | None,
    ops: list[tuple[bool, str, float]],
) -> None:
    g = gate(max_connections, max_per_client, rate)
    now = 0.0
    live: dict[str, int] = {}
    for is_admit, ip, dt in ops:
        now += dt
        if is_admit:
            if g.admit(ip, now) is None:
                live[client_key(ip)] = live.get(client_key(ip), 0) + 1
        else:
            g.release(ip)
            key = client_key(ip)
            if live.get(key):
                live[key] -= 1
        counts = {client_key(ip): g.count(ip) for ip in IPS}
        assert all(c >= 0 for c in counts.values())
        assert g.total >= 0
        assert g.total == sum(counts.values()) == sum(live.values())
        assert counts == {k: live.get(k, 0) for k in counts}
        if max_connections:
            assert g.total <= max_connections
        if max_per_client:
            assert all(c <= max_per_client for c in counts.values())


def shared_gate(
    max_connections: int = 0,
    max_per_client: int = 0,
    rate: Rate | None = None,
    **kwargs: object,
) -> ConnectionGate:
    return gate(max_connections, max_per_client, rate, throttle=SharedStandIn(), **kwargs)


async def test_shared_gate_counts_each_client_apart_and_gives_counts_back() -> None:
    g = shared_gate(max_per_client=1)
    assert await g.admit_async("192.0.2.1", 0.0) is None
    assert await g.admit_async("192.0.2.2", 0.0) is None  # another client: its own count
    assert await g.admit_async("192.0.2.1", 0.0) == TOO_MANY_FROM_CLIENT
    assert await g.admit_async("192.0.2.1", 0.0) == TOO_MANY_FROM_CLIENT
    assert g.total == 2
    await g.release_async("192.0.2.1")
    assert g.total == 1
    assert await g.admit_async("192.0.2.1", 0.0) is None  # its count was given back
    assert (g.stats()["admitted"], g.stats()["refused_per_client"]) == (3, 2)


async def test_shared_gate_rate_is_per_client_and_refusals_are_counted() -> None:
    g = shared_gate(max_per_client=1, rate=Rate(1, 60))  # count and rate: one round trip
    assert await g.admit_async("192.0.2.1", 0.0) is None
    await g.release_async("192.0.2.1")
    assert await g.admit_async("192.0.2.1", 1.0) == RATE_LIMITED
    assert await g.admit_async("192.0.2.1", 2.0) == RATE_LIMITED
    assert await g.admit_async("192.0.2.2", 2.0) is None  # another client's rate is its own
    assert g.stats()["refused_rate"] == 2
    assert g.total == 1  # refused connections hold no count


async def test_admit_async_holds_a_client_to_its_limits_unless_told_it_is_exempt() -> None:
    g = shared_gate(max_per_client=1)
    assert await g.admit_async("192.0.2.1", 0.0) is None
    assert await g.admit_async("192.0.2.1", 0.0) == TOO_MANY_FROM_CLIENT
    assert await g.admit_async("192.0.2.1", 0.0, exempt=True) is None
    assert g.stats()["admitted_exempt"] == 1


async def test_admit_async_gives_the_blocked_predicate_the_client_and_time() -> None:
    calls: list[tuple[str, float]] = []

    def blocked(ip: str, now: float) -> bool:
        calls.append((ip, now))
        return False

    g = shared_gate(blocked=blocked)
    assert await g.admit_async("192.0.2.1", 5.0) is None
    assert await g.admit_async("192.0.2.2", 6.0, exempt=True) is None
    assert calls == [("192.0.2.1", 5.0), ("192.0.2.2", 6.0)]


async def test_release_async_on_a_local_gate_gives_the_count_back() -> None:
    g = gate(max_per_client=1)
    assert await g.admit_async("192.0.2.1", 0.0) is None
    await g.release_async("192.0.2.1")
    assert g.count("192.0.2.1") == 0 and g.total == 0


def test_gates_sharing_a_throttle_keep_their_rates_apart_by_namespace() -> None:
    stand_in = SharedStandIn()
    a = gate(rate=Rate(1, 60), throttle=stand_in, namespace="a ")
    b = gate(rate=Rate(1, 60), throttle=stand_in, namespace="b ")
    assert drive(a.admit_async("192.0.2.1", 0.0)) is None
    assert drive(b.admit_async("192.0.2.1", 0.0)) is None  # a's use is not b's
    assert drive(a.admit_async("192.0.2.1", 1.0)) == RATE_LIMITED


def test_refusal_counters_accumulate() -> None:
    g = gate(max_per_client=1, rate=Rate(1, 60))
    assert g.admit("192.0.2.1", 0.0) is None
    for _ in range(3):
        assert g.admit("192.0.2.1", 0.0) == TOO_MANY_FROM_CLIENT
    g.release("192.0.2.1")
    for _ in range(2):
        assert g.admit("192.0.2.1", 0.0) == RATE_LIMITED
    stats = g.stats()
    assert (stats["refused_per_client"], stats["refused_rate"]) == (3, 2)


def test_trusted_reserve_is_a_tenth_of_the_total_in_whole_connections() -> None:
    g = gate(max_connections=205)
    for _ in range(205 + 20):  # 205 // 10 = 20 more for trusted clients
        assert g.admit("127.0.0.1", 0.0, exempt=True) is None
    assert g.admit("127.0.0.1", 0.0, exempt=True) == TOO_MANY_CONNECTIONS


def test_adding_a_rate_keeps_live_counts() -> None:
    g = gate(max_per_client=2)
    assert g.admit("192.0.2.1", 0.0) is None
    g.update(max_connections=0, max_per_client=2, rate_per_client=Rate(10, 60))
    assert g.count("192.0.2.1") == 1 and g.total == 1
    assert g.admit("192.0.2.1", 0.0) is None
    assert g.admit("192.0.2.1", 0.0) == TOO_MANY_FROM_CLIENT


def test_shared_gate_changes_its_rate_without_dropping_state_itself() -> None:
    g = shared_gate(rate=Rate(1, 60))
    assert drive(g.admit_async("192.0.2.1", 0.0)) is None
    g.update(max_connections=0, max_per_client=0, rate_per_client=Rate(2, 60))
    # The new rate has its own keys: the client starts afresh under it.
    assert drive(g.admit_async("192.0.2.1", 1.0)) is None


def test_smallest_tracked_limit_is_one_and_holds_for_a_shared_throttle_too() -> None:
    assert gate(max_tracked=1).admit("192.0.2.1", 0.0) is None
    with pytest.raises(ValueError, match="max_tracked"):
        shared_gate(max_tracked=0)


def test_gates_sharing_a_local_throttle_keep_their_totals_apart_by_namespace() -> None:
    shared = LocalThrottle()
    a = gate(max_connections=1, throttle=shared, namespace="a ")
    b = gate(max_connections=1, throttle=shared, namespace="b ")
    assert a.admit("192.0.2.1", 0.0) is None
    assert b.admit("192.0.2.2", 0.0) is None  # a's connection is not in b's total
    assert a.admit("192.0.2.3", 0.0) == TOO_MANY_CONNECTIONS
    assert (a.total, b.total) == (1, 1)
