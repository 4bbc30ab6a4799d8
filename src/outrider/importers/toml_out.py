"""Writing TOML text by hand: the importers emit comments next to the values they
translate (and in place of those they cannot), which a TOML library would drop."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

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
    """A TOML value for a bool, int, str or list of them."""
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, int | float):
        return str(item)
    if isinstance(item, str):
        return string(item)
    if isinstance(item, list | tuple):
        return "[" + ", ".join(value(v) for v in item) + "]"
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
