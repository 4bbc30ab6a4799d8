"""Converters from raw TOML values to typed config values.

Each converter returns the typed value or raises :class:`Invalid` with messages
written for the operator; the loader adds the file, line and key path.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from outrider.config import units
from outrider.config.locator import KeyPath

__all__ = [
    "Converter",
    "Invalid",
    "address",
    "array_of",
    "banner",
    "boolean",
    "choice",
    "domain",
    "domain_set",
    "duration",
    "fail",
    "hostname",
    "integer",
    "integer_range",
    "network",
    "optional_duration",
    "path",
    "port",
    "rate",
    "readable_file",
    "size",
    "source_host",
    "string",
    "type_name",
    "wrong_type",
]


class Invalid(Exception):
    """A value failed conversion; ``problems`` are (sub-path, message) pairs."""

    def __init__(self, problems: list[tuple[KeyPath, str]]) -> None:
        super().__init__(problems[0][1])
        self.problems = problems


def fail(message: str) -> Invalid:
    return Invalid([((), message)])


def type_name(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "table"
    return "date/time"


def wrong_type(expected: str, value: object) -> Invalid:
    return fail(f"expected {expected}, got {type_name(value)}")


Converter = Callable[[object], Any]


def string(value: object) -> str:
    if not isinstance(value, str):
        raise wrong_type("a string", value)
    return value


def banner(value: object) -> str:
    text = string(value)
    if any(c in text for c in "\r\n\0"):
        raise fail("must be a single line")
    if not text.isascii():
        raise fail("must be ASCII (it is sent in the SMTP greeting)")
    return text


def boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise wrong_type("a boolean (true or false)", value)
    return value


def port(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise wrong_type("an integer", value)
    if not 1 <= value <= 65535:
        raise fail(f"must be a TCP port from 1 to 65535, got {value}")
    return value


def integer(minimum: int) -> Converter:
    def convert(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong_type("an integer", value)
        if value < minimum:
            if value < 0:
                raise fail(f"must not be negative, got {value}")
            raise fail(f"must be at least {minimum}, got {value}")
        return value

    return convert


def duration(*, positive: bool) -> Converter:
    def convert(value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise wrong_type(f"a duration ({units.DURATION_HINT})", value)
        try:
            seconds = units.parse_duration(value)
        except ValueError as exc:
            raise fail(str(exc)) from None
        if positive and seconds <= 0:
            raise fail(f"must be greater than zero, got {value!r}")
        return seconds

    return convert


def size(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise wrong_type(f"a size ({units.SIZE_HINT})", value)
    try:
        size = units.parse_size(value)
    except ValueError as exc:
        raise fail(str(exc)) from None
    if size <= 0:
        raise fail(f"must be greater than zero, got {value!r}")
    return size


def path(value: object) -> Path:
    text = string(value)
    if not text.strip() or "\0" in text:
        raise fail("must be a non-empty path")
    # CWD-relative by design (see docs/config.md); absolute so a later chdir is harmless.
    return Path.cwd() / text


def hostname(value: object) -> str:
    try:
        return units.normalize_domain(string(value))
    except ValueError as exc:
        raise fail(str(exc)) from None


domain = hostname


def address(
    default_port: int | None, *, ip_only: bool = False, allow_zero_port: bool = False
) -> Converter:
    def convert(value: object) -> tuple[str, int]:
        try:
            return units.parse_host_port(
                string(value), default_port, ip_only=ip_only, allow_zero_port=allow_zero_port
            )
        except ValueError as exc:
            raise fail(str(exc)) from None

    return convert


def network(value: object) -> units.IPNetwork:
    try:
        return units.parse_network(string(value))
    except ValueError as exc:
        raise fail(str(exc)) from None


def array_of(element: Converter, *, non_empty: bool = False) -> Converter:
    def convert(value: object) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise wrong_type("an array", value)
        if non_empty and not value:
            raise fail("must not be empty")
        out: list[Any] = []
        problems: list[tuple[KeyPath, str]] = []
        for index, item in enumerate(value):
            try:
                out.append(element(item))
            except Invalid as exc:
                problems.extend(((index, *at), message) for at, message in exc.problems)
        if problems:
            raise Invalid(problems)
        return tuple(out)

    return convert


def domain_set(value: object) -> frozenset[str]:
    return frozenset(array_of(domain)(value))


def integer_range(low: int, high: int) -> Converter:
    def convert(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong_type("an integer", value)
        if not low <= value <= high:
            raise fail(f"must be from {low} to {high}, got {value}")
        return value

    return convert


def optional_duration(never: str) -> Converter:
    """A duration, or the word ``never`` meaning ``None``."""
    plain = duration(positive=True)

    def convert(value: object) -> float | None:
        if value == never:
            return None
        return float(plain(value))

    return convert


def rate(value: object) -> units.Rate | None:
    if not isinstance(value, str):
        raise wrong_type(f"a rate ({units.RATE_HINT})", value)
    try:
        return units.parse_rate(value)
    except ValueError as exc:
        raise fail(str(exc)) from None


def choice(options: Sequence[str]) -> Converter:
    def convert(value: object) -> str:
        text = string(value)
        if text not in options:
            listed = ", ".join(repr(o) for o in options)
            raise fail(f"must be one of {listed}, got {text!r}")
        return text

    return convert


def readable_file(value: object) -> Path:
    """A path that must name a readable regular file now (certificates, keys, CA bundles)."""
    file = path(value)
    if not file.is_file():
        what = "is not a regular file" if file.exists() else "does not exist"
        raise fail(f"{file} {what}")
    if not os.access(file, os.R_OK):
        raise fail(f"{file} is not readable by this process")
    return file


_WHITESPACE = re.compile(r"\s+")


def source_host(value: object) -> tuple[str, str | None]:
    """``"IP [EHLO-NAME]"`` -> (canonical IP, normalized name or None)."""
    text = string(value).strip()
    parts = _WHITESPACE.split(text) if text else []
    if not 1 <= len(parts) <= 2:
        raise fail(f"expected 'IP-ADDRESS [EHLO-NAME]', got {text!r}")
    try:
        ip = str(ipaddress.ip_address(parts[0]))
    except ValueError:
        raise fail(f"{parts[0]!r} is not an IP address") from None
    if len(parts) == 1:
        return ip, None
    try:
        return ip, units.normalize_domain(parts[1])
    except ValueError as exc:
        raise fail(f"EHLO name: {exc}") from None
