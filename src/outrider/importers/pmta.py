"""Translate a parsed PowerMTA configuration into Outrider TOML text.

Outrider already uses PowerMTA's directive names, so most of the work is shape:
``<domain>`` blocks become ``[domain."…"]`` tables, ``<source>`` permissions become
``[[listener]]`` keys, and so on. Every value is checked with the same kinds the
loader uses, so the output passes ``outrider check-config``; a directive Outrider has
no equivalent for (or a value it would refuse) is kept as a comment naming its
``FILE:LINE`` and original text, and listed in :attr:`Translation.skipped`. Passwords
of ``<smtp-user>`` blocks never reach the TOML: the translation lists the
``outrider user add`` commands to run instead.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from outrider.config import units
from outrider.config.kinds import Invalid, Key, keys_of
from outrider.config.model import (
    ACCOUNTING_RECORDS,
    AccountingSettings,
    DomainPolicy,
    ListenerSettings,
    ServerSettings,
)
from outrider.importers import toml_out
from outrider.importers.pmta_parse import Block, Directive, Location, Node
from outrider.importers.toml_out import Section

__all__ = ["Skipped", "Translation", "translate"]

_POLICY = keys_of(DomainPolicy)
_LISTENER = keys_of(ListenerSettings)
_SERVER = keys_of(ServerSettings)
_ACCOUNTING = keys_of(AccountingSettings)
# PowerMTA names whose Outrider key is spelled differently.
_RENAMED = {"max-rcpt-per-message": "max-rcpt-per-transaction"}
_TRUE = {"yes", "true", "on", "1"}
_FALSE = {"no", "false", "off", "0"}
_PATTERN_ACTIONS = {"mode=backoff", "mode=normal", "disable-source-ip"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True, slots=True)
class Skipped:
    """A directive kept only as a comment, and why."""

    loc: Location
    text: str
    reason: str

    def __str__(self) -> str:
        return f"{self.loc}: {self.text} ({self.reason})"


@dataclass
class Translation:
    """The TOML text and what the operator must know about it."""

    toml: str
    skipped: list[Skipped]
    user_commands: list[str]
    warnings: list[str]


def _bool(text: str) -> bool | None:
    word = text.strip().lower()
    return True if word in _TRUE else False if word in _FALSE else None


def _guess(text: str) -> object:
    """A PowerMTA value as the TOML value most likely meant: bool, int, else string."""
    flag = _bool(text)
    if flag is not None and not text.strip().isdigit():
        return flag
    if re.fullmatch(r"-?\d+", text.strip()):
        return int(text)
    return text.strip()


def _checked(spec: Key, raw: object) -> object | None:
    """``raw`` if the loader's kind accepts it, else a lower-cased string that it accepts
    (PowerMTA writes ``10/H``, ``5M``), else None."""
    candidates = [raw]
    if isinstance(raw, str) and raw.lower() != raw:
        candidates.append(raw.lower())
    for candidate in candidates:
        try:
            spec.kind.convert(candidate)
        except Invalid:
            continue
        return candidate
    return None


def _policy_value(name: str, text: str) -> object | None:
    """The TOML value of domain key ``name`` for PowerMTA's ``text``, or None."""
    spec = _POLICY[name][1]
    if name == "route":
        return _checked(spec, _route(text))
    if isinstance(spec.default, list):
        return _checked(spec, [part.strip() for part in re.split(r"[,\s]+", text) if part])
    raw = _guess(text)
    if isinstance(spec.default, str) and not isinstance(raw, str):
        raw = text.strip()  # e.g. retry-after 600 is a number of seconds, still fine as str
    return _checked(spec, raw)


def _route(text: str) -> str:
    """PowerMTA's ``[192.0.2.1]:2525`` (brackets around an IPv4 literal) as ``host:port``."""
    value = text.strip()
    match = re.fullmatch(r"\[([0-9.]+)\](?::(\d+))?", value)
    if match:
        return match.group(1) + (f":{match.group(2)}" if match.group(2) else "")
    return value


def _network(text: str) -> str | None:
    """PowerMTA's ``0/0`` and CIDRs as an Outrider network, or None."""
    value = text.strip()
    if value in ("0/0", "*"):
        return "0.0.0.0/0"
    if value in ("::/0", "::0/0"):
        return "::/0"
    try:
        units.parse_network(value)
    except ValueError:
        return None
    return value


def _listen_address(text: str) -> str | None:
    """``smtp-listener 0/0:25`` → ``"0.0.0.0:25"``; None when unusable."""
    value = text.strip()
    host, sep, port = value.rpartition(":")
    if not sep:
        return None
    if host == "0/0":
        host = "0.0.0.0"
    elif host in ("::/0", "[::]/0"):
        host = "[::]"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    address = f"{host}:{port}"
    return address if _checked(_LISTENER["address"][1], address) is not None else None


def _domain_names(arg: str, macros: dict[str, list[str]]) -> list[str] | str:
    """The Outrider table names for ``<domain ARG>``, or why there are none."""
    name = arg.strip().strip('"')
    if name == "*":
        return ["*"]
    if name.startswith("$"):
        if name[1:] in macros:
            return [name]
        return f"no domain-macro named {name[1:]!r}"
    if name.startswith("/"):
        return "regular-expression domain names have no Outrider equivalent"
    both = name.startswith("[*.]")
    if both:
        name = name[4:]
    wildcard = name.startswith("*.")
    try:
        base = units.normalize_domain(name[2:] if wildcard else name)
    except ValueError as exc:
        return str(exc)
    if both:
        return [base, f"*.{base}"]
    return [f"*.{base}" if wildcard else base]


def _pattern(text: str) -> tuple[str, list[str]] | None:
    """``/regex/ action action`` → (Python regex, actions), or None."""
    value = text.strip()
    if not value.startswith("/"):
        return None
    i = 1
    while i < len(value):
        if value[i] == "\\":
            i += 2
            continue
        if value[i] == "/":
            break
        i += 1
    else:
        return None
    regex = value[1:i].replace("\\/", "/")
    rest = value[i + 1 :]
    flags = re.match(r"[a-z]*", rest)
    rest = rest[flags.end() if flags else 0 :]
    actions = [a for a in re.split(r"[\s,]+", rest.strip()) if a]
    try:
        re.compile(regex)
    except re.error:
        return None
    return regex, actions


def _table_key(name: str) -> str:
    return toml_out.key(name)


@dataclass
class _Domain:
    """One ``[domain."…"]`` (or virtual-MTA override) table being built."""

    origin: Location
    values: dict[str, object] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    queue_to: tuple[str, Location] | None = None


@dataclass
class _Source:
    network: str | None  # None: {auth} and other pseudo-sources
    arg: str
    loc: Location
    directives: list[Directive]

    def flag(self, name: str) -> bool:
        return any(d.name == name and _bool(d.value) for d in self.directives)

    def get(self, name: str) -> Directive | None:
        found = [d for d in self.directives if d.name == name]
        return found[-1] if found else None


@dataclass
class _State:
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    user_commands: list[str] = field(default_factory=list)
    server: dict[str, object] = field(default_factory=dict)
    server_notes: list[str] = field(default_factory=list)
    listeners: list[tuple[str, Location]] = field(default_factory=list)
    sources: list[_Source] = field(default_factory=list)
    relay_domains: list[str] = field(default_factory=list)
    macros: dict[str, list[str]] = field(default_factory=dict)
    # scope ("" global, else virtual MTA name) -> table name -> table
    domains: dict[str, dict[str, _Domain]] = field(default_factory=dict)
    vmtas: dict[str, tuple[Location, dict[str, str], list[str]]] = field(default_factory=dict)
    pools: dict[str, tuple[Location, list[tuple[str, Location]], list[str]]] = field(
        default_factory=dict
    )
    patterns: dict[str, tuple[Location, list[tuple[str, str]], list[str]]] = field(
        default_factory=dict
    )
    accounting: dict[str, object] = field(default_factory=dict)
    accounting_notes: list[str] = field(default_factory=list)
    acct_dir: tuple[Path, Location] | None = None
    dkim: list[tuple[dict[str, object], Location]] = field(default_factory=list)
    other_notes: list[str] = field(default_factory=list)

    def skip(self, loc: Location, text: str, reason: str, notes: list[str] | None) -> None:
        item = Skipped(loc, text, reason)
        self.skipped.append(item)
        (notes if notes is not None else self.other_notes).append(f"not translated: {item}")

    def path(self, text: str, loc: Location) -> Path:
        """A path as PowerMTA reads it: relative ones from the file that names them."""
        raw = Path(text.strip().strip('"'))
        return raw if raw.is_absolute() else (loc.file.parent / raw).resolve()


def translate(nodes: tuple[Node, ...]) -> Translation:
    """The Outrider TOML for parsed PowerMTA nodes (see :func:`parse_file`)."""
    state = _State()
    for node in nodes:  # macros first: <domain $NAME> may come before its domain-macro
        if isinstance(node, Directive) and node.name == "domain-macro":
            _macro(state, node)
    for node in nodes:
        if isinstance(node, Directive):
            if node.name != "domain-macro":
                _global(state, node)
        else:
            _block(state, node)
    for scope in state.domains.values():
        _apply_queue_to(state, scope, state.macros)
    _check_references(state)
    toml = _render(state)
    skipped = sorted(state.skipped, key=lambda s: (str(s.loc.file), s.loc.line))
    return Translation(toml, skipped, state.user_commands, state.warnings)


def _macro(state: _State, node: Directive) -> None:
    name, _, rest = node.value.partition(" ")
    domains: list[str] = []
    for part in re.split(r"[,\s]+", rest.strip()):
        if not part:
            continue
        try:
            domains.append(units.normalize_domain(part))
        except ValueError as exc:
            state.skip(node.loc, node.text, f"domain {part!r}: {exc}", None)
            return
    if not _NAME.fullmatch(name) or not domains:
        state.skip(node.loc, node.text, "expected 'domain-macro NAME a.com,b.com'", None)
        return
    state.macros[name] = domains


def _global(state: _State, node: Directive) -> None:
    handler = _GLOBAL.get(node.name)
    if handler is None:
        state.skip(node.loc, node.text, "no Outrider equivalent", state.server_notes)
        return
    handler(state, node)


def _server_key(state: _State, node: Directive, name: str, raw: object) -> None:
    value = _checked(_SERVER[name][1], raw)
    if value is None:
        state.skip(node.loc, node.text, f"invalid value for [server] {name}", state.server_notes)
        return
    state.server[name] = value


def _host_name(state: _State, node: Directive) -> None:
    _server_key(state, node, "hostname", node.value)


def _postmaster(state: _State, node: Directive) -> None:
    _server_key(state, node, "postmaster", node.value)


def _spool(state: _State, node: Directive) -> None:
    if "spool-dir" in state.server:
        state.skip(node.loc, node.text, "Outrider has one spool directory", state.server_notes)
        return
    state.server["spool-dir"] = str(state.path(node.value.split()[0], node.loc))


def _log_file(state: _State, node: Directive) -> None:
    state.server["log-dir"] = str(state.path(node.value, node.loc).parent)
    state.server_notes.append(
        f"log-file {node.value} ({node.loc}): Outrider writes outrider.log and the "
        "accounting files in log-dir"
    )


def _total_max_smtp_out(state: _State, node: Directive) -> None:
    _server_key(state, node, "max-delivery-concurrency", _guess(node.value))


def _listener(state: _State, node: Directive) -> None:
    address = _listen_address(node.value)
    if address is None:
        state.skip(node.loc, node.text, "expected ADDRESS:PORT", None)
        return
    if any(a == address for a, _ in state.listeners):
        return
    state.listeners.append((address, node.loc))


def _relay_domain(state: _State, node: Directive) -> None:
    for part in re.split(r"[,\s]+", node.value.strip()):
        if not part:
            continue
        try:
            state.relay_domains.append(units.normalize_domain(part))
        except ValueError as exc:
            state.skip(node.loc, node.text, str(exc), None)


def _domain_key(state: _State, node: Directive) -> None:
    parts = [p.strip() for p in node.value.split(",")]
    if len(parts) != 3 or not all(parts):
        state.skip(node.loc, node.text, "expected 'domain-key SELECTOR,DOMAIN,KEY-FILE'", None)
        return
    selector, domain, key_file = parts
    if domain == "*" or domain.startswith("*"):
        state.skip(
            node.loc, node.text, "a key for every domain needs one [[dkim]] per domain", None
        )
        return
    try:
        domain = units.normalize_domain(domain)
    except ValueError as exc:
        state.skip(node.loc, node.text, str(exc), None)
        return
    path = state.path(key_file, node.loc)
    algorithm = _key_algorithm(path)
    if algorithm is None:
        state.skip(node.loc, node.text, f"key file {path} is missing or no usable key", None)
        return
    entry: dict[str, object] = {"domain": domain, "selector": selector, "key-file": str(path)}
    if algorithm != "rsa-sha256":
        entry["algorithm"] = algorithm
    state.dkim.append((entry, node.loc))


def _key_algorithm(path: Path) -> str | None:
    from outrider.dkim.keys import DkimKeyError, load_private_key

    for algorithm in ("rsa-sha256", "ed25519-sha256"):
        try:
            load_private_key(path, algorithm)
        except (OSError, DkimKeyError):
            continue
        return algorithm
    return None


def _acct_file(state: _State, node: Directive | Block) -> None:
    target = node.value if isinstance(node, Directive) else node.arg
    notes = state.accounting_notes
    if state.acct_dir is not None:
        state.skip(node.loc, node.text, "Outrider keeps one accounting log", notes)
        return
    path = state.path(target, node.loc)
    state.acct_dir = (path.parent, node.loc)
    notes.append(f"acct-file {target} ({node.loc}): Outrider writes acct-YYYY-MM-DD.csv in log-dir")
    if isinstance(node, Directive):
        return
    for child in node.children:
        if not isinstance(child, Directive):
            continue
        if child.name == "records":
            wanted = [r for r in re.split(r"[,\s]+", child.value.strip().lower()) if r]
            known = [r for r in wanted if r in ACCOUNTING_RECORDS]
            if known:
                state.accounting["records"] = known
            if len(known) != len(wanted):
                other = ", ".join(r for r in wanted if r not in ACCOUNTING_RECORDS)
                state.skip(child.loc, child.text, f"record types {other} are not written", notes)
        elif child.name == "delete-after":
            value = _checked(_ACCOUNTING["keep"][1], child.value.strip())
            if value is None:
                state.skip(child.loc, child.text, "invalid duration", notes)
            else:
                state.accounting["keep"] = value
        else:
            state.skip(child.loc, child.text, "no Outrider equivalent", notes)


_GLOBAL: dict[str, Callable[[_State, Directive], None]] = {
    "host-name": _host_name,
    "postmaster": _postmaster,
    "spool": _spool,
    "log-file": _log_file,
    "total-max-smtp-out": _total_max_smtp_out,
    "smtp-listener": _listener,
    "relay-domain": _relay_domain,
    "domain-key": _domain_key,
    "acct-file": _acct_file,
}


def _block(state: _State, node: Block) -> None:
    if node.tag == "domain":
        _domain_block(state, node, "")
    elif node.tag == "source":
        _source(state, node)
    elif node.tag == "virtual-mta":
        _vmta(state, node)
    elif node.tag == "virtual-mta-pool":
        _pool(state, node)
    elif node.tag == "smtp-pattern-list":
        _patterns(state, node)
    elif node.tag == "acct-file":
        _acct_file(state, node)
    elif node.tag == "smtp-user":
        _smtp_user(state, node)
    elif node.tag == "smtp-listener":
        _listener(state, Directive("smtp-listener", node.arg, node.loc, node.text))
        for child in node.children:
            text = child.text
            state.skip(child.loc, text, "listener options are not translated", None)
    elif node.tag == "spool":
        _spool(state, Directive("spool", node.arg, node.loc, node.text))
        for child in node.children:
            state.skip(child.loc, child.text, "no Outrider equivalent", state.server_notes)
    else:
        state.skip(node.loc, node.text, f"<{node.tag}> has no Outrider equivalent", None)
        for child in node.children:
            state.other_notes.append(f"  {child.loc}: {child.text}")


def _domain_block(state: _State, node: Block, scope: str) -> None:
    names = _domain_names(node.arg, state.macros)
    tables = state.domains.setdefault(scope, {})
    if isinstance(names, str):
        notes = state.vmtas[scope][2] if scope else None
        state.skip(node.loc, node.text, names, notes)
        for child in node.children:
            if isinstance(child, Directive):
                state.skip(child.loc, child.text, "its <domain> was not translated", notes)
        return
    for name in names:
        table = tables.setdefault(name, _Domain(node.loc))
        for child in node.children:
            if isinstance(child, Directive):
                _domain_directive(state, table, child)


def _domain_directive(state: _State, table: _Domain, node: Directive) -> None:
    name = _RENAMED.get(node.name, node.name)
    if name == "queue-to":
        table.queue_to = (node.value.strip(), node.loc)
        return
    if name == "dkim-sign":
        if _bool(node.value):
            table.notes.append(
                f"dkim-sign yes ({node.loc}): Outrider signs mail From every domain"
                " with a [[dkim]] key"
            )
        else:
            state.skip(
                node.loc, node.text, "Outrider signs whenever a [[dkim]] key exists", table.notes
            )
        return
    if name == "domain-key":
        _domain_key(state, node)
        return
    if name not in _POLICY:
        state.skip(node.loc, node.text, "no Outrider equivalent", table.notes)
        return
    value = _policy_value(name, node.value)
    if value is None:
        state.skip(node.loc, node.text, f"value not valid for {name}", table.notes)
        return
    table.values[name] = value


def _apply_queue_to(
    state: _State, tables: dict[str, _Domain], macros: dict[str, list[str]]
) -> None:
    """``queue-to OTHER``: Outrider has no shared queue by name; the domain takes
    OTHER's settings (it keeps its own where it sets them) and mx-rollup joins the
    queues when their MX hosts are the same."""
    for table in tables.values():
        if table.queue_to is None:
            continue
        other, loc = table.queue_to
        try:
            wanted = units.normalize_domain(other)
        except ValueError:
            wanted = ""
        # the other domain's own table, else the table of the macro it is in
        target = tables.get(wanted)
        if target is None:
            macro = next((m for m, members in macros.items() if wanted in members), None)
            target = tables.get(f"${macro}") if macro is not None else None
        table.notes.append(
            f"queue-to {other} ({loc}): settings copied from [domain.{toml_out.string(other)}];"
            " mx-rollup shares the queue when the MX hosts are the same"
        )
        if target is None:
            state.warnings.append(f"{loc}: queue-to {other}: no <domain {other}> to copy from")
            continue
        for key, value in target.values.items():
            table.values.setdefault(key, value)


def _source(state: _State, node: Block) -> None:
    arg = node.arg.strip()
    network = None if arg.startswith("{") else _network(arg)
    if network is None and not arg.startswith("{"):
        state.skip(node.loc, node.text, f"source {arg!r} is not a network", None)
        return
    directives = [c for c in node.children if isinstance(c, Directive)]
    state.sources.append(_Source(network, arg, node.loc, directives))


def _vmta(state: _State, node: Block) -> None:
    name = node.arg.strip()
    if not _NAME.fullmatch(name):
        state.skip(node.loc, node.text, "not a usable virtual MTA name", None)
        return
    entry = state.vmtas.setdefault(name, (node.loc, {}, []))
    settings, notes = entry[1], entry[2]
    ip = ehlo = None
    for child in node.children:
        if isinstance(child, Block):
            _domain_block(state, child, name)
            continue
        if child.name == "smtp-source-host":
            parts = child.value.split()
            ip, ehlo = parts[0], (parts[1] if len(parts) > 1 else ehlo)
        elif child.name == "smtp-source-ip":
            ip = child.value.split()[0] if child.value.split() else None
        elif child.name == "host-name":
            ehlo = child.value.strip()
        elif child.name == "domain-key":
            _domain_key(state, child)
        else:
            state.skip(child.loc, child.text, "no Outrider equivalent", notes)
    if ip is not None:
        source = f"{ip} {ehlo}" if ehlo else ip
        spec = keys_of(_vmta_class())["smtp-source-host"][1]
        if _checked(spec, source) is None:
            state.skip(node.loc, f"smtp-source-host {source}", "not 'IP [EHLO-NAME]'", notes)
        else:
            settings["smtp-source-host"] = source


def _vmta_class() -> type:
    from outrider.config.model import VirtualMta

    return VirtualMta


def _pool(state: _State, node: Block) -> None:
    name = node.arg.strip()
    if not _NAME.fullmatch(name):
        state.skip(node.loc, node.text, "not a usable pool name", None)
        return
    members: list[tuple[str, Location]] = []
    notes: list[str] = []
    for child in node.children:
        if isinstance(child, Directive) and child.name == "virtual-mta":
            members.append((child.value.strip(), child.loc))
        else:
            state.skip(child.loc, child.text, "no Outrider equivalent", notes)
    state.pools[name] = (node.loc, members, notes)


def _patterns(state: _State, node: Block) -> None:
    name = node.arg.strip()
    rules: list[tuple[str, str]] = []
    notes: list[str] = []
    for child in node.children:
        if not isinstance(child, Directive) or child.name != "reply":
            state.skip(child.loc, child.text, "only 'reply' patterns are translated", notes)
            continue
        parsed = _pattern(child.value)
        if parsed is None:
            state.skip(child.loc, child.text, "not '/regex/ ACTION' with a valid regex", notes)
            continue
        regex, actions = parsed
        other = [a for a in actions if a.lower() not in _PATTERN_ACTIONS]
        for action in actions:
            if action.lower() in _PATTERN_ACTIONS:
                rules.append((regex, action.lower()))
        if other:
            state.skip(child.loc, child.text, f"action {' '.join(other)} not supported", notes)
    state.patterns[name] = (node.loc, rules, notes)


def _smtp_user(state: _State, node: Block) -> None:
    name = node.arg.strip()
    for child in node.children:
        if isinstance(child, Directive) and child.name != "password":
            state.skip(child.loc, child.text, "no Outrider equivalent for this user setting", None)
    state.user_commands.append(
        f"outrider user add {shlex.quote(name)}   "
        f"# {node.loc}: the password is in the PowerMTA file; type it when asked"
    )


def _listener_sections(state: _State) -> list[Section]:
    listeners = state.listeners or [("0.0.0.0:25", Location(Path("(default)"), 0))]
    relaying = [
        s for s in state.sources if s.network is not None and s.flag("always-allow-relaying")
    ]
    networks = list(dict.fromkeys(s.network for s in relaying if s.network is not None))
    everyone = [s for s in state.sources if s.network in ("0.0.0.0/0", "::/0")]
    trusted = relaying + [s for s in everyone if s not in relaying]
    per_listener: dict[str, object] = {}
    notes: list[str] = []
    if "0.0.0.0/0" in networks or "::/0" in networks:
        state.warnings.append("a <source 0/0> allows relaying: this is an open relay")
    for source in state.sources:
        _source_settings(state, source, trusted, per_listener, notes)
    sections = []
    for index, (address, loc) in enumerate(listeners):
        section = Section("[[listener]]")
        if loc.line:
            section.note(f"from smtp-listener ({loc})")
        else:
            section.note("PowerMTA's default smtp-listener 0/0:25")
        section.set("address", address)
        section.set("relay-networks", networks)
        for key, value in per_listener.items():
            section.set(key, value)
        if index == 0:
            section.lines.extend(toml_out.comment(n) for n in notes)
        sections.append(section)
    return sections


def _source_settings(
    state: _State,
    source: _Source,
    trusted: list[_Source],
    out: dict[str, object],
    notes: list[str],
) -> None:
    """A source's settings that Outrider keeps per listener apply to every listener,
    only when the source is 0/0 or a relaying one (whose clients are trusted)."""
    everyone = source.network in ("0.0.0.0/0", "::/0")
    for d in source.directives:
        if d.name == "always-allow-relaying":
            if source.network is None and _bool(d.value):
                notes.append(
                    f"{d.loc}: <source {source.arg}> {d.text}: authenticated clients may relay"
                )
            continue
        if d.name == "smtp-service":
            if _bool(d.value) is False:
                state.skip(d.loc, d.text, "Outrider cannot refuse SMTP per client network", notes)
            continue
        key = {
            "process-x-virtual-mta": "process-x-virtual-mta",
            "default-virtual-mta": "default-virtual-mta",
            "max-message-size": "max-message-size",
        }.get(d.name)
        if key is None or source.network is None:
            state.skip(d.loc, d.text, f"no Outrider equivalent in <source {source.arg}>", notes)
            continue
        if source not in trusted:
            state.skip(
                d.loc,
                d.text,
                f"Outrider sets {key} per listener;"
                f" <source {source.arg}> neither relays nor is 0/0",
                notes,
            )
            continue
        raw: object = _bool(d.value) if key == "process-x-virtual-mta" else d.value.strip()
        value = _checked(_LISTENER[key][1], raw)
        if value is None:
            state.skip(d.loc, d.text, f"value not valid for {key}", notes)
            continue
        if key in out and out[key] != value:
            state.skip(d.loc, d.text, f"another <source> already set {key}", notes)
            continue
        out[key] = value
        if not everyone:
            notes.append(
                f"{d.loc}: <source {source.arg}> {d.text}: applies to every client of the listener"
            )


def _render(state: _State) -> str:
    sections: list[Section] = []
    top = Section(None)
    top.note("Generated by `outrider import-pmta`. Check it with `outrider check-config`.")
    sections.append(top)
    server = Section("[server]")
    for key in ("hostname", "postmaster", "spool-dir", "log-dir", "max-delivery-concurrency"):
        if key == "log-dir" and key not in state.server and state.acct_dir is not None:
            server.set(key, str(state.acct_dir[0]))
            continue
        if key in state.server:
            server.set(key, state.server[key])
    server.lines.extend(toml_out.comment(n) for n in state.server_notes)
    sections.append(server)
    sections.extend(_listener_sections(state))
    if state.relay_domains:
        relay = Section("[relay]")
        relay.set("domains", sorted(set(state.relay_domains)))
        sections.append(relay)
    if state.macros:
        macros = Section("[domain-macro]")
        for name, domains in state.macros.items():
            macros.set(name, domains)
        sections.append(macros)
    sections.extend(_domain_sections(state.domains.get("", {}), "domain"))
    for name, (loc, settings, notes) in state.vmtas.items():
        section = Section(f"[virtual-mta.{_table_key(name)}]")
        section.note(f"from <virtual-mta {name}> ({loc})")
        for key, value in settings.items():
            section.set(key, value)
        section.lines.extend(toml_out.comment(n) for n in notes)
        sections.append(section)
        prefix = f"virtual-mta.{_table_key(name)}.domain"
        sections.extend(_domain_sections(state.domains.get(name, {}), prefix))
    for name, (loc, members, notes) in state.pools.items():
        sections.append(_pool_section(state, name, loc, members, notes))
    for name, (loc, rules, notes) in state.patterns.items():
        section = Section(f"[smtp-pattern-list.{_table_key(name)}]")
        section.note(f"from <smtp-pattern-list {name}> ({loc})")
        if rules:
            section.lines.append("rules = [")
            for regex, action in rules:
                reply, act = toml_out.literal(regex), toml_out.string(action)
                section.lines.append(f"  {{ reply = {reply}, action = {act} }},")
            section.lines.append("]")
        else:
            section.lines.append('rules = [{ reply = "(?!)", action = "defer" }]')
            section.note("no rule could be translated; this one never matches")
        section.lines.extend(toml_out.comment(n) for n in notes)
        sections.append(section)
    if state.accounting or state.accounting_notes:
        acct = Section("[accounting]")
        for name, item in state.accounting.items():
            acct.set(name, item)
        acct.lines.extend(toml_out.comment(n) for n in state.accounting_notes)
        sections.append(acct)
    for entry, loc in state.dkim:
        section = Section("[[dkim]]")
        section.note(f"from domain-key ({loc})")
        for name, item in entry.items():
            section.set(name, item)
        sections.append(section)
    if state.other_notes:
        tail = Section(None)
        tail.note("Other PowerMTA settings")
        tail.lines.extend(toml_out.comment(n) for n in state.other_notes)
        sections.append(tail)
    return toml_out.render(sections)


def _domain_sections(tables: dict[str, _Domain], prefix: str) -> list[Section]:
    order = sorted(tables, key=lambda n: (n != "*", not n.startswith("*."), not n.startswith("$")))
    sections = []
    for name in order:
        table = tables[name]
        section = Section(f"[{prefix}.{toml_out.string(name)}]")
        section.note(f"from <domain> ({table.origin})")
        for key, value in table.values.items():
            section.set(key, value)
        section.lines.extend(toml_out.comment(n) for n in table.notes)
        sections.append(section)
    return sections


def _pool_section(
    state: _State, name: str, loc: Location, members: list[tuple[str, Location]], notes: list[str]
) -> Section:
    section = Section(f"[virtual-mta-pool.{_table_key(name)}]")
    section.note(f"from <virtual-mta-pool {name}> ({loc})")
    counts: dict[str, int] = {}
    for member, where in members:
        if member in state.vmtas or member == "default":
            counts[member] = counts.get(member, 0) + 1
        else:
            state.skip(where, f"virtual-mta {member}", "no such <virtual-mta>", notes)
    if not counts:
        counts["default"] = 1
        notes.append("no member could be translated; the pool sends through 'default'")
    section.set("virtual-mtas", list(counts))
    if any(c != 1 for c in counts.values()):
        section.set("weights", list(counts.values()))
        section.note("a member listed several times gets that weight")
    section.lines.extend(toml_out.comment(n) for n in notes)
    return section


def _check_references(state: _State) -> None:
    """Drop values naming a pattern list, virtual MTA or pool the output does not have,
    so the file still loads; each is reported like an untranslated directive."""
    senders = set(state.vmtas) | set(state.pools) | {"default"}
    for tables in state.domains.values():
        for table in tables.values():
            name = table.values.get("smtp-pattern-list")
            if name is not None and name not in state.patterns:
                del table.values["smtp-pattern-list"]
                state.skip(
                    table.origin,
                    f"smtp-pattern-list {name}",
                    "no such <smtp-pattern-list> was translated",
                    table.notes,
                )
    for source in state.sources:
        for d in list(source.directives):
            if d.name == "default-virtual-mta" and d.value.strip() not in senders:
                source.directives.remove(d)
                state.skip(d.loc, d.text, "no such virtual MTA or pool", None)
