"""Reading declared tables: conversion by kind, unknown keys with suggestions, references.

Problems are collected as key paths instead of raised, so one pass reports every mistake,
and are only located (see :mod:`outrider.config.locator`) when there is one to report.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterator, Mapping
from typing import Any

from outrider.config.kinds import Invalid, keys_of, type_name
from outrider.config.locator import KeyLocator, KeyPath, format_key_path
from outrider.config.model import ConfigError, Problem

Entry = tuple[str, KeyPath, dict[str, Any]]  # (name, key path, table) of a [TABLE."NAME"]
# Names of macros, virtual MTAs, pools and pattern lists: they appear in headers and logs.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_NAME_HINT = "use letters, digits, '-', '_' and '.', starting with a letter or digit"
_DOMAIN_TABLE_HINT = '; policy keys go in [domain."*"] or [domain."NAME"], not [domain]'


class Reader:
    """One validation pass over a parsed file: collects problems instead of stopping."""

    def __init__(self, text: str, filename: str) -> None:
        self.text, self.filename = text, filename
        self.found: list[tuple[KeyPath, str]] = []

    def problem(self, path: KeyPath, message: str) -> None:
        self.found.append((path, message))

    def invalid(self, path: KeyPath, exc: Invalid) -> None:
        for at, message in exc.problems:
            self.problem((*path, *at), message)

    def raise_problems(self) -> None:
        """Raise :class:`ConfigError` with every problem found, in file order, if any."""
        if self.found:
            locator = KeyLocator(self.text)
            problems = [
                Problem(self.filename, locator.line_of(path), format_key_path(path), message)
                for path, message in self.found
            ]  # sorted stably: within a line, in the order of the checks
            raise ConfigError(sorted(problems, key=lambda p: p.line))

    def table(self, path: KeyPath, value: object, hint: str = "") -> dict[str, Any] | None:
        if isinstance(value, dict):
            return value
        self.problem(path, f"expected a table, got {type_name(value)}{hint}")
        return None

    def entries(
        self, path: KeyPath, value: object, hinted: Collection[str] = ()
    ) -> Iterator[Entry]:
        """The sub-tables of a ``[path."NAME"]`` table (``hinted``: names of domain keys)."""
        table = None if value is None else self.table(path, value)
        for name, entry in (table or {}).items():
            hint = _DOMAIN_TABLE_HINT if name in hinted else ""
            if (entry_table := self.table((*path, name), entry, hint)) is not None:
                yield name, (*path, name), entry_table

    def valid_name(self, path: KeyPath, name: str) -> bool:
        if _NAME.fullmatch(name):
            return True
        self.problem(path, f"invalid name {name!r}; {_NAME_HINT}")
        return False

    def named(self, data: Mapping[str, Any], kind: str) -> list[Entry]:
        """``[kind."NAME"]`` tables with a valid NAME, in file order."""
        entries = self.entries((kind,), data.get(kind))
        return [entry for entry in entries if self.valid_name(entry[1], entry[0])]

    def section(self, data: Mapping[str, Any], name: str, cls: type) -> dict[str, Any]:
        table = self.table((name,), data[name]) if name in data else None
        return {} if table is None else self.fields((name,), table, cls)

    def fields(
        self, path: KeyPath, table: Mapping[str, Any], cls: type, extra: Collection[str] = ()
    ) -> dict[str, Any]:
        """Convert the keys ``cls`` declares; only the keys set are returned, by field name.

        ``extra`` keys are the caller's business: skipped, but suggested for typos.
        """
        declared = keys_of(cls)
        out: dict[str, Any] = {}
        for key, value in table.items():
            if key in extra:
                continue
            if key not in declared:
                self.unknown(path, key, (*declared, *extra), value)
                continue
            name, spec = declared[key]
            try:
                out[name] = spec.kind.convert(value)
            except Invalid as exc:
                self.invalid((*path, key), exc)
        for key, (_, spec) in declared.items():
            if spec.required and key not in table:
                self.problem(path, f"missing required key {key!r}")
        return out

    def unknown(self, path: KeyPath, key: str, known: Collection[str], value: object) -> None:
        message = f"unknown key {key!r}"
        close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
        # Where domain tables are, [domain.example.net] parses as tables "example" > "net".
        root = 0 if path[:1] == ("domain",) else None
        if path[:1] == ("virtual-mta",) and path[2:3] == ("domain",):
            root = 2
        if close:
            message += f" (did you mean {close[0]!r}?)"
        elif root is not None and isinstance(value, dict):
            name = ".".join(str(p) for p in (*path[root + 1 :], key))
            header = format_key_path((*path[: root + 1], name))
            message += f"; quote domain names that contain dots: [{header}]"
        self.problem((*path, key), message)

    def reference(
        self, path: KeyPath, name: str, known: Collection[str], what: str, hint: str = ""
    ) -> None:
        """Check that ``name`` is one of ``known``; report with a suggestion otherwise."""
        if name not in known:
            close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
            more = f" (did you mean {close[0]!r}?)" if close else f"; {hint}" if hint else ""
            self.problem(path, f"no {what} named {name!r}{more}")

    def once(self, path: KeyPath, name: str, same: object, origin: dict[Any, str]) -> bool:
        """False (and a problem) if a table before ``name`` was for the ``same`` domain."""
        if same in origin:
            first = format_key_path((*path, origin[same]))
            self.problem((*path, name), f"same domain as {first}; merge the two tables")
            return False
        origin[same] = name
        return True
