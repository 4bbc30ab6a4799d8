"""Writing TOML text by hand for the importers: the output is read by people migrating,
so values carry comments saying where in the old configuration they came from (and
stand in for what could not be translated), which a TOML library would drop.

Two shapes share the scalar forms below: :class:`Section` (a header and its lines, as the
PowerMTA importer writes them in order) and :class:`TomlDoc` (tables of keys that may be
set again and replace earlier settings, as the Postfix importer needs).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

Value = str | int | bool | list[str] | dict[str, list[str]]

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def string(value: str) -> str:
    """A TOML basic string (JSON's escapes are valid TOML)."""
    return json.dumps(value, ensure_ascii=False)


def literal(value: str) -> str:
    """A TOML literal string when it can be one (regular expressions read better without
    doubled backslashes), else a basic string."""
    if "'" in value or any(ord(c) < 32 or c == "\x7f" for c in value):
        return string(value)
    return f"'{value}'"


def key(name: str) -> str:
    """A key, quoted unless it is a bare TOML key."""
    return name if _BARE.fullmatch(name) else string(name)


def value(item: object) -> str:
    """A TOML value for a bool, int, str, a list of them, or a table of lists."""
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, int | float):
        return str(item)
    if isinstance(item, str):
        return string(item)
    if isinstance(item, list | tuple):
        return "[" + ", ".join(value(v) for v in item) + "]"
    if isinstance(item, dict):  # an inline table; a one-element list is written as its element
        pairs = (f"{key(k)} = {value(v[0] if len(v) == 1 else v)}" for k, v in item.items())
        return "{ " + ", ".join(pairs) + " }"
    raise TypeError(f"no TOML form for {item!r}")


def comment(text: str) -> str:
    """One comment line; a line break in ``text`` cannot end the comment early."""
    return "# " + text.replace("\r", " ").replace("\n", " ")


@dataclass
class Section:
    """One table: its header (``None`` for the top of the file) and its lines."""

    header: str | None
    lines: list[str] = field(default_factory=list)

    def set(self, name: str, item: object) -> None:
        self.lines.append(f"{key(name)} = {value(item)}")

    def note(self, text: str) -> None:
        self.lines.append(comment(text))

    def render(self) -> str:
        head = [self.header] if self.header is not None else []
        return "\n".join(head + self.lines)


def render(sections: list[Section]) -> str:
    """The sections, one blank line apart, ending with a newline."""
    return "\n\n".join(s.render() for s in sections if s.lines) + "\n"


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

    def set(self, name: str, item: Value, note: str = "") -> None:
        """Set ``name`` (replacing an earlier setting of it)."""
        self.settings = [s for s in self.settings if s.key != name]
        self.settings.append(Setting(name, item, note))

    def get(self, name: str) -> Value | None:
        for setting in self.settings:
            if setting.key == name:
                return setting.value
        return None

    def render(self) -> list[str]:
        lines = [f"# {text}" if text else "#" for text in self.comments]
        head = f"[[{self.header}]]" if self.array else f"[{self.header}]"
        body = [head]
        for setting in self.settings:
            line = f"{key(setting.key)} = {value(setting.value)}"
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
    return string(name)


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
