"""Parsers for the scalar notations used in the config file.

Each parser takes the raw TOML value and returns the typed value, or raises
``ValueError`` whose message is written for the operator (the loader prefixes it
with the file, line and key). They are also usable on their own, e.g. by the CLI.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from outrider.message import domains

__all__ = [
    "RATE_HINT",
    "IPNetwork",
    "Rate",
    "format_duration",
    "normalize_domain",
    "parse_duration",
    "parse_host_port",
    "parse_network",
    "parse_rate",
    "parse_size",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_UNIT_SECONDS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_UNIT_ORDER = ("d", "h", "m", "s", "ms")
# One "<number><unit>" component; "ms" must be tried before "m".
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|d|h|m|s)")
_PLAIN_NUMBER = re.compile(r"\d+(?:\.\d+)?")

_SIZE = re.compile(r"(\d+)\s*([kKmMgG])?[bB]?")
_SIZE_FACTOR = {"k": 1024, "m": 1024**2, "g": 1024**3}

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")

RATE_HINT = "use e.g. '600/h', '20/m', '5/s', '100/10m', '1000/1d' or 'unlimited'"
# "<count>/<period>": the period is a unit ("h") or a duration with units ("10m", "1h30m").
_RATE = re.compile(r"(\d+)\s*/\s*(\S+)")

DURATION_HINT = "use e.g. '30s', '5m', '1h30m', '4d12h' or integer seconds"
SIZE_HINT = "use e.g. '10k', '50M', '1G' or integer bytes"


def parse_duration(value: str | int | float) -> float:
    """Return seconds for ``"4d12h"``, ``"1h30m"``, ``"250ms"``, ``"90"`` or a number.

    Components must appear at most once, largest unit first, so a typo such as
    ``"5m5m"`` is rejected rather than silently summed.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration, got a boolean; {DURATION_HINT}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"duration must not be negative, got {value}")
        if value != value or value == float("inf"):
            raise ValueError(f"duration must be finite, got {value}")
        return float(value)
    text = value.strip()
    if text.startswith("-"):
        raise ValueError(f"duration must not be negative, got {value!r}")
    if _PLAIN_NUMBER.fullmatch(text):
        return float(text)
    total = 0.0
    pos = 0
    last_rank = -1
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        rank = _UNIT_ORDER.index(match.group(2))
        if rank <= last_rank:
            raise ValueError(
                f"invalid duration {value!r}: each unit may appear once, largest first; "
                + DURATION_HINT
            )
        last_rank = rank
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos == 0 or pos != len(text):
        raise ValueError(f"invalid duration {value!r}; {DURATION_HINT}")
    return total


def format_duration(seconds: float) -> str:
    """Inverse of :func:`parse_duration` for whole seconds, for logs and docs."""
    if seconds != int(seconds):
        return f"{seconds:g}s"
    rest = int(seconds)
    if rest == 0:
        return "0s"
    parts = []
    for unit in ("d", "h", "m", "s"):
        size = int(_UNIT_SECONDS[unit])
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def parse_size(value: str | int) -> int:
    """Return bytes for ``"50M"``, ``"10k"``, ``"1G"`` (binary multiples) or an integer."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"expected a size; {SIZE_HINT}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"size must not be negative, got {value}")
        return value
    text = value.strip()
    if text.startswith("-"):
        raise ValueError(f"size must not be negative, got {value!r}")
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ValueError(f"invalid size {value!r}; {SIZE_HINT}")
    unit = match.group(2)
    return int(match.group(1)) * (_SIZE_FACTOR[unit.lower()] if unit else 1)


def normalize_domain(value: str) -> str:
    """The domain's normal form (:mod:`outrider.message.domains`: the lower-case UTS 46
    A-label, sans trailing dot), as every look-up computes it; a config name must also
    be a host name (letters, digits, inner hyphens), which DNS alone does not ask."""
    text = value.strip()
    if not text:
        raise ValueError("empty domain name")
    try:
        name = domains.normalize_domain(text)
    except domains.InvalidDomainError as exc:
        _host_labels(value, text.lower().removesuffix("."))  # the plainer reason first
        raise ValueError(f"invalid domain name {value!r}: {exc.reason}") from None
    if domains.is_address_literal(name):
        raise ValueError(f"invalid domain name {value!r}: an address literal is no domain")
    _host_labels(value, name)
    return name


def _host_labels(value: str, name: str) -> None:
    """Refuse an ASCII label that is not a host name label (RFC 1123 2.1)."""
    for label in name.split("."):
        if label.isascii() and not _LABEL.fullmatch(label):
            raise ValueError(
                f"invalid domain name {value!r}: label {label!r} must be 1-63 letters, "
                "digits or hyphens, not starting or ending with a hyphen"
            )


def _port(text: str, value: str, *, allow_zero: bool) -> int:
    if not text.isdigit() or not text.isascii():
        raise ValueError(f"invalid port {text!r} in {value!r}")
    port = int(text)
    low = 0 if allow_zero else 1
    if not low <= port <= 65535:
        raise ValueError(f"port {port} in {value!r} is out of range {low}-65535")
    return port


def _host(text: str, value: str, *, ip_only: bool) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    if ip_only:
        raise ValueError(f"{text!r} in {value!r} is not an IP address")
    if text.replace(".", "").isdigit():  # "1.2.3.999": a broken IP, not a host name
        raise ValueError(f"{text!r} in {value!r} is not a valid IPv4 address")
    try:
        return normalize_domain(text)
    except ValueError:
        raise ValueError(
            f"{text!r} in {value!r} is neither an IP address nor a host name"
        ) from None


def parse_host_port(
    value: str,
    default_port: int | None = None,
    *,
    ip_only: bool = False,
    allow_zero_port: bool = False,
) -> tuple[str, int]:
    """Parse ``"host:port"``, ``"[v6]:port"``, ``"host"`` or a bare IPv6 literal.

    Without ``default_port`` the port is mandatory. IP hosts come back in
    canonical form (IPv6 without brackets) so equal addresses compare equal.
    """
    text = value.strip()
    if not text:
        raise ValueError("empty address")
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise ValueError(f"missing ']' in {value!r}")
        inner, rest = text[1:close], text[close + 1 :]
        try:
            host = str(ipaddress.IPv6Address(inner))
        except ValueError:
            raise ValueError(f"{inner!r} in {value!r} is not an IPv6 address") from None
        if not rest:
            port_text = None
        elif rest.startswith(":"):
            port_text = rest[1:]
        else:
            raise ValueError(f"unexpected {rest!r} after ']' in {value!r}")
    elif text.count(":") > 1:
        try:
            host = str(ipaddress.IPv6Address(text))
        except ValueError:
            raise ValueError(
                f"invalid address {value!r}; write IPv6 addresses as '[addr]:port'"
            ) from None
        port_text = None
    else:
        host_text, sep, port_text_or_empty = text.partition(":")
        if not host_text:
            raise ValueError(f"missing host in {value!r}")
        host = _host(host_text, value, ip_only=ip_only)
        port_text = port_text_or_empty if sep else None
    if port_text is None:
        if default_port is None:
            raise ValueError(f"missing port in {value!r}; use 'host:port'")
        return host, default_port
    return host, _port(port_text, value, allow_zero=allow_zero_port)


def parse_network(value: str) -> IPNetwork:
    """Parse a CIDR (``"10.0.0.0/8"``) or a single address (``"192.0.2.7"`` means /32)."""
    text = value.strip()
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError(f"invalid network {value!r}: {exc}") from None
        raise ValueError(f"network {value!r} has host bits set (did you mean '{loose}'?)") from None


@dataclass(frozen=True, slots=True)
class Rate:
    """At most ``count`` events per ``per_seconds`` seconds (a token-bucket refill rate)."""

    count: int
    per_seconds: float

    @property
    def per_second(self) -> float:
        return self.count / self.per_seconds

    def __str__(self) -> str:
        for unit in ("d", "h", "m", "s"):
            size = _UNIT_SECONDS[unit]
            if self.per_seconds == size:
                return f"{self.count}/{unit}"
        return f"{self.count}/{format_duration(self.per_seconds)}"


def parse_rate(value: str) -> Rate | None:
    """Return a :class:`Rate` for ``"600/h"``, ``"100/10m"`` …, or ``None`` for ``"unlimited"``."""
    text = value.strip()
    if text.lower() == "unlimited":
        return None
    match = _RATE.fullmatch(text)
    period = match.group(2) if match is not None else ""
    if match is None or _PLAIN_NUMBER.fullmatch(period) or period.startswith("-"):
        raise ValueError(f"invalid rate {value!r}; {RATE_HINT}")
    count = int(match.group(1))
    if count < 1:
        raise ValueError(f"rate {value!r} allows nothing; the count must be at least 1")
    if period in ("d", "h", "m", "s"):
        per_seconds = _UNIT_SECONDS[period]
    else:
        try:
            per_seconds = parse_duration(period)
        except ValueError:
            raise ValueError(f"invalid rate {value!r}; {RATE_HINT}") from None
    if per_seconds <= 0:
        raise ValueError(f"rate {value!r} has an empty period; {RATE_HINT}")
    return Rate(count, per_seconds)
