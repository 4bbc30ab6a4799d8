"""The aliases file: ``name: target, target`` lines, as in Postfix's and Sendmail's aliases(5).

One file per local domain: a name is a local part of that domain, a target is a local
part of the same domain or a full address. Lines starting with ``#`` are comments, a
line starting with whitespace continues the one before. Sendmail's ``|command``,
``/file`` and ``:include:`` targets are refused: an address never becomes a command or
a path here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

MAX_NAME = 64  # RFC 5321 4.5.3.1.1: a local part is at most 64 octets
MAX_TARGETS = 10_000

_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")
_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+(@[A-Za-z0-9.-]+)?")


@dataclass(frozen=True, slots=True)
class AliasError(Exception):
    """A mistake in an aliases file, located for the operator."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


def check_target(target: str) -> str | None:
    """Why ``target`` cannot be an alias target, or None when it can."""
    if not target:
        return "empty target"
    if target[0] in "|/" or target.lower().startswith(":include:"):
        return f"{target!r}: commands, files and :include: are not supported"
    if not _ADDRESS.fullmatch(target) or ".." in target or target.startswith("."):
        return f"{target!r} is not a local part or an address"
    if len(target.partition("@")[0]) > MAX_NAME:
        return f"{target!r}: the local part is longer than {MAX_NAME} characters"
    return None


def check_name(name: str) -> str | None:
    if not _NAME.fullmatch(name) or len(name) > MAX_NAME or ".." in name:
        return f"{name!r} is not a local part (letters, digits and !#$%&'*+/=?^_`{{|}}~.-)"
    return None


def parse_aliases(text: str, file: str = "<aliases>") -> dict[str, tuple[str, ...]]:
    """Name (lower case) -> targets, in file order; every problem raises :class:`AliasError`."""
    entries: dict[str, tuple[str, ...]] = {}
    for number, logical in _logical_lines(text):
        name, colon, rest = logical.partition(":")
        name = name.strip()
        if not colon:
            raise AliasError(file, number, f"expected 'name: target, ...', got {logical.strip()!r}")
        problem = check_name(name)
        if problem:
            raise AliasError(file, number, problem)
        key = name.lower()
        if key in entries:
            raise AliasError(file, number, f"{name!r} is defined twice")
        targets = [t.strip() for t in rest.split(",")]
        targets = [t for t in targets if t]
        if not targets:
            raise AliasError(file, number, f"{name!r} has no target")
        if len(targets) > MAX_TARGETS:
            raise AliasError(file, number, f"{name!r} has more than {MAX_TARGETS} targets")
        for target in targets:
            problem = check_target(target)
            if problem:
                raise AliasError(file, number, problem)
        entries[key] = tuple(dict.fromkeys(targets))
    return entries


def read_aliases(path: Path) -> dict[str, tuple[str, ...]]:
    return parse_aliases(_read_text(path), str(path))


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, text) per entry: continuation lines joined, comments dropped."""
    lines: list[tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if raw[0] in " \t" and lines:
            first, previous = lines[-1]
            lines[-1] = (first, f"{previous} {stripped}")
        else:
            lines.append((number, stripped))
    return lines


def parse_lines(text: str, file: str, *, addresses: bool) -> tuple[str, ...]:
    """A mailboxes file (local parts) or a members file (addresses), one per line."""
    out: dict[str, None] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        item = raw.strip()
        if not item or item.startswith("#"):
            continue
        if addresses:
            problem = check_target(item)
            if problem is None and "@" not in item:
                problem = f"{item!r} is not an address (local@domain)"
        else:
            problem = check_name(item)
            if problem is None and ("/" in item or item.startswith(".")):
                problem = f"{item!r} cannot be a mailbox name (no '/', no leading '.')"
        if problem:
            raise AliasError(file, number, problem)
        out[item if addresses else item.lower()] = None
    return tuple(out)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise AliasError(str(path), 0, f"not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise AliasError(str(path), 0, f"cannot read: {exc.strerror}") from None


def read_mailboxes(path: Path) -> tuple[str, ...]:
    return parse_lines(_read_text(path), str(path), addresses=False)


def read_members(path: Path) -> tuple[str, ...]:
    return parse_lines(_read_text(path), str(path), addresses=True)
