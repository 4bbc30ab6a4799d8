"""Kinds of config values, and :func:`key`, which declares a config key on a model field.

A :class:`Kind` converts a raw TOML value, raising :class:`Invalid` with messages written
for the operator (the loader adds file, line and key path), and describes the value for
docs/config.md (the Type column) and for the JSON Schema, so the three cannot drift apart.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import Any, TypeVar, dataclass_transform

from outrider.config import units
from outrider.config.locator import KeyPath

T = TypeVar("T")
REQUIRED: Any = object()  # no default: the key must be given (unless required=False)
_TYPE_NAMES = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array"}


class Invalid(Exception):
    """A value failed conversion; ``problems`` are (sub-path, message) pairs."""

    def __init__(self, problems: list[tuple[KeyPath, str]]) -> None:
        super().__init__(problems[0][1])
        self.problems = problems


def _fail(message: str) -> Invalid:
    return Invalid([((), message)])


def type_name(value: object) -> str:
    return "table" if isinstance(value, dict) else _TYPE_NAMES.get(type(value), "date/time")


@dataclass(frozen=True, slots=True)
class Kind:
    convert: Callable[[object], Any]
    doc: str  # the Type column of docs/config.md
    schema: Mapping[str, Any]  # JSON Schema of the raw TOML value


def kind(
    doc: str,
    schema: Mapping[str, Any],
    parse: Callable[[Any], Any] = lambda v: v,
    types: tuple[type, ...] = (str,),
    expected: str = "a string",
    *,
    positive: bool = False,
) -> Kind:
    """A kind that type-checks, then parses (a ``ValueError``'s message is the problem)."""

    def convert(value: object) -> Any:
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise _fail(f"expected {expected}, got {type_name(value)}")
        try:
            out = parse(value)
        except ValueError as exc:
            raise _fail(str(exc)) from None
        if positive and out <= 0:
            raise _fail(f"must be greater than zero, got {value!r}")
        return out

    return Kind(convert, doc, schema)


def integer(low: int, high: int | None = None, what: str = "from") -> Kind:
    def check(value: int) -> int:
        if high is not None and not low <= value <= high:
            raise ValueError(f"must be {what} {low} to {high}, got {value}")
        if value < low:
            raise ValueError(
                f"must not be negative, got {value}"
                if value < 0
                else f"must be at least {low}, got {value}"
            )
        return value

    doc = f"integer ≥ {low}" if high is None else f"integer {low}–{high}"  # noqa: RUF001
    schema = {"type": "integer", "minimum": low} | ({} if high is None else {"maximum": high})
    return kind(doc, schema, check, (int,), "an integer")


def duration(*, positive: bool) -> Kind:
    expected = f"a duration ({units.DURATION_HINT})"
    doc = "duration > 0" if positive else "duration"
    schema = {"type": ["string", "number"], "minimum": 0, "pattern": _DURATION}
    return kind(doc, schema, units.parse_duration, (str, int, float), expected, positive=positive)


def never_or(inner: Kind, word: str = "never") -> Kind:
    """``inner``, or ``word`` meaning ``None``."""

    def convert(value: object) -> Any:
        return None if value == word else inner.convert(value)

    return Kind(convert, f'{inner.doc} or `"{word}"`', {"anyOf": [{"const": word}, inner.schema]})


def choice(options: Sequence[str]) -> Kind:
    def check(text: str) -> str:
        if text not in options:
            raise ValueError(f"must be one of {', '.join(map(repr, options))}, got {text!r}")
        return text

    quoted = [f'`"{o}"`' for o in options]
    return kind(f"{', '.join(quoted[:-1])} or {quoted[-1]}", {"enum": list(options)}, check)


def address(default_port: int | None, doc: str, **options: bool) -> Kind:
    return kind(doc, _STR, lambda v: units.parse_host_port(v, default_port, **options))


def array(
    element: Kind,
    plural: str,
    *,
    non_empty: bool = False,
    make: Callable[[tuple[Any, ...]], Any] = tuple,
) -> Kind:
    """An array of ``element``; each bad element is reported at its own index."""

    def convert(value: object) -> Any:
        if not isinstance(value, list):
            raise _fail(f"expected an array, got {type_name(value)}")
        if non_empty and not value:
            raise _fail("must not be empty")
        out: list[Any] = []
        problems: list[tuple[KeyPath, str]] = []
        for index, item in enumerate(value):
            try:
                out.append(element.convert(item))
            except Invalid as exc:
                problems.extend(((index, *at), message) for at, message in exc.problems)
        if problems:
            raise Invalid(problems)
        return make(tuple(out))

    doc = f"{'non-empty ' if non_empty else ''}array of {plural}"
    schema = {"type": "array", "items": element.schema} | ({"minItems": 1} if non_empty else {})
    return Kind(convert, doc, schema)


def _path(text: str) -> Path:
    if not text.strip() or "\0" in text:
        raise ValueError("must be a non-empty path")
    if any(c < " " or c == "\x7f" for c in text):  # would also break FILE:LINE reports
        raise ValueError(f"must not contain control characters, got {text!r}")
    return Path(text)  # the loader makes it absolute (relative to the working directory)


def _readable_file(text: str) -> Path:
    file = Path.cwd() / _path(text)
    if not file.is_file():
        raise ValueError(f"{file} {'is not a regular file' if file.exists() else 'does not exist'}")
    if not os.access(file, os.R_OK):
        raise ValueError(f"{file} is not readable by this process")
    return file


def _banner(text: str) -> str:
    if any(c in text for c in "\r\n\0"):
        raise ValueError("must be a single line")
    if not text.isascii():
        raise ValueError("must be ASCII (it is sent in the SMTP greeting)")
    return text


def _source_host(text: str) -> tuple[str, str | None]:
    """``"IP [EHLO-NAME]"`` -> (canonical IP, normalized name or None)."""
    parts = text.split()
    if not 1 <= len(parts) <= 2:
        raise ValueError(f"expected 'IP-ADDRESS [EHLO-NAME]', got {text.strip()!r}")
    try:
        ip = str(ipaddress.ip_address(parts[0]))
    except ValueError:
        raise ValueError(f"{parts[0]!r} is not an IP address") from None
    try:
        return ip, units.normalize_domain(parts[1]) if len(parts) == 2 else None
    except ValueError as exc:
        raise ValueError(f"EHLO name: {exc}") from None


def _mailbox(text: str) -> str:
    """``local@domain`` with the domain normalized; the local part is kept as written."""
    local, at, domain = text.strip().rpartition("@")
    plain = local.isascii() and local.isprintable() and not any(c in local for c in ' <>"@\\')
    if not (at and local and plain):
        raise ValueError(f"expected an address like 'postmaster@example.com', got {text!r}")
    return f"{local}@{units.normalize_domain(domain)}"


def _regex(text: str) -> re.Pattern[str]:
    if not text:
        raise ValueError("must not be empty (it would match every reply)")
    try:
        return re.compile(text, re.IGNORECASE)
    except re.error as exc:
        where = f" at position {exc.pos}" if exc.pos is not None else ""
        raise ValueError(f"invalid regular expression {text!r}: {exc.msg}{where}") from None
    except (OverflowError, RecursionError) as exc:  # a{4294967296}; parentheses nested deep
        raise ValueError(f"invalid regular expression {text!r}: {exc}") from None


_STR = {"type": "string"}
_NON_EMPTY = {"type": "string", "minLength": 1}
_NUM = r"\d+(\.\d+)?"
_DURATION = rf"^\s*({_NUM}|(?=\d)({_NUM}d)?({_NUM}h)?({_NUM}m)?({_NUM}s)?({_NUM}ms)?)\s*$"
_UNLIMITED = "".join(f"[{c}{c.upper()}]" for c in "unlimited")  # JSON Schema has no (?i)

BOOLEAN = kind("boolean", {"type": "boolean"}, types=(bool,), expected="a boolean (true or false)")
STRING = kind("string", _STR, _banner)  # one ASCII line
NAME = kind("name", _STR)  # of a virtual MTA, pool or pattern list
DOMAIN = kind("domain", _STR, units.normalize_domain)
MAILBOX = kind("address", _STR, _mailbox)  # local@domain, no angle brackets
PATH = kind("path", _NON_EMPTY, _path)
FILE = kind("path to a readable file", _NON_EMPTY, _readable_file)
PORT = integer(1, 65535, "a TCP port from")
NETWORK = kind("network", _STR, units.parse_network)
SIZE = kind(
    "size > 0",
    {"type": ["string", "integer"], "minimum": 1, "pattern": r"^\s*\d+\s*[kKmMgG]?[bB]?\s*$"},
    units.parse_size,
    (str, int),
    f"a size ({units.SIZE_HINT})",
    positive=True,
)
RATE = kind(
    "rate",
    {"type": "string", "pattern": rf"^\s*({_UNLIMITED}|\d+\s*/\s*\S+)\s*$"},
    units.parse_rate,
    expected=f"a rate ({units.RATE_HINT})",
)
SOURCE_HOST = kind('`"IP [EHLO-NAME]"`', _STR, _source_host)
REGEX = kind("regular expression", _NON_EMPTY, _regex)


@dataclass(frozen=True, slots=True)
class Key:
    """What a model field declares about its TOML key (the docstring under it documents it)."""

    kind: Kind
    default: Any  # as written in TOML; None: no value; REQUIRED: none declared
    required: bool
    toml: str | None  # the key, if not the field name with "-" for "_"
    shown: str | None  # the Default column of docs/config.md, if not the TOML default


def key(
    kind: Kind,
    *,
    default: Any = REQUIRED,
    factory: Callable[[], Any] | None = None,
    required: bool | None = None,
    toml: str | None = None,
    shown: str | None = None,
) -> Any:
    """Declare a config key; ``default`` is written as in TOML and converted by ``kind``."""
    needed = default is REQUIRED and factory is None if required is None else required
    meta = {"key": Key(kind, default, needed, toml, shown)}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    if default is REQUIRED:
        return field(metadata=meta)
    return field(default=None if default is None else kind.convert(default), metadata=meta)


@dataclass_transform(frozen_default=True, field_specifiers=(key, field))
def table(cls: type[T]) -> type[T]:
    """A frozen dataclass whose :func:`key` fields are the keys of one config table."""
    return dataclass(frozen=True, slots=True)(cls)


@cache
def keys_of(cls: type) -> Mapping[str, tuple[str, Key]]:
    """TOML key -> (field name, declaration), in declaration order."""
    out: dict[str, tuple[str, Key]] = {}
    for f in fields(cls):
        if (declared := f.metadata.get("key")) is not None:
            out[declared.toml or f.name.replace("_", "-")] = (f.name, declared)
    return out
