"""A small ordered TOML document for importers: tables of keys with trailing comments,
and comment blocks, rendered in the order they were made.

Importers build their output here rather than with a TOML library because the output is
read by people migrating: every key says where in the old configuration it came from.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

Value = str | int | bool | list[str] | dict[str, list[str]]

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def toml_key(name: str) -> str:
    """A key as written in TOML: bare when it can be, else a quoted string."""
    return name if _BARE.fullmatch(name) else json.dumps(name, ensure_ascii=False)


def toml_value(value: Value) -> str:
    """A value in TOML syntax (JSON strings are valid TOML basic strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    items = (f"{toml_key(k)} = {toml_value(v[0] if len(v) == 1 else v)}" for k, v in value.items())
    return "{ " + ", ".join(items) + " }"


@dataclass
class Setting:
    key: str
    value: Value
    note: str = ""


@dataclass
class TomlTable:
    """``[header]`` (``[[header]]`` when ``array``) with its settings; ``comments`` are
    written above it, ``commented_out`` writes the whole table as comments."""

    header: str
    array: bool = False
    settings: list[Setting] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    commented_out: bool = False

    def set(self, key: str, value: Value, note: str = "") -> None:
        """Set ``key`` (replacing an earlier setting of it)."""
        self.settings = [s for s in self.settings if s.key != key]
        self.settings.append(Setting(key, value, note))

    def get(self, key: str) -> Value | None:
        for setting in self.settings:
            if setting.key == key:
                return setting.value
        return None

    def render(self) -> list[str]:
        lines = [f"# {text}" if text else "#" for text in self.comments]
        head = f"[[{self.header}]]" if self.array else f"[{self.header}]"
        body = [head]
        for setting in self.settings:
            line = f"{toml_key(setting.key)} = {toml_value(setting.value)}"
            body.append(f"{line}  # {setting.note}" if setting.note else line)
        if self.commented_out:
            body = [f"# {line}" for line in body]
        return lines + body


@dataclass
class TomlDoc:
    """Tables in creation order, then a trailing comment block."""

    preamble: list[str] = field(default_factory=list)
    tables: list[TomlTable] = field(default_factory=list)
    trailer: list[str] = field(default_factory=list)

    def table(self, header: str) -> TomlTable:
        """The (non-array) table ``header``, made on first use."""
        for table in self.tables:
            if table.header == header and not table.array:
                return table
        made = TomlTable(header)
        self.tables.append(made)
        return made

    def find(self, header: str) -> TomlTable | None:
        for table in self.tables:
            if table.header == header and not table.array:
                return table
        return None

    def append_array(self, header: str) -> TomlTable:
        made = TomlTable(header, array=True)
        self.tables.append(made)
        return made

    def render(self) -> str:
        out = [f"# {line}" if line else "#" for line in self.preamble]
        for table in self.tables:
            if not table.settings and not table.array and not table.comments:
                continue
            out.append("")
            out.extend(table.render())
        if self.trailer:
            out.append("")
            out.extend(f"# {line}" if line else "#" for line in self.trailer)
        return "\n".join(out).lstrip("\n") + "\n"


def domain_header(name: str) -> str:
    """``domain."NAME"`` and the like: the quoted table name for a domain."""
    return json.dumps(name, ensure_ascii=False)


def duration(seconds: int) -> str:
    """Whole seconds as an Outrider duration: ``"4d12h"``, ``"1h6m40s"``, ``"0s"``."""
    if seconds <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
