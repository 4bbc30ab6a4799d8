"""Reading Postfix's configuration: ``main.cf``, ``master.cf`` and lookup tables.

Only parsing lives here (no Outrider knowledge), so the translator in ``postfix.py`` works
on plain data and both can be tested on small strings. The grammar follows postconf(5),
master(5) and the source formats of postmap(1): a line starting with whitespace continues
the previous one, ``#`` starts a comment only at the start of a line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

#: Defaults of the parameters the translator reads or expands (postconf -d, Postfix 3.7).
#: ``myhostname`` and ``mydomain`` are filled in by :func:`expand` when not set.
DEFAULTS: dict[str, str] = {
    "config_directory": "/etc/postfix",
    "queue_directory": "/var/spool/postfix",
    "mydestination": "$myhostname, localhost.$mydomain, localhost",
    "myorigin": "$myhostname",
    "inet_interfaces": "all",
    "virtual_transport": "virtual",
    "default_transport": "smtp",
    "relay_transport": "relay",
    "local_transport": "local:$myhostname",
    "virtual_mailbox_base": "",
    "default_destination_concurrency_limit": "20",
    "minimal_backoff_time": "300s",
    "maximal_backoff_time": "4000s",
    "maximal_queue_lifetime": "5d",
    "bounce_queue_lifetime": "5d",
    "message_size_limit": "10240000",
    "smtpd_tls_security_level": "",
    "smtp_tls_security_level": "",
    "mail_name": "Postfix",
}


@dataclass(frozen=True)
class Param:
    """One ``name = value`` of main.cf (or a ``-o`` of master.cf), where it was written."""

    name: str
    value: str
    file: str
    line: int

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Service:
    """One master.cf service line: ``service type private unpriv chroot wakeup maxproc
    command [args]``; ``overrides`` are its ``-o name=value`` options."""

    service: str
    type: str
    command: str
    args: tuple[str, ...]
    overrides: dict[str, Param]
    file: str
    line: int

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Entry:
    """One ``key value`` line of a lookup table's source file."""

    key: str
    value: str
    where: str


@dataclass
class Table:
    """A lookup table's entries, or why it could not be read (``problem``)."""

    ref: str
    entries: list[Entry] = field(default_factory=list)
    problem: str | None = None


def logical_lines(text: str) -> list[tuple[int, str]]:
    """Join continuation lines (starting with whitespace) to their first line, drop blank
    lines and ``#`` comment lines; each result carries its first line's number."""
    result: list[tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if raw[0] in " \t" and result:
            first, joined = result[-1]
            result[-1] = (first, f"{joined} {stripped}")
        else:
            result.append((number, stripped))
    return result


def parse_main_cf(text: str, file: str = "main.cf") -> tuple[dict[str, Param], list[str]]:
    """The parameters of main.cf (a later setting wins, as in Postfix), and the lines
    that are no ``name = value``."""
    params: dict[str, Param] = {}
    bad: list[str] = []
    for number, line in logical_lines(text):
        name, eq, value = line.partition("=")
        name = name.strip()
        if not eq or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            bad.append(f"{file}:{number}: not a 'name = value' line: {line}")
            continue
        params[name] = Param(name, value.strip(), file, number)
    return params, bad


_REF = re.compile(
    r"\$(?:\{([A-Za-z0-9_]+)(?:([?:])([^}]*))?\}|\(([A-Za-z0-9_]+)\)|([A-Za-z0-9_]+))"
)


def expand(value: str, params: dict[str, Param], depth: int = 0) -> str:
    """Expand ``$name``, ``${name}``, ``$(name)``, ``${name?text}`` and ``${name:text}``
    as Postfix does: from ``params``, else :data:`DEFAULTS`, else empty;
    ``myhostname`` and ``mydomain`` default to each other as in Postfix."""
    if depth > 20:
        return value

    def raw(name: str) -> str:
        if name in params:
            return params[name].value
        if name == "mydomain":
            host = expand("$myhostname", params, depth + 1)
            return host.partition(".")[2] or "localdomain"
        if name == "myhostname":
            domain = params["mydomain"].value if "mydomain" in params else ""
            return f"localhost.{domain}" if domain else "localhost"
        return DEFAULTS.get(name, "")

    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(4) or match.group(5)
        value_of = expand(raw(name), params, depth + 1)
        if match.group(2) == "?":
            return expand(match.group(3), params, depth + 1) if value_of else ""
        if match.group(2) == ":":
            return "" if value_of else expand(match.group(3), params, depth + 1)
        return value_of

    return _REF.sub(one, value.replace("$$", "\0")).replace("\0", "$")


def split_list(value: str) -> list[str]:
    """Split a Postfix list (commas and/or whitespace), keeping ``{...}`` groups whole."""
    items: list[str] = []
    current = ""
    depth = 0
    for char in value:
        if char == "{":
            depth += 1
        elif char == "}":
            depth = max(0, depth - 1)
        if depth == 0 and (char == "," or char.isspace()):
            if current:
                items.append(current)
            current = ""
            continue
        current += char
    if current:
        items.append(current)
    return items


def _master_args(words: list[str], file: str, number: int) -> tuple[list[str], dict[str, Param]]:
    """Split a service's arguments into ``-o`` overrides and the rest; ``-o { a = b }``
    (Postfix 3.0) and ``-o a=b`` are both understood."""
    rest: list[str] = []
    overrides: dict[str, Param] = {}
    index = 0
    while index < len(words):
        word = words[index]
        if word == "-o" and index + 1 < len(words):
            setting = words[index + 1]
            index += 2
            if setting.startswith("{"):
                while not setting.rstrip().endswith("}") and index < len(words):
                    setting += " " + words[index]
                    index += 1
                setting = setting.strip()[1:-1]
            name, _, value = setting.partition("=")
            overrides[name.strip()] = Param(name.strip(), value.strip(), file, number)
            continue
        if word.startswith("-o") and len(word) > 2:
            name, _, value = word[2:].partition("=")
            overrides[name.strip()] = Param(name.strip(), value.strip(), file, number)
        else:
            rest.append(word)
        index += 1
    return rest, overrides


def parse_master_cf(text: str, file: str = "master.cf") -> tuple[list[Service], list[str]]:
    """The services of master.cf, and the lines that are not service lines."""
    services: list[Service] = []
    bad: list[str] = []
    for number, line in logical_lines(text):
        words = line.split()
        if len(words) < 8:
            bad.append(f"{file}:{number}: not a service line: {line}")
            continue
        args, overrides = _master_args(words[8:], file, number)
        services.append(Service(words[0], words[1], words[7], tuple(args), overrides, file, number))
    return services, bad


def parse_table_source(text: str, file: str) -> list[Entry]:
    """A postmap(1) source file: ``key value``, the first whitespace ending the key,
    with continuation lines."""
    entries: list[Entry] = []
    for number, line in logical_lines(text):
        key, *value = line.split(None, 1)
        entries.append(Entry(key, value[0] if value else "", f"{file}:{number}"))
    return entries


def parse_inline(body: str, where: str) -> list[Entry]:
    """``inline:{ key=value, { key = value with spaces } }`` (Postfix 3.0)."""
    inner = body.strip()
    if inner.startswith("{") and inner.endswith("}"):
        inner = inner[1:-1]
    entries: list[Entry] = []
    for item in split_list(inner):
        text = item.strip()
        if text.startswith("{") and text.endswith("}"):
            text = text[1:-1]
        key, _, value = text.partition("=")
        entries.append(Entry(key.strip(), value.strip(), where))
    return entries


#: Table types whose source is a ``key value`` text file next to the compiled one.
FILE_TYPES = frozenset({"hash", "btree", "lmdb", "cdb", "dbm", "sdbm", "texthash"})


def locate(path: str, config_dir: Path) -> Path:
    """Where to read ``path`` when importing from ``config_dir``: a file named under
    /etc/postfix is read from ``config_dir`` (so a copy of the directory can be
    imported), as is a relative one."""
    candidate = Path(path)
    if not candidate.is_absolute():
        return config_dir / candidate
    try:
        return config_dir / candidate.relative_to("/etc/postfix")
    except ValueError:
        pass
    if candidate.exists():
        return candidate
    return config_dir / candidate.name


def read_table(ref: str, config_dir: Path, where: str) -> Table:
    """Read the entries of a table reference such as ``hash:/etc/postfix/virtual``
    (from its source text file), ``texthash:…``, ``inline:{…}`` or ``static:value``."""
    kind, colon, rest = ref.partition(":")
    if kind == "proxy" and colon:
        kind, colon, rest = rest.partition(":")
    if not colon:
        return Table(ref, problem="not a 'type:name' table")
    if kind == "inline":
        return Table(ref, parse_inline(rest, where))
    if kind == "static":
        return Table(ref, [Entry("*", rest.strip("{} "), where)])
    if kind not in FILE_TYPES:
        return Table(ref, problem=f"table type '{kind}' is not read by the importer")
    path = locate(rest, config_dir)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return Table(ref, problem=f"cannot read {path}: {exc.strerror}")
    return Table(ref, parse_table_source(text, rest))
