"""Scalar notations: durations, sizes, addresses, networks, domains."""

from __future__ import annotations

import ipaddress

import pytest

from outrider.config.units import (
    Rate,
    format_duration,
    normalize_domain,
    parse_duration,
    parse_host_port,
    parse_network,
    parse_rate,
    parse_size,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("2d", 172800.0),
        ("4d12h", 388800.0),
        ("1h30m", 5400.0),
        ("1d2h3m4s", 93784.0),
        ("250ms", 0.25),
        ("1s500ms", 1.5),
        ("1.5h", 5400.0),
        ("0s", 0.0),
        ("90", 90.0),
        (" 5m ", 300.0),
        (0, 0.0),
        (45, 45.0),
        (2.5, 2.5),
    ],
)
def test_parse_duration_valid(text: str | int | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "invalid duration"),
        ("m", "invalid duration"),
        ("5x", "invalid duration"),
        ("5M", "invalid duration"),
        ("5 m", "invalid duration"),
        ("1h 30m", "invalid duration"),
        ("30m1h", "largest first"),
        ("5m5m", "largest first"),
        ("1h-5m", "invalid duration"),
        ("-5m", "must not be negative"),
        (-1, "must not be negative"),
        (float("nan"), "finite"),
        (float("inf"), "finite"),
        ("1.h", "invalid duration"),
        ("h1", "invalid duration"),
        ("1w", "invalid duration"),
    ],
)
def test_parse_duration_invalid(text: str | int | float, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_duration(text)


def test_parse_duration_rejects_bool() -> None:
    with pytest.raises(ValueError, match="boolean"):
        parse_duration(True)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (30, "30s"), (300, "5m"), (5400, "1h30m"), (388800, "4d12h"), (0.25, "0.25s")],
)
def test_format_duration_round_trips(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("50M", 50 * 1024 * 1024),
        ("50m", 50 * 1024 * 1024),
        ("10k", 10240),
        ("10K", 10240),
        ("1G", 1024**3),
        ("1g", 1024**3),
        ("10MB", 10 * 1024 * 1024),
        ("100", 100),
        ("0", 0),
        (1234, 1234),
        (0, 0),
    ],
)
def test_parse_size_valid(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "invalid size"),
        ("M", "invalid size"),
        ("1.5M", "invalid size"),
        ("10T", "invalid size"),
        ("10 kk", "invalid size"),
        ("ten", "invalid size"),
        ("-5M", "must not be negative"),
        (-1, "must not be negative"),
    ],
)
def test_parse_size_invalid(text: str | int, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_size(text)


def test_parse_size_rejects_bool_and_float() -> None:
    with pytest.raises(ValueError, match="expected a size"):
        parse_size(True)
    with pytest.raises(ValueError, match="expected a size"):
        parse_size(1.5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "default", "expected"),
    [
        ("127.0.0.1:2525", None, ("127.0.0.1", 2525)),
        ("[::1]:25", None, ("::1", 25)),
        ("[0:0::1]:25", None, ("::1", 25)),
        ("[2001:DB8::1]", 25, ("2001:db8::1", 25)),
        ("2001:db8::1", 25, ("2001:db8::1", 25)),
        ("Relay.Example.NET", 25, ("relay.example.net", 25)),
        ("relay.example.net:587", 25, ("relay.example.net", 587)),
        ("localhost:2525", None, ("localhost", 2525)),
        ("127.0.0.2", 25, ("127.0.0.2", 25)),
    ],
)
def test_parse_host_port_valid(text: str, default: int | None, expected: tuple[str, int]) -> None:
    assert parse_host_port(text, default) == expected


@pytest.mark.parametrize(
    ("text", "kwargs", "fragment"),
    [
        ("", {}, "empty address"),
        ("127.0.0.1", {}, "missing port"),
        ("[::1]", {}, "missing port"),
        ("::1", {}, "missing port"),
        (":25", {}, "missing host"),
        ("127.0.0.1:", {}, "invalid port"),
        ("127.0.0.1:abc", {}, "invalid port"),
        ("127.0.0.1:65536", {}, "out of range 1-65535"),
        ("127.0.0.1:0", {}, "out of range 1-65535"),
        ("[::1:25", {}, "missing ']'"),
        ("[nope]:25", {}, "not an IPv6 address"),
        ("[::1]25", {}, "unexpected"),
        ("1:2:3:zz", {}, "write IPv6 addresses as"),
        ("300.1.1.1:25", {}, "not a valid IPv4 address"),
        ("bad_host:25", {}, "neither an IP address nor a host name"),
        ("-bad.example:25", {}, "neither an IP address nor a host name"),
        ("dns.example.net", {"ip_only": True, "default_port": 53}, "not an IP address"),
    ],
)
def test_parse_host_port_invalid(text: str, kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_host_port(text, **kwargs)  # type: ignore[arg-type]


def test_parse_host_port_zero_port_only_when_allowed() -> None:
    assert parse_host_port("127.0.0.1:0", allow_zero_port=True) == ("127.0.0.1", 0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.0/8", "127.0.0.0/8"),
        ("192.0.2.7", "192.0.2.7/32"),
        ("::1", "::1/128"),
        ("2001:db8::/32", "2001:db8::/32"),
        (" 10.0.0.0/8 ", "10.0.0.0/8"),
    ],
)
def test_parse_network_valid(text: str, expected: str) -> None:
    assert parse_network(text) == ipaddress.ip_network(expected)


def test_parse_network_host_bits_suggests_fix() -> None:
    with pytest.raises(ValueError, match=r"host bits set \(did you mean '10.0.0.0/8'\?\)"):
        parse_network("10.1.2.3/8")


@pytest.mark.parametrize("text", ["", "10.0.0.0/33", "example.net", "10.0.0/8x"])
def test_parse_network_invalid(text: str) -> None:
    with pytest.raises(ValueError, match="invalid network"):
        parse_network(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Example.NET", "example.net"),
        ("example.net.", "example.net"),
        ("localhost", "localhost"),
        ("a-b.c0", "a-b.c0"),
        ("bücher.example", "xn--bcher-kva.example"),
    ],
)
def test_normalize_domain_valid(text: str, expected: str) -> None:
    assert normalize_domain(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", ".", "a..b", "-a.example", "a-.example", "a_b.example", "a b.example", "x" * 64 + ".com"],
)
def test_normalize_domain_invalid(text: str) -> None:
    with pytest.raises(ValueError):
        normalize_domain(text)


def test_normalize_domain_too_long() -> None:
    with pytest.raises(ValueError, match="longer than 253"):
        normalize_domain(".".join(["a" * 60] * 5))


# --------------------------------------------------------------------------- rates


@pytest.mark.parametrize(
    ("text", "count", "per_seconds"),
    [
        ("600/h", 600, 3600.0),
        ("20/m", 20, 60.0),
        ("5/s", 5, 1.0),
        ("100/10m", 100, 600.0),
        ("1000/1d", 1000, 86400.0),
        (" 3 / 2h ", 3, 7200.0),
        ("1/0.5s", 1, 0.5),
        ("7/1h30m", 7, 5400.0),
        ("10/250ms", 10, 0.25),
    ],
)
def test_parse_rate(text: str, count: int, per_seconds: float) -> None:
    rate = parse_rate(text)
    assert rate == Rate(count, per_seconds)
    assert rate.per_second == count / per_seconds


@pytest.mark.parametrize("text", ["unlimited", "UNLIMITED", " unlimited "])
def test_parse_rate_unlimited(text: str) -> None:
    assert parse_rate(text) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("600", "invalid rate '600'; use e.g."),
        ("600/", "invalid rate '600/'; use e.g."),
        ("/h", "invalid rate '/h'; use e.g."),
        ("600/H", "invalid rate '600/H'; use e.g."),
        ("600/hour", "invalid rate '600/hour'; use e.g."),
        ("600/90", "invalid rate '600/90'; use e.g."),
        ("600/h/h", "invalid rate '600/h/h'; use e.g."),
        ("-1/h", "invalid rate '-1/h'; use e.g."),
        ("1.5/h", "invalid rate '1.5/h'; use e.g."),
        ("0/h", "rate '0/h' allows nothing; the count must be at least 1"),
        ("5/0m", "rate '5/0m' has an empty period"),
        ("", "invalid rate ''; use e.g."),
    ],
)
def test_parse_rate_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_rate(text)
    assert str(info.value).startswith(message)


def test_rate_str_round_trips() -> None:
    for text in ["600/h", "20/m", "5/s", "1000/d", "100/10m", "7/1h30m"]:
        rate = parse_rate(text)
        assert rate is not None
        assert parse_rate(str(rate)) == rate
    assert str(Rate(600, 3600.0)) == "600/h"
    assert str(Rate(100, 600.0)) == "100/10m"
