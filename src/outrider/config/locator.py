"""Map TOML key paths to the lines that define them, for ``FILE:LINE`` error reports.

``tomllib`` gives no positions for keys, so :class:`KeyLocator` re-scans the
text. It only runs when there is something to report.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import re
import tomllib
from collections.abc import Sequence

__all__ = ["KeyLocator", "KeyPath", "format_key_path"]

KeyPath = tuple[str | int, ...]


class _ScanError(Exception):
    pass


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_BASIC_STR = re.compile(r'"(?:[^"\\\n]|\\.)*"')
_LITERAL_STR = re.compile(r"'[^'\n]*'")
_ML_BASIC_STR = re.compile(r'"""(?:[^"\\]|\\[\s\S]|"(?!""))*""""{0,2}')
_ML_LITERAL_STR = re.compile(r"'''[\s\S]*?''''{0,2}")
_SCALAR = re.compile(r"[^,\]}\r\n#]+")
_BLANK = re.compile(r"[ \t]*")
_BLANK_NL_COMMENTS = re.compile(r"(?:[ \t\r\n]+|#[^\n]*)*")


class KeyLocator:
    """Maps key paths to the 1-based line that defines them.

    Paths use strings for keys and ints for array indexes, e.g.
    ``("listener", 1, "address")`` or ``("domain", "*", "retry-after", 2)``.
    Header lines count for the tables they open; array elements (including
    ``[[array]]`` tables) get the line where the element starts. Meant for text
    that ``tomllib`` accepted; on anything else it keeps what it found so far.
    """

    def __init__(self, text: str) -> None:
        self._text = text
        self._pos = 0
        self._newlines = [m.start() for m in re.finditer("\n", text)]
        self._aot: dict[KeyPath, int] = {}  # array-of-tables path -> index of its last element
        self.lines: dict[KeyPath, int] = {}
        with contextlib.suppress(_ScanError, IndexError, tomllib.TOMLDecodeError, RecursionError):
            self._document()

    def line_of(self, path: Sequence[str | int]) -> int:
        """Line of ``path``, else of its nearest defined ancestor (its table), else 1."""
        key = tuple(path)
        for end in range(len(key), 0, -1):
            line = self.lines.get(key[:end])
            if line is not None:
                return line
        return 1

    # The scanner below is a small recursive-descent pass over TOML's structure.

    def _line(self, pos: int | None = None) -> int:
        return bisect.bisect_left(self._newlines, self._pos if pos is None else pos) + 1

    def _mark(self, path: KeyPath, line: int) -> None:
        # Longest first, up to the first prefix already known (whose own prefixes are
        # too): linear per key, not quadratic, however deeply values nest.
        for end in range(len(path), 0, -1):
            if path[:end] in self.lines:
                break
            self.lines[path[:end]] = line

    def _skip(self, pattern: re.Pattern[str]) -> None:
        match = pattern.match(self._text, self._pos)
        if match is not None:
            self._pos = match.end()

    def _peek(self) -> str:
        return self._text[self._pos] if self._pos < len(self._text) else ""

    def _expect(self, char: str) -> None:
        if self._peek() != char:
            raise _ScanError(f"expected {char!r} at offset {self._pos}")
        self._pos += 1

    def _document(self) -> None:
        text = self._text
        table: KeyPath = ()
        while True:
            self._skip(_BLANK_NL_COMMENTS)
            if self._pos >= len(text):
                return
            line = self._line()
            if text.startswith("[[", self._pos):
                self._pos += 2
                parts = self._key()
                self._skip(_BLANK)
                self._expect("]")
                self._expect("]")
                array = (*self._resolve(parts[:-1]), parts[-1])
                index = self._aot.get(array, -1) + 1
                self._aot[array] = index
                table = (*array, index)
                self._mark(table, line)
            elif text.startswith("[", self._pos):
                self._pos += 1
                parts = self._key()
                self._skip(_BLANK)
                self._expect("]")
                table = self._resolve(parts)
                self._mark(table, line)
            else:
                self._key_value(table)

    def _resolve(self, parts: Sequence[str]) -> KeyPath:
        """Insert the current element index after each array-of-tables in a header path."""
        path: KeyPath = ()
        for part in parts:
            path = (*path, part)
            index = self._aot.get(path)
            if index is not None:
                path = (*path, index)
        return path

    def _key(self) -> list[str]:
        parts: list[str] = []
        while True:
            self._skip(_BLANK)
            char = self._peek()
            if char == '"':
                parts.append(self._quoted_key(_BASIC_STR))
            elif char == "'":
                parts.append(self._quoted_key(_LITERAL_STR))
            else:
                match = _BARE_KEY.match(self._text, self._pos)
                if match is None:
                    raise _ScanError(f"expected a key at offset {self._pos}")
                parts.append(match.group())
                self._pos = match.end()
            self._skip(_BLANK)
            if self._peek() != ".":
                return parts
            self._pos += 1

    def _quoted_key(self, pattern: re.Pattern[str]) -> str:
        match = pattern.match(self._text, self._pos)
        if match is None:
            raise _ScanError(f"unterminated quoted key at offset {self._pos}")
        self._pos = match.end()
        # Let tomllib decode escapes so keys compare equal to the parsed document's.
        value = tomllib.loads("k = " + match.group())["k"]
        assert isinstance(value, str)
        return value

    def _key_value(self, table: KeyPath) -> None:
        line = self._line()
        path = (*table, *self._key())
        self._mark(path, line)
        self._skip(_BLANK)
        self._expect("=")
        self._skip(_BLANK)
        self._value(path)

    def _value(self, path: KeyPath) -> None:
        text, pos = self._text, self._pos
        char = self._peek()
        if char == "[":
            self._array(path)
        elif char == "{":
            self._inline_table(path)
        elif char in "\"'":
            if text.startswith('"""', pos):
                pattern = _ML_BASIC_STR
            elif text.startswith("'''", pos):
                pattern = _ML_LITERAL_STR
            else:
                pattern = _BASIC_STR if char == '"' else _LITERAL_STR
            match = pattern.match(text, pos)
            if match is None:
                raise _ScanError(f"unterminated string at offset {pos}")
            self._pos = match.end()
        else:
            match = _SCALAR.match(text, pos)
            if match is None:
                raise _ScanError(f"expected a value at offset {pos}")
            self._pos = match.end()

    def _array(self, path: KeyPath) -> None:
        self._pos += 1
        index = 0
        while True:
            self._skip(_BLANK_NL_COMMENTS)
            if self._peek() == "]":
                self._pos += 1
                return
            element = (*path, index)
            self._mark(element, self._line())
            self._value(element)
            index += 1
            self._skip(_BLANK_NL_COMMENTS)
            if self._peek() == ",":
                self._pos += 1
            else:
                self._expect("]")
                return

    def _inline_table(self, path: KeyPath) -> None:
        self._pos += 1
        while True:
            self._skip(_BLANK_NL_COMMENTS)
            if self._peek() == "}":
                self._pos += 1
                return
            self._key_value(path)
            self._skip(_BLANK_NL_COMMENTS)
            if self._peek() == ",":
                self._pos += 1
            else:
                self._expect("}")
                return


def format_key_path(path: Sequence[str | int]) -> str:
    """Render a key path TOML-style: ``domain."example.net".retry-after[2]``."""
    out: list[str] = []
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
            continue
        if out:
            out.append(".")
        out.append(part if _BARE_KEY.fullmatch(part) else json.dumps(part, ensure_ascii=False))
    return "".join(out)
