"""Kinds of the local-domain and list keys: transports, Maildir paths, aliases, senders."""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from outrider.config import units
from outrider.config.kinds import Invalid, Kind, kind, type_name
from outrider.config.locator import KeyPath
from outrider.local.aliases_file import check_name, check_target

DELIMITERS = "+-_="


@dataclass(frozen=True, slots=True)
class LocalTransport:
    """``maildir``, ``lmtp:HOST:PORT`` or ``lmtp:unix:/path``, parsed."""

    kind: str  # "maildir" or "lmtp"
    host: str = ""
    port: int = 0
    path: str = ""  # a Unix socket for LMTP

    def __str__(self) -> str:
        if self.kind == "maildir":
            return "maildir"
        return f"lmtp:unix:{self.path}" if self.path else f"lmtp:{self.host}:{self.port}"


def _transport(text: str) -> LocalTransport:
    value = text.strip()
    if value == "maildir":
        return LocalTransport("maildir")
    scheme, colon, rest = value.partition(":")
    if scheme != "lmtp" or not colon:
        raise ValueError(f"expected 'maildir', 'lmtp:HOST:PORT' or 'lmtp:unix:/path', got {text!r}")
    if rest.startswith("unix:"):
        path = rest[5:]
        if not path.startswith("/") or "\0" in path:
            raise ValueError(f"the LMTP socket must be an absolute path, got {path!r}")
        return LocalTransport("lmtp", path=path)
    host, port = units.parse_host_port(rest)
    return LocalTransport("lmtp", host=host, port=port)


def _maildir_template(text: str) -> str:
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as exc:
        raise ValueError(f"bad placeholder in {text!r}: {exc}") from None
    unknown = fields - {"domain", "user"}
    if unknown:
        raise ValueError(f"unknown placeholder {{{sorted(unknown)[0]}}} (use {{domain}}, {{user}})")
    if "user" not in fields:
        raise ValueError("must contain {user}: every mailbox needs its own Maildir")
    if any(part == ".." for part in Path(text).parts) or "\0" in text:
        raise ValueError("must not contain '..'")
    return text  # the loader makes it absolute, as it does paths


def _local_part(text: str) -> str:
    """A mailbox name: a local part that is also safe as one path component."""
    problem = check_name(text)
    if problem:
        raise ValueError(problem)
    if "/" in text or text.startswith("."):
        raise ValueError(
            f"{text!r} is not a local part usable as a mailbox (no '/', no leading '.')"
        )
    return text.lower()


def _target(text: str) -> str:
    problem = check_target(text.strip())
    if problem:
        raise ValueError(problem)
    local, at, domain = text.strip().rpartition("@")
    return f"{local}@{units.normalize_domain(domain)}" if at else text.strip().lower()


def _delimiter(text: str) -> str:
    if text and (len(text) != 1 or text not in DELIMITERS):
        choices = ", ".join(repr(c) for c in DELIMITERS)
        raise ValueError(f"must be one of {choices} or '', got {text!r}")
    return text


def _targets(value: object) -> tuple[str, ...]:
    """One target or an array of them."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise Invalid([((), "must not be empty")])
    out: list[str] = []
    problems: list[tuple[KeyPath, str]] = []
    for index, item in enumerate(items):
        at: KeyPath = (index,) if isinstance(value, list) else ()
        if not isinstance(item, str):
            problems.append((at, f"expected an address or local part, got {type_name(item)}"))
            continue
        try:
            out.append(_target(item))
        except ValueError as exc:
            problems.append((at, str(exc)))
    if problems:
        raise Invalid(problems)
    return tuple(dict.fromkeys(out))


def _aliases(value: object) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, dict):
        raise Invalid([((), f"expected a table of name = target(s), got {type_name(value)}")])
    out: dict[str, tuple[str, ...]] = {}
    problems: list[tuple[KeyPath, str]] = []
    for name, targets in value.items():
        problem = check_name(name)
        if problem:
            problems.append(((name,), problem))
            continue
        if name.lower() in out:
            problems.append(((name,), f"{name!r} is defined twice (names ignore case)"))
            continue
        try:
            out[name.lower()] = _targets(targets)
        except Invalid as exc:
            problems.extend(((name, *at), message) for at, message in exc.problems)
    if problems:
        raise Invalid(problems)
    return out


def _allowed_senders(value: object) -> str | tuple[str, ...]:
    if isinstance(value, str):
        if value not in ("members", "anyone"):
            raise Invalid([((), f"expected 'members', 'anyone' or an array, got {value!r}")])
        return value
    if not isinstance(value, list):
        raise Invalid([((), f"expected 'members', 'anyone' or an array, got {type_name(value)}")])
    out: list[str] = []
    problems: list[tuple[KeyPath, str]] = []
    for index, item in enumerate(value):
        try:
            if not isinstance(item, str):
                raise ValueError(f"expected an address or a domain, got {type_name(item)}")
            local, at, domain = item.strip().rpartition("@")
            normal = units.normalize_domain(domain)
            out.append(f"{local}@{normal}" if at else normal)
        except ValueError as exc:
            problems.append(((index,), str(exc)))
    if problems:
        raise Invalid(problems)
    return tuple(out)


_STRING: dict[str, Any] = {"type": "string"}
_TARGETS_SCHEMA = {"anyOf": [_STRING, {"type": "array", "items": _STRING}]}
_TRANSPORTS = '`"maildir"`, `"lmtp:HOST:PORT"` or `"lmtp:unix:/path"`'
LOCAL_TRANSPORT = kind(_TRANSPORTS, _STRING, _transport)
MAILDIR_TEMPLATE = kind("path with `{domain}` and `{user}`", _STRING, _maildir_template)
LOCAL_PART = kind("local part", _STRING, _local_part)
DELIMITER = kind('one of `+` `-` `_` `=`, or `""`', _STRING, _delimiter)
TARGETS = Kind(_targets, "target or array of targets", _TARGETS_SCHEMA)
ALIASES = Kind(
    _aliases,
    "table of name = target(s)",
    {"type": "object", "additionalProperties": _TARGETS_SCHEMA},
)
ALLOWED_SENDERS = Kind(
    _allowed_senders,
    '`"members"`, `"anyone"` or array of addresses and domains',
    {"anyOf": [{"enum": ["members", "anyone"]}, {"type": "array", "items": _STRING}]},
)
