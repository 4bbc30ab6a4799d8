"""Read a PowerMTA configuration file into a tree of directives and blocks.

PowerMTA's syntax is line based: ``directive value`` lines, ``#`` comments (whole
lines, or after whitespace at the end of a line, outside quotes and ``/regex/``),
``<tag arg>`` … ``</tag>`` blocks, ``include FILE`` (relative to the including file,
glob patterns such as ``/etc/pmta/conf.d/*.conf`` read in name order). Directive and
tag names are case-insensitive; values keep their case. A line ending in a backslash
continues on the next one. Every node keeps the file and line it came from, so the
translator can point the operator at the original text, and every syntax problem is
reported as ``FILE:LINE: message``.
"""

from __future__ import annotations

import glob
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Block",
    "Directive",
    "Location",
    "Node",
    "PmtaSyntaxError",
    "parse_file",
    "parse_text",
    "walk",
]

# Blocks PowerMTA allows inside another block, by outer tag. Tags not listed may hold
# anything (their contents are not translated), the ones listed hold only these.
_NESTING: dict[str, frozenset[str]] = {
    "virtual-mta": frozenset({"domain"}),
    "domain": frozenset(),
    "source": frozenset(),
    "smtp-pattern-list": frozenset(),
    "virtual-mta-pool": frozenset(),
    "acct-file": frozenset(),
    "smtp-user": frozenset(),
}
_MAX_INCLUDE_DEPTH = 16


@dataclass(frozen=True, slots=True)
class Location:
    """Where a node was written."""

    file: Path
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True, slots=True)
class Directive:
    """``name value``: ``name`` lower case, ``value`` as written (comment removed)."""

    name: str
    value: str
    loc: Location
    text: str  # the whole logical line as written, comment removed


@dataclass(frozen=True, slots=True)
class Block:
    """``<tag arg>`` … ``</tag>``: ``tag`` lower case, ``arg`` as written."""

    tag: str
    arg: str
    loc: Location
    children: tuple[Node, ...]
    text: str  # the opening line


Node = Directive | Block


class PmtaSyntaxError(Exception):
    """A problem in the PowerMTA file, with the place it was found."""

    def __init__(self, loc: Location | None, message: str) -> None:
        super().__init__(f"{loc}: {message}" if loc is not None else message)
        self.loc = loc
        self.message = message


def strip_comment(line: str) -> str:
    """``line`` without its ``#`` comment: a ``#`` at the start or after whitespace, but
    not inside double quotes or a ``/regex/`` (pattern lists use both)."""
    quote = False
    regex = False
    prev = " "
    i = 0
    while i < len(line):
        c = line[i]
        if regex:
            if c == "\\":
                i += 2
                prev = "x"
                continue
            if c == "/":
                regex = False
        elif quote:
            if c == '"':
                quote = False
        elif c == '"':
            quote = True
        elif c == "/" and prev.isspace():
            regex = True
        elif c == "#" and prev.isspace():
            return line[:i]
        prev = c
        i += 1
    return line


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """(first line number, text) of each non-blank logical line, comments removed."""
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = strip_comment(raw).rstrip()
        if not pending:
            start = number
        if line.endswith("\\"):
            pending.append(line[:-1])
            continue
        pending.append(line)
        joined = " ".join(part.strip() for part in pending).strip()
        pending = []
        if joined:
            yield start, joined
    if pending:
        joined = " ".join(part.strip() for part in pending).strip()
        if joined:
            yield start, joined


@dataclass
class _Open:
    tag: str
    arg: str
    loc: Location
    text: str
    children: list[Node]


class _Reader:
    def __init__(self) -> None:
        self.stack: list[Path] = []

    def read_file(self, path: Path, included_at: Location | None) -> list[Node]:
        real = path.resolve()
        if real in self.stack:
            raise PmtaSyntaxError(included_at, f"include loop: {path} includes itself")
        if len(self.stack) >= _MAX_INCLUDE_DEPTH:
            raise PmtaSyntaxError(included_at, f"includes nested deeper than {_MAX_INCLUDE_DEPTH}")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise PmtaSyntaxError(included_at, f"cannot read {path}: {exc.strerror}") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("latin-1")
        self.stack.append(real)
        try:
            return self.read_text(text, path)
        finally:
            self.stack.pop()

    def read_text(self, text: str, path: Path) -> list[Node]:
        top: list[Node] = []
        opened: list[_Open] = []
        for number, line in _logical_lines(text):
            loc = Location(path, number)
            into = opened[-1].children if opened else top
            if line.startswith("</"):
                if not line.endswith(">"):
                    raise PmtaSyntaxError(loc, f"closing tag without '>': {line}")
                tag = line[2:-1].strip().lower()
                if not opened:
                    raise PmtaSyntaxError(loc, f"</{tag}> without an open <{tag}>")
                current = opened.pop()
                if current.tag != tag:
                    raise PmtaSyntaxError(
                        loc, f"</{tag}> closes <{current.tag}> opened at line {current.loc.line}"
                    )
                block = Block(
                    current.tag, current.arg, current.loc, tuple(current.children), current.text
                )
                (opened[-1].children if opened else top).append(block)
            elif line.startswith("<"):
                if not line.endswith(">"):
                    raise PmtaSyntaxError(loc, f"block tag without '>': {line}")
                inner = line[1:-1].strip()
                tag, _, arg = inner.partition(" ")
                tag = tag.lower()
                if not tag:
                    raise PmtaSyntaxError(loc, f"empty block tag: {line}")
                if opened:
                    allowed = _NESTING.get(opened[-1].tag)
                    if allowed is not None and tag not in allowed:
                        raise PmtaSyntaxError(
                            loc, f"<{tag}> is not allowed inside <{opened[-1].tag}>"
                        )
                opened.append(_Open(tag, arg.strip(), loc, line, []))
            else:
                name, _, value = line.partition(" ")
                name = name.lower()
                value = value.strip()
                if name == "include":
                    into.extend(self._include(value, path, loc))
                else:
                    into.append(Directive(name, value, loc, line))
        if opened:
            current = opened[-1]
            raise PmtaSyntaxError(current.loc, f"<{current.tag}> is never closed")
        return top

    def _include(self, value: str, path: Path, loc: Location) -> list[Node]:
        if not value:
            raise PmtaSyntaxError(loc, "include needs a file name")
        name = value.strip('"')
        target = Path(name) if Path(name).is_absolute() else path.parent / name
        if glob.has_magic(str(target)):
            nodes: list[Node] = []
            for match in sorted(glob.glob(str(target))):
                if Path(match).is_file():
                    nodes.extend(self.read_file(Path(match), loc))
            return nodes
        return self.read_file(target, loc)


def parse_file(path: Path | str) -> tuple[Node, ...]:
    """The nodes of a PowerMTA config file, includes read in place."""
    return tuple(_Reader().read_file(Path(path), None))


def parse_text(text: str, path: Path | str = "config") -> tuple[Node, ...]:
    """The nodes of PowerMTA config text; ``path`` names it and anchors relative includes."""
    reader = _Reader()
    target = Path(path)
    reader.stack.append(target.resolve())
    return tuple(reader.read_text(text, target))


def walk(nodes: tuple[Node, ...]) -> Iterator[Node]:
    """Every node, depth first."""
    for node in nodes:
        yield node
        if isinstance(node, Block):
            yield from walk(node.children)
