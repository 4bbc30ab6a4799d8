"""Load and validate the TOML config, reporting every problem as ``FILE:LINE: key: message``.

``tomllib`` gives no positions for keys, so :class:`KeyLocator` re-scans the
text to map key paths to lines. It only runs when there is something to report,
so a valid config costs one ``tomllib.loads`` plus conversion.
"""

from __future__ import annotations

import bisect
import contextlib
import difflib
import json
import re
import tomllib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from outrider.config import units
from outrider.config.model import (
    DEFAULT_POLICY_KEY,
    Config,
    ConfigError,
    DnsSettings,
    DomainPolicy,
    ListenerSettings,
    Problem,
    RelaySettings,
    ServerSettings,
)

__all__ = [
    "Config",
    "ConfigError",
    "KeyLocator",
    "KeyPath",
    "Problem",
    "format_key_path",
    "known_keys",
    "load_config",
    "parse_config",
]

KeyPath = tuple[str | int, ...]


# --------------------------------------------------------------------------- key locator


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
        with contextlib.suppress(_ScanError, IndexError, tomllib.TOMLDecodeError):
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
        for end in range(1, len(path) + 1):
            self.lines.setdefault(path[:end], line)

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


# --------------------------------------------------------------------------- converters


class _Invalid(Exception):
    """A value failed conversion; ``problems`` are (sub-path, message) pairs."""

    def __init__(self, problems: list[tuple[KeyPath, str]]) -> None:
        super().__init__(problems[0][1])
        self.problems = problems


def _fail(message: str) -> _Invalid:
    return _Invalid([((), message)])


def _type_name(value: object) -> str:
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


def _wrong_type(expected: str, value: object) -> _Invalid:
    return _fail(f"expected {expected}, got {_type_name(value)}")


Converter = Callable[[object], Any]


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise _wrong_type("a string", value)
    return value


def _banner(value: object) -> str:
    text = _string(value)
    if any(c in text for c in "\r\n\0"):
        raise _fail("must be a single line")
    if not text.isascii():
        raise _fail("must be ASCII (it is sent in the SMTP greeting)")
    return text


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise _wrong_type("a boolean (true or false)", value)
    return value


def _port(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _wrong_type("an integer", value)
    if not 1 <= value <= 65535:
        raise _fail(f"must be a TCP port from 1 to 65535, got {value}")
    return value


def _integer(minimum: int) -> Converter:
    def convert(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _wrong_type("an integer", value)
        if value < minimum:
            if value < 0:
                raise _fail(f"must not be negative, got {value}")
            raise _fail(f"must be at least {minimum}, got {value}")
        return value

    return convert


def _duration(*, positive: bool) -> Converter:
    def convert(value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise _wrong_type(f"a duration ({units.DURATION_HINT})", value)
        try:
            seconds = units.parse_duration(value)
        except ValueError as exc:
            raise _fail(str(exc)) from None
        if positive and seconds <= 0:
            raise _fail(f"must be greater than zero, got {value!r}")
        return seconds

    return convert


def _size(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _wrong_type(f"a size ({units.SIZE_HINT})", value)
    try:
        size = units.parse_size(value)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    if size <= 0:
        raise _fail(f"must be greater than zero, got {value!r}")
    return size


def _path(value: object) -> Path:
    text = _string(value)
    if not text.strip() or "\0" in text:
        raise _fail("must be a non-empty path")
    # CWD-relative by design (see docs/config.md); absolute so a later chdir is harmless.
    return Path.cwd() / text


def _hostname(value: object) -> str:
    try:
        return units.normalize_domain(_string(value))
    except ValueError as exc:
        raise _fail(str(exc)) from None


_domain = _hostname


def _address(
    default_port: int | None, *, ip_only: bool = False, allow_zero_port: bool = False
) -> Converter:
    def convert(value: object) -> tuple[str, int]:
        try:
            return units.parse_host_port(
                _string(value), default_port, ip_only=ip_only, allow_zero_port=allow_zero_port
            )
        except ValueError as exc:
            raise _fail(str(exc)) from None

    return convert


def _network(value: object) -> units.IPNetwork:
    try:
        return units.parse_network(_string(value))
    except ValueError as exc:
        raise _fail(str(exc)) from None


def _array_of(element: Converter, *, non_empty: bool = False) -> Converter:
    def convert(value: object) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise _wrong_type("an array", value)
        if non_empty and not value:
            raise _fail("must not be empty")
        out: list[Any] = []
        problems: list[tuple[KeyPath, str]] = []
        for index, item in enumerate(value):
            try:
                out.append(element(item))
            except _Invalid as exc:
                problems.extend(((index, *at), message) for at, message in exc.problems)
        if problems:
            raise _Invalid(problems)
        return tuple(out)

    return convert


def _domain_set(value: object) -> frozenset[str]:
    return frozenset(_array_of(_domain)(value))


# --------------------------------------------------------------------------- schema


@dataclass(frozen=True, slots=True)
class _Field:
    name: str  # dataclass field
    convert: Converter


_SERVER: Mapping[str, _Field] = {
    "hostname": _Field("hostname", _hostname),
    "spool-dir": _Field("spool_dir", _path),
    "log-dir": _Field("log_dir", _path),
    "shutdown-timeout": _Field("shutdown_timeout", _duration(positive=False)),
    "receiver-processes": _Field("receiver_processes", _integer(0)),
    "max-delivery-concurrency": _Field("max_delivery_concurrency", _integer(1)),
    "pid-file": _Field("pid_file", _path),
}

_DNS: Mapping[str, _Field] = {
    "nameservers": _Field("nameservers", _array_of(_address(53, ip_only=True))),
    "timeout": _Field("timeout", _duration(positive=True)),
}

_LISTENER: Mapping[str, _Field] = {
    "address": _Field("address", _address(None, allow_zero_port=True)),
    "relay-networks": _Field("relay_networks", _array_of(_network)),
    "max-message-size": _Field("max_message_size", _size),
    "max-rcpt-per-message": _Field("max_rcpt_per_message", _integer(1)),
    "max-errors": _Field("max_errors", _integer(1)),
    "command-timeout": _Field("command_timeout", _duration(positive=True)),
    "data-timeout": _Field("data_timeout", _duration(positive=True)),
    "max-connections": _Field("max_connections", _integer(1)),
    "banner": _Field("banner", _banner),
}

_RELAY: Mapping[str, _Field] = {
    "domains": _Field("domains", _domain_set),
}

_DOMAIN: Mapping[str, _Field] = {
    "retry-after": _Field("retry_after", _array_of(_duration(positive=True), non_empty=True)),
    "bounce-after": _Field("bounce_after", _duration(positive=False)),
    "route": _Field("route", _address(25)),
    "max-smtp-out": _Field("max_smtp_out", _integer(1)),
    "max-msg-per-connection": _Field("max_msg_per_connection", _integer(0)),
    "connect-timeout": _Field("connect_timeout", _duration(positive=True)),
    "smtp-greeting-timeout": _Field("smtp_greeting_timeout", _duration(positive=True)),
    "smtp-command-timeout": _Field("smtp_command_timeout", _duration(positive=True)),
    "smtp-data-init-timeout": _Field("smtp_data_init_timeout", _duration(positive=True)),
    "smtp-data-block-timeout": _Field("smtp_data_block_timeout", _duration(positive=True)),
    "smtp-data-termination-timeout": _Field(
        "smtp_data_termination_timeout", _duration(positive=True)
    ),
    "connection-idle-timeout": _Field("connection_idle_timeout", _duration(positive=False)),
    "use-starttls": _Field("use_starttls", _boolean),
    "smtp-port": _Field("smtp_port", _port),
}

_TOP_LEVEL = ("server", "dns", "listener", "relay", "domain")


def known_keys() -> dict[str, tuple[str, ...]]:
    """Keys accepted per table: ``listener`` is [[listener]], ``domain`` is [domain."NAME"]."""
    return {
        "server": tuple(_SERVER),
        "dns": tuple(_DNS),
        "listener": tuple(_LISTENER),
        "relay": tuple(_RELAY),
        "domain": tuple(_DOMAIN),
    }


# --------------------------------------------------------------------------- loading


_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_TOML_AT_END = re.compile(r"\s*\(at end of document\)\s*$")


class _Loader:
    """One validation pass: collects problems instead of stopping at the first."""

    def __init__(self, text: str, filename: str) -> None:
        self._text = text
        self._filename = filename
        self._found: list[tuple[KeyPath, str]] = []

    def problem(self, path: KeyPath, message: str) -> None:
        self._found.append((path, message))

    def problems(self) -> list[Problem]:
        if not self._found:
            return []
        locator = KeyLocator(self._text)
        located = [
            Problem(self._filename, locator.line_of(path), format_key_path(path), message)
            for path, message in self._found
        ]
        # Stable sort: file order, and within a line the order checks ran.
        return sorted(located, key=lambda p: p.line)

    def table(self, path: KeyPath, value: object) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.problem(path, f"expected a table, got {_type_name(value)}")
            return None
        return value

    def fields(
        self, path: KeyPath, table: Mapping[str, Any], spec: Mapping[str, _Field]
    ) -> dict[str, Any]:
        """Convert the keys present in ``table``; only explicitly set keys are returned."""
        out: dict[str, Any] = {}
        for key, value in table.items():
            field = spec.get(key)
            if field is None:
                self.unknown(path, key, spec, value)
                continue
            try:
                out[field.name] = field.convert(value)
            except _Invalid as exc:
                for at, message in exc.problems:
                    self.problem((*path, key, *at), message)
        return out

    def unknown(self, path: KeyPath, key: str, known: Collection[str], value: object) -> None:
        message = f"unknown key {key!r}"
        close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
        if close:
            message += f" (did you mean {close[0]!r}?)"
        elif path and path[0] == "domain" and isinstance(value, dict):
            # [domain.example.net] parses as nested tables "example" > "net".
            name = ".".join(str(p) for p in (*path[1:], key))
            message += f'; quote domain names that contain dots: [domain."{name}"]'
        self.problem((*path, key), message)

    def build(self, data: Mapping[str, Any], source: Path | None) -> Config:
        for key in data:
            if key not in _TOP_LEVEL:
                self.unknown((), key, _TOP_LEVEL, data[key])
        server = self.section(data, "server", _SERVER)
        dns = self.section(data, "dns", _DNS)
        relay = self.section(data, "relay", _RELAY)
        listeners = self.listeners(data.get("listener"))
        domains = self.domains(data.get("domain"))
        problems = self.problems()
        if problems:
            raise ConfigError(problems)

        settings = ServerSettings(**server)
        settings = replace(
            settings,
            spool_dir=Path.cwd() / settings.spool_dir,
            log_dir=Path.cwd() / settings.log_dir,
        )
        star = replace(DomainPolicy(), **domains.pop(DEFAULT_POLICY_KEY, {}))
        policies = {DEFAULT_POLICY_KEY: star}
        policies.update((name, replace(star, **explicit)) for name, explicit in domains.items())
        return Config(
            source=source,
            server=settings,
            dns=DnsSettings(**dns),
            listeners=tuple(ListenerSettings(**fields) for fields in listeners),
            relay=RelaySettings(**relay),
            domains=MappingProxyType(policies),
        )

    def section(
        self, data: Mapping[str, Any], name: str, spec: Mapping[str, _Field]
    ) -> dict[str, Any]:
        if name not in data:
            return {}
        table = self.table((name,), data[name])
        return {} if table is None else self.fields((name,), table, spec)

    def listeners(self, value: object) -> list[dict[str, Any]]:
        if value is None:
            self.problem(("listener",), "at least one [[listener]] table is required")
            return []
        if not isinstance(value, list):
            self.problem(
                ("listener",),
                f"expected an array of tables ([[listener]]), got {_type_name(value)}",
            )
            return []
        if not value:
            self.problem(("listener",), "at least one [[listener]] table is required")
        out: list[dict[str, Any]] = []
        seen: dict[tuple[str, int], int] = {}
        for index, entry in enumerate(value):
            path: KeyPath = ("listener", index)
            table = self.table(path, entry)
            if table is None:
                continue
            fields = self.fields(path, table, _LISTENER)
            address = fields.get("address")
            if address is None:
                if "address" not in table:
                    self.problem(path, "missing required key 'address'")
                continue
            if address[1] != 0:  # port 0 asks the kernel for a fresh port: never a clash
                first = seen.setdefault(address, index)
                if first != index:
                    self.problem(
                        (*path, "address"),
                        f"duplicate listener address {table['address']!r} "
                        f"(also listener[{first}].address)",
                    )
            out.append(fields)
        return out

    def domains(self, value: object) -> dict[str, dict[str, Any]]:
        if value is None:
            return {}
        table = self.table(("domain",), value)
        if table is None:
            return {}
        out: dict[str, dict[str, Any]] = {}
        origin: dict[str, str] = {}
        for name, entry in table.items():
            path: KeyPath = ("domain", name)
            if not isinstance(entry, dict):
                message = f"expected a table, got {_type_name(entry)}"
                if name in _DOMAIN:
                    message += '; policy keys go in [domain."*"] or [domain."NAME"], not [domain]'
                self.problem(path, message)
                continue
            if name == DEFAULT_POLICY_KEY:
                key = name
            else:
                try:
                    key = units.normalize_domain(name)
                except ValueError as exc:
                    self.problem(path, str(exc))
                    continue
            if key in origin:
                self.problem(
                    path,
                    f"same domain as {format_key_path(('domain', origin[key]))}; "
                    "merge the two tables",
                )
                continue
            origin[key] = name
            out[key] = self.fields(path, entry, _DOMAIN)
        return out


def _syntax_problem(exc: tomllib.TOMLDecodeError, text: str, filename: str) -> Problem:
    message = str(exc)
    line = 1
    match = _TOML_POSITION.search(message)
    if match is not None:
        line = int(match.group(1))
        message = f"{message[: match.start()]} (column {match.group(2)})"
    else:
        match = _TOML_AT_END.search(message)
        if match is not None:
            line = max(1, len(text.splitlines()))
            message = f"{message[: match.start()]} (at end of file)"
    return Problem(filename, line, "syntax", message)


def parse_config(text: str, filename: str = "<string>", *, source: Path | None = None) -> Config:
    """Parse config text; ``filename`` only labels problems. Raises :class:`ConfigError`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([_syntax_problem(exc, text, filename)]) from None
    return _Loader(text, filename).build(data, source)


def load_config(path: Path | str) -> Config:
    """Read and validate a config file. Unreadable files are reported as ``FILE:0: file: ...``."""
    source = Path(path)
    filename = str(path)
    try:
        raw = source.read_bytes()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError([Problem(filename, 0, "file", f"cannot read: {reason}")]) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        problem = Problem(filename, line, "encoding", f"not valid UTF-8: {exc.reason}")
        raise ConfigError([problem]) from None
    return parse_config(text, filename, source=source)
