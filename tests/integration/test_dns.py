"""MxResolver against a real authoritative DNS server on loopback."""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from outrider.delivery.dns import DnsError, DnsErrorKind, MxHost, MxResolver
from tests.support.dns_server import DnsTestServer


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


ZONE: dict[str, dict[str, Any]] = {
    "example.test": {
        "MX": [(10, "mx1.example.test"), (10, "mx2.example.test"), (20, "mx3.example.test")]
    },
    "mx1.example.test": {"A": ["127.0.0.2"], "TTL": 120},
    "mx2.example.test": {"A": ["127.0.0.3"]},
    "mx3.example.test": {"A": ["127.0.0.4"], "AAAA": ["::1"]},
    "aonly.test": {"A": ["127.0.0.5"]},
    "v6only.test": {"AAAA": ["::1"]},
    "txtonly.test": {"TXT": ["v=spf1 -all"]},
    "null.test": {"MX": [(0, ".")]},
    "mixednull.test": {"MX": [(0, "."), (10, "mx1.example.test")]},
    "skip.test": {
        "MX": [(5, "missing.skip.test"), (7, "noaddr.skip.test"), (10, "good.skip.test")]
    },
    "noaddr.skip.test": {"TXT": ["no addresses here"]},
    "good.skip.test": {"A": ["127.0.0.6"]},
    "dead.test": {"MX": [(10, "missing.dead.test"), (20, "noaddr.dead.test")]},
    "noaddr.dead.test": {"TXT": ["nothing"]},
    "flaky.test": {"MX": [(10, "broken.flaky.test"), (20, "ok.flaky.test")]},
    "broken.flaky.test": {"A": ["127.0.0.7"]},
    "ok.flaky.test": {"A": ["127.0.0.8"]},
    "xn--bcher-kva.test": {"MX": [(10, "mx.xn--bcher-kva.test")]},
    "mx.xn--bcher-kva.test": {"A": ["127.0.0.9"]},
    "alias.test": {"MX": [(10, "cname.alias.test")]},
    "cname.alias.test": {"CNAME": ["real.alias.test"]},
    "real.alias.test": {"A": ["127.0.0.10"]},
    "literal.test": {"MX": [(10, "127.0.0.11")]},
    "dup.test": {"MX": [(10, "mx1.example.test"), (20, "mx1.example.test")]},
    "zerottl.test": {"A": ["127.0.0.12"], "TTL": 0},
}


@pytest.fixture
async def server() -> AsyncIterator[DnsTestServer]:
    async with DnsTestServer(ZONE, ttl=300, negative_ttl=60) as srv:
        yield srv


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def resolver(server: DnsTestServer, clock: FakeClock) -> MxResolver:
    return MxResolver(
        [server.nameserver], timeout=0.5, lifetime=1.0, clock=clock, rng=random.Random(42)
    )


def names(hosts: list[MxHost]) -> list[str]:
    return [h.name for h in hosts]


async def test_mx_preference_order_and_random_equal_order(
    resolver: MxResolver, server: DnsTestServer
) -> None:
    orders = set()
    for _ in range(40):
        hosts = await resolver.resolve_mx("example.test")
        assert sorted(names(hosts)[:2]) == ["mx1.example.test", "mx2.example.test"]
        assert hosts[2] == MxHost("mx3.example.test", 20, ("127.0.0.4", "::1"))
        assert [h.preference for h in hosts] == [10, 10, 20]
        orders.add(tuple(names(hosts)[:2]))
    assert len(orders) == 2  # both orders of the equal-preference pair appear
    by_name = {h.name: h for h in hosts}
    assert by_name["mx1.example.test"].addresses == ("127.0.0.2",)
    assert by_name["mx2.example.test"].addresses == ("127.0.0.3",)
    # forty resolutions, one query per (name, type): the cache did the rest
    assert server.query_count("example.test", "MX") == 1
    assert server.query_count("mx1.example.test", "A") == 1
    assert server.query_count("mx1.example.test", "AAAA") == 1


async def test_domain_is_normalized(resolver: MxResolver, server: DnsTestServer) -> None:
    hosts = await resolver.resolve_mx("EXAMPLE.Test.")
    assert len(hosts) == 3
    await resolver.resolve_mx("example.test")
    assert server.query_count("example.test", "MX") == 1


async def test_implicit_mx_from_a_record(resolver: MxResolver) -> None:
    assert await resolver.resolve_mx("aonly.test") == [
        MxHost("aonly.test", 0, ("127.0.0.5",), implicit=True)
    ]


async def test_implicit_mx_from_aaaa_record(resolver: MxResolver) -> None:
    assert await resolver.resolve_mx("v6only.test") == [
        MxHost("v6only.test", 0, ("::1",), implicit=True)
    ]


async def test_no_mx_and_no_address_is_no_addresses(resolver: MxResolver) -> None:
    with pytest.raises(DnsError) as info:
        await resolver.resolve_mx("txtonly.test")
    assert info.value.kind is DnsErrorKind.NO_ADDRESSES
    assert info.value.domain == "txtonly.test"


async def test_null_mx(resolver: MxResolver) -> None:
    with pytest.raises(DnsError) as info:
        await resolver.resolve_mx("null.test")
    assert info.value.kind is DnsErrorKind.NULL_MX
    assert info.value.enhanced_status == "5.1.10"


async def test_null_mx_mixed_with_real_exchanges_uses_the_real_ones(resolver: MxResolver) -> None:
    assert names(await resolver.resolve_mx("mixednull.test")) == ["mx1.example.test"]


async def test_nxdomain(resolver: MxResolver) -> None:
    with pytest.raises(DnsError) as info:
        await resolver.resolve_mx("nonexistent.test")
    assert info.value.kind is DnsErrorKind.NXDOMAIN
    assert str(info.value) == "nonexistent.test: domain not found"


async def test_servfail_is_temporary_and_not_cached_for_long(
    resolver: MxResolver, server: DnsTestServer, clock: FakeClock
) -> None:
    server.servfail("example.test")
    with pytest.raises(DnsError) as info:
        await resolver.resolve_mx("example.test")
    assert info.value.kind is DnsErrorKind.TEMPORARY
    assert "SERVFAIL" in info.value.detail
    server.servfail("example.test", enabled=False)
    clock.advance(5)
    assert len(await resolver.resolve_mx("example.test")) == 3


async def test_refused_is_temporary(resolver: MxResolver) -> None:
    with pytest.raises(DnsError) as info:
        await resolver.resolve_mx("outside.invalid")  # not in the server's zones
    assert info.value.kind is DnsErrorKind.TEMPORARY
    assert "REFUSED" in info.value.detail


async def test_dropped_query_is_temporary_within_lifetime(server: DnsTestServer) -> None:
    resolver = MxResolver([server.nameserver], timeout=0.1, lifetime=0.3)
    server.drop("example.test")
    started = time.monotonic()
    with pytest.raises(DnsError) as info:
        await resolver.resolve_mx("example.test")
    elapsed = time.monotonic() - started
    assert info.value.kind is DnsErrorKind.TEMPORARY
    assert "timed out" in info.value.detail
    assert 0.25 < elapsed < 1.5
    assert server.query_count("example.test", "MX") >= 1


async def test_unreachable_nameserver_is_temporary() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never read: queries go unanswered
        resolver = MxResolver([f"127.0.0.1:{port}"], timeout=0.1, lifetime=0.2)
        with pytest.raises(DnsError) as info:
            await resolver.resolve_mx("example.test")
    assert info.value.kind is DnsErrorKind.TEMPORARY


async def test_mx_hosts_without_addresses_are_skipped(resolver: MxResolver) -> None:
    assert await resolver.resolve_mx("skip.test") == [MxHost("good.skip.test", 10, ("127.0.0.6",))]


async def test_all_mx_hosts_without_addresses_is_temporary(resolver: MxResolver) -> None:
    with pytest.raises(DnsError) as info:
        await resolver.resolve_mx("dead.test")
    assert info.value.kind is DnsErrorKind.TEMPORARY
    assert "no MX host has an address" in info.value.detail


async def test_failing_mx_host_lookup_falls_back_to_working_host(
    resolver: MxResolver, server: DnsTestServer
) -> None:
    server.servfail("broken.flaky.test")
    assert names(await resolver.resolve_mx("flaky.test")) == ["ok.flaky.test"]


async def test_all_mx_host_lookups_failing_is_temporary(
    resolver: MxResolver, server: DnsTestServer
) -> None:
    server.servfail("broken.flaky.test")
    server.servfail("ok.flaky.test")
    with pytest.raises(DnsError) as info:
        await resolver.resolve_mx("flaky.test")
    assert info.value.kind is DnsErrorKind.TEMPORARY
    assert "broken.flaky.test" in info.value.detail
    assert "SERVFAIL" in info.value.detail


async def test_positive_cache_respects_ttl(
    resolver: MxResolver, server: DnsTestServer, clock: FakeClock
) -> None:
    hosts = await resolver.resolve_mx("mixednull.test")
    assert hosts[0].addresses == ("127.0.0.2",)
    server.set_records("mx1.example.test", "A", ["127.0.0.20"])
    clock.advance(119)  # mx1's A TTL is 120
    assert (await resolver.resolve_mx("mixednull.test"))[0].addresses == ("127.0.0.2",)
    assert server.query_count("mx1.example.test", "A") == 1
    clock.advance(2)
    assert (await resolver.resolve_mx("mixednull.test"))[0].addresses == ("127.0.0.20",)
    assert server.query_count("mx1.example.test", "A") == 2
    assert server.query_count("mixednull.test", "MX") == 1  # MX TTL is 300: still cached
    clock.advance(300)
    await resolver.resolve_mx("mixednull.test")
    assert server.query_count("mixednull.test", "MX") == 2


async def test_zero_ttl_is_not_cached(resolver: MxResolver, server: DnsTestServer) -> None:
    await resolver.resolve_addresses("zerottl.test")
    await resolver.resolve_addresses("zerottl.test")
    assert server.query_count("zerottl.test", "A") == 2


async def test_clear_cache(resolver: MxResolver, server: DnsTestServer) -> None:
    await resolver.resolve_mx("aonly.test")
    resolver.clear_cache()
    await resolver.resolve_mx("aonly.test")
    assert server.query_count("aonly.test", "MX") == 2


async def test_negative_cache_nxdomain_uses_soa_minimum(
    resolver: MxResolver, server: DnsTestServer, clock: FakeClock
) -> None:
    for _ in range(3):
        with pytest.raises(DnsError):
            await resolver.resolve_mx("later.test")
    assert server.query_count("later.test", "MX") == 1
    server.set_records("later.test", "MX", [(10, "mx1.example.test")])
    clock.advance(59)  # SOA minimum is 60
    with pytest.raises(DnsError) as info:
        await resolver.resolve_mx("later.test")
    assert info.value.kind is DnsErrorKind.NXDOMAIN
    clock.advance(2)
    assert names(await resolver.resolve_mx("later.test")) == ["mx1.example.test"]
    assert server.query_count("later.test", "MX") == 2


async def test_negative_cache_nodata(
    resolver: MxResolver, server: DnsTestServer, clock: FakeClock
) -> None:
    await resolver.resolve_mx("aonly.test")
    await resolver.resolve_mx("aonly.test")
    assert server.query_count("aonly.test", "MX") == 1
    assert server.query_count("aonly.test", "AAAA") == 1  # NODATA for AAAA cached too
    clock.advance(61)
    await resolver.resolve_mx("aonly.test")
    assert server.query_count("aonly.test", "MX") == 2


async def test_negative_ttl_is_capped(clock: FakeClock) -> None:
    async with DnsTestServer(ZONE, negative_ttl=86400) as srv:
        resolver = MxResolver([srv.nameserver], clock=clock, max_negative_ttl=3600)
        with pytest.raises(DnsError):
            await resolver.resolve_mx("gone.test")
        clock.advance(3599)
        with pytest.raises(DnsError):
            await resolver.resolve_mx("gone.test")
        assert srv.query_count("gone.test", "MX") == 1
        clock.advance(2)
        with pytest.raises(DnsError):
            await resolver.resolve_mx("gone.test")
        assert srv.query_count("gone.test", "MX") == 2


async def test_cache_is_bounded(server: DnsTestServer, clock: FakeClock) -> None:
    resolver = MxResolver([server.nameserver], clock=clock, max_cache_entries=2)
    await resolver.resolve_addresses("good.skip.test")  # A, AAAA: cache full
    await resolver.resolve_addresses("ok.flaky.test")  # evicts the first host's entries
    await resolver.resolve_addresses("ok.flaky.test")
    assert server.query_count("ok.flaky.test", "A") == 1
    await resolver.resolve_addresses("good.skip.test")
    assert server.query_count("good.skip.test", "A") == 2


async def test_concurrent_lookups_share_one_query(
    resolver: MxResolver, server: DnsTestServer
) -> None:
    results = await asyncio.gather(*(resolver.resolve_mx("example.test") for _ in range(25)))
    assert all(len(hosts) == 3 for hosts in results)
    assert server.query_count("example.test", "MX") == 1
    for host in ("mx1", "mx2", "mx3"):
        assert server.query_count(f"{host}.example.test", "A") == 1
        assert server.query_count(f"{host}.example.test", "AAAA") == 1


async def test_concurrent_failures_coalesce_too(server: DnsTestServer) -> None:
    resolver = MxResolver([server.nameserver], timeout=0.1, lifetime=0.2)
    server.drop("example.test")
    results = await asyncio.gather(
        *(resolver.resolve_mx("example.test") for _ in range(10)), return_exceptions=True
    )
    assert all(isinstance(r, DnsError) and r.kind is DnsErrorKind.TEMPORARY for r in results)
    assert server.query_count("example.test", "MX") <= 3  # one resolution and its retries


async def test_cancelled_waiter_does_not_cancel_shared_query(server: DnsTestServer) -> None:
    resolver = MxResolver([server.nameserver], timeout=0.5, lifetime=1.0)
    first = asyncio.ensure_future(resolver.resolve_mx("example.test"))
    second = asyncio.ensure_future(resolver.resolve_mx("example.test"))
    await asyncio.sleep(0)
    first.cancel()
    assert len(await second) == 3
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_idn_domain(resolver: MxResolver, server: DnsTestServer) -> None:
    hosts = await resolver.resolve_mx("Bücher.test.")
    assert hosts == [MxHost("mx.xn--bcher-kva.test", 10, ("127.0.0.9",))]
    assert server.query_count("xn--bcher-kva.test", "MX") == 1


async def test_ipv6_addresses(server: DnsTestServer, clock: FakeClock) -> None:
    default = MxResolver([server.nameserver], clock=clock)
    assert await default.resolve_addresses("mx3.example.test") == ("127.0.0.4", "::1")
    v6_first = MxResolver([server.nameserver], clock=clock, prefer_ipv6=True)
    assert await v6_first.resolve_addresses("mx3.example.test") == ("::1", "127.0.0.4")
    v4_only = MxResolver([server.nameserver], clock=clock, ipv6=False)
    assert await v4_only.resolve_addresses("mx3.example.test") == ("127.0.0.4",)
    server.reset_counts()
    await v4_only.resolve_mx("example.test")
    assert server.query_count("mx3.example.test", "AAAA") == 0
    v6_only = MxResolver([server.nameserver], clock=clock, ipv4=False)
    assert await v6_only.resolve_mx("example.test") == [MxHost("mx3.example.test", 20, ("::1",))]


async def test_nameserver_as_host_port_tuple(server: DnsTestServer) -> None:
    resolver = MxResolver([server.address], timeout=0.5, lifetime=1.0)
    assert await resolver.resolve_addresses("v6only.test") == ("::1",)


async def test_mx_exchange_behind_cname(resolver: MxResolver) -> None:
    hosts = await resolver.resolve_mx("alias.test")
    assert hosts == [MxHost("cname.alias.test", 10, ("127.0.0.10",))]


async def test_mx_exchange_ip_literal(resolver: MxResolver, server: DnsTestServer) -> None:
    assert await resolver.resolve_mx("literal.test") == [MxHost("127.0.0.11", 10, ("127.0.0.11",))]
    assert server.query_count("127.0.0.11", "A") == 0


async def test_duplicate_exchange_listed_once(resolver: MxResolver) -> None:
    assert await resolver.resolve_mx("dup.test") == [MxHost("mx1.example.test", 10, ("127.0.0.2",))]


async def test_domain_literal_needs_no_lookup(resolver: MxResolver, server: DnsTestServer) -> None:
    assert await resolver.resolve_mx("[127.0.0.1]") == [MxHost("[127.0.0.1]", 0, ("127.0.0.1",))]
    assert await resolver.resolve_mx("[IPv6:::1]") == [MxHost("[IPv6:::1]", 0, ("::1",))]
    assert server.total_queries == 0


async def test_resolve_addresses_errors(resolver: MxResolver, server: DnsTestServer) -> None:
    with pytest.raises(DnsError) as info:
        await resolver.resolve_addresses("missing.test")
    assert info.value.kind is DnsErrorKind.NXDOMAIN
    with pytest.raises(DnsError) as info:
        await resolver.resolve_addresses("txtonly.test")
    assert info.value.kind is DnsErrorKind.NO_ADDRESSES
    server.servfail("aonly.test", "A")
    with pytest.raises(DnsError) as info:
        await resolver.resolve_addresses("aonly.test")
    assert info.value.kind is DnsErrorKind.TEMPORARY
    assert await resolver.resolve_addresses("127.0.0.1") == ("127.0.0.1",)


async def test_one_family_failing_keeps_the_other(
    resolver: MxResolver, server: DnsTestServer
) -> None:
    server.servfail("mx3.example.test", "AAAA")
    assert await resolver.resolve_addresses("mx3.example.test") == ("127.0.0.4",)


async def test_address_order_randomized_within_family(server: DnsTestServer) -> None:
    server.set_records("multi.test", "A", ["127.0.1.1", "127.0.1.2", "127.0.1.3"])
    resolver = MxResolver([server.nameserver], rng=random.Random(3))
    orders = {await resolver.resolve_addresses("multi.test") for _ in range(30)}
    assert len(orders) > 1
    assert all(sorted(o) == ["127.0.1.1", "127.0.1.2", "127.0.1.3"] for o in orders)
    fixed = MxResolver([server.nameserver], randomize_addresses=False)
    assert await fixed.resolve_addresses("multi.test") == ("127.0.1.1", "127.0.1.2", "127.0.1.3")


async def test_large_answer_truncated_then_retried_over_tcp(
    resolver: MxResolver, server: DnsTestServer
) -> None:
    exchanges = [(10 + i % 3, f"{'m' * 50}-{i}.big.test") for i in range(40)]
    server.set_records("big.test", "MX", exchanges)
    for i in range(40):
        server.set_records(f"{'m' * 50}-{i}.big.test", "A", [f"127.0.2.{i + 1}"])
    hosts = await resolver.resolve_mx("big.test")
    assert len(hosts) == 40
    assert [h.preference for h in hosts] == sorted(h.preference for h in hosts)
    assert server.tcp_queries >= 1


async def test_server_ignores_malformed_queries(
    resolver: MxResolver, server: DnsTestServer
) -> None:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        for junk in (b"", b"\x00", b"\xff" * 40, b"\x12\x34\x01\x00\x00\x05"):
            await loop.sock_sendto(sock, junk, server.address)
    _reader, writer = await asyncio.open_connection(*server.address)
    writer.write(b"\x00\x03abc")
    writer.close()
    await writer.wait_closed()
    assert len(await resolver.resolve_mx("example.test")) == 3
    assert server.errors == []


async def test_server_in_background_thread() -> None:
    srv = DnsTestServer(ZONE)
    host, port = srv.start_in_thread()
    try:
        assert host == "127.0.0.1"
        resolver = MxResolver([f"{host}:{port}"], timeout=0.5, lifetime=1.0)
        assert names(await resolver.resolve_mx("aonly.test")) == ["aonly.test"]
        srv.set_records("aonly.test", "A", ["127.0.0.50"])
        resolver.clear_cache()
        assert await resolver.resolve_addresses("aonly.test") == ("127.0.0.50",)
    finally:
        srv.stop()
    srv.stop()  # idempotent


def _ipv6_loopback_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback_available(), reason="no IPv6 loopback")
async def test_server_and_nameserver_on_ipv6_loopback() -> None:
    async with DnsTestServer(ZONE, host="::1") as srv:
        assert srv.nameserver.startswith("[::1]:")
        resolver = MxResolver([srv.nameserver], timeout=0.5, lifetime=1.0)
        assert names(await resolver.resolve_mx("aonly.test")) == ["aonly.test"]
