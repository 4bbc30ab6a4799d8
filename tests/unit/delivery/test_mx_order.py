"""Pure logic of MX resolution: ordering, name normalization, nameserver specs, errors."""

from __future__ import annotations

import pickle
import random

import pytest

from outrider.delivery.dns import (
    DnsError,
    DnsErrorKind,
    MxResolver,
    normalize_domain,
    order_mx,
    parse_nameserver,
)


def test_order_mx_sorts_by_preference() -> None:
    records = [(30, "c.test"), (10, "a.test"), (20, "b.test"), (5, "z.test")]
    ordered = order_mx(records, random.Random(1))
    assert ordered == [(5, "z.test"), (10, "a.test"), (20, "b.test"), (30, "c.test")]


def test_order_mx_does_not_mutate_input() -> None:
    records = [(20, "b.test"), (10, "a.test")]
    order_mx(records, random.Random(0))
    assert records == [(20, "b.test"), (10, "a.test")]


def test_order_mx_shuffles_equal_preference_only() -> None:
    records = [(10, "a.test"), (10, "b.test"), (10, "c.test"), (5, "first.test"), (20, "last.test")]
    rng = random.Random(12345)
    seen = set()
    for _ in range(200):
        ordered = order_mx(records, rng)
        assert ordered[0] == (5, "first.test")
        assert ordered[-1] == (20, "last.test")
        assert sorted(ordered[1:4]) == [(10, "a.test"), (10, "b.test"), (10, "c.test")]
        seen.add(tuple(host for _, host in ordered[1:4]))
    assert len(seen) == 6  # every permutation of the three equals shows up


def test_order_mx_equal_pair_both_orders_appear_roughly_evenly() -> None:
    rng = random.Random(7)
    first = [order_mx([(10, "a.test"), (10, "b.test")], rng)[0][1] for _ in range(1000)]
    assert 400 < first.count("a.test") < 600


def test_order_mx_is_deterministic_for_a_seed() -> None:
    records = [(10, f"mx{i}.test") for i in range(8)]
    ordered = order_mx(records, random.Random(99))
    assert ordered == order_mx(records, random.Random(99))
    assert sorted(ordered) == sorted(records)  # a shuffle: nothing lost or added
    others = {tuple(order_mx(records, random.Random(seed))) for seed in range(20)}
    assert len(others) > 1  # the seed matters


def test_order_mx_empty_and_single() -> None:
    assert order_mx([], random.Random(0)) == []
    assert order_mx([(0, "only.test")], random.Random(0)) == [(0, "only.test")]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Example.COM", "example.com"),
        ("example.com.", "example.com"),
        ("  example.com  ", "example.com"),
        ("Bücher.example", "xn--bcher-kva.example"),
        ("BÜCHER.example.", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("例え。テスト", "xn--r8jz45g.xn--zckzah"),
        ("_dmarc.example.com", "_dmarc.example.com"),
    ],
)
def test_normalize_domain(raw: str, expected: str) -> None:
    assert normalize_domain(raw) == expected


@pytest.mark.parametrize("bad", ["", ".", "a..b", "x" * 64 + ".test", ".".join(["abcdefgh"] * 40)])
def test_normalize_domain_rejects_impossible_names(bad: str) -> None:
    with pytest.raises(DnsError) as info:
        normalize_domain(bad)
    assert info.value.kind is DnsErrorKind.NXDOMAIN


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("127.0.0.1", ("127.0.0.1", 53)),
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("::1", ("::1", 53)),
        ("[::1]", ("::1", 53)),
        ("[::1]:5300", ("::1", 5300)),
        ("[2001:db8::1]:53", ("2001:db8::1", 53)),
    ],
)
def test_parse_nameserver(spec: str, expected: tuple[str, int]) -> None:
    assert parse_nameserver(spec) == expected


@pytest.mark.parametrize(
    "spec",
    ["dns.example:53", "127.0.0.1:0", "127.0.0.1:99999", "127.0.0.1:x", "[::1", "[::1]x", ""],
)
def test_parse_nameserver_rejects(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_nameserver(spec)


def test_resolver_rejects_bad_configuration() -> None:
    with pytest.raises(ValueError):
        MxResolver([])
    with pytest.raises(ValueError):
        MxResolver(["resolver.example"])
    with pytest.raises(ValueError):
        MxResolver(["127.0.0.1"], ipv4=False, ipv6=False)
    with pytest.raises(ValueError):
        MxResolver([("resolver.example", 53)])
    with pytest.raises(ValueError):
        MxResolver([("127.0.0.1", 0)])
    MxResolver([("127.0.0.1", 5353), "[::1]:53"])  # tuples as the config loader stores them


def test_dns_error_text_and_classification() -> None:
    err = DnsError(DnsErrorKind.TEMPORARY, "example.test", "SERVFAIL from 127.0.0.1@53")
    assert str(err) == "example.test: temporary DNS failure (SERVFAIL from 127.0.0.1@53)"
    assert not err.is_permanent
    assert err.enhanced_status == "4.4.3"
    nullmx = DnsError(DnsErrorKind.NULL_MX, "example.test")
    assert str(nullmx) == "example.test: domain does not accept mail (null MX)"
    assert nullmx.is_permanent
    assert nullmx.enhanced_status == "5.1.10"
    assert DnsError(DnsErrorKind.NXDOMAIN, "x.test").enhanced_status == "5.1.2"
    clone = pickle.loads(pickle.dumps(err))
    assert (clone.kind, clone.domain, clone.detail) == (err.kind, err.domain, err.detail)
