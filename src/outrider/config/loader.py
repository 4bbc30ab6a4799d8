"""Load and validate the TOML config, reporting every problem as ``FILE:LINE: key: message``.

Problems are collected as key paths and only located (see
:mod:`outrider.config.locator`) when there is something to report, so a valid
config costs one ``tomllib.loads`` plus conversion.
"""

from __future__ import annotations

import difflib
import importlib.util
import ipaddress
import re
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from outrider.config import convert as c
from outrider.config import schema, units
from outrider.config.locator import KeyLocator, KeyPath, format_key_path
from outrider.config.model import (
    DEFAULT_POLICY_KEY,
    DEFAULT_VMTA,
    AuthSettings,
    Config,
    ConfigError,
    DnsSettings,
    DomainLayers,
    ListenerSettings,
    MtaStsSettings,
    PatternRule,
    Problem,
    RelaySettings,
    SenderDomainSettings,
    ServerSettings,
    VirtualMta,
    VmtaPool,
)
from outrider.config.policy import resolve
from outrider.config.schema import Field, known_keys

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

_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_TOML_AT_END = re.compile(r"\s*\(at end of document\)\s*$")
# Names of macros, virtual MTAs, pools and pattern lists: they appear in headers and logs.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_NAME_HINT = "use letters, digits, '-', '_' and '.', starting with a letter or digit"
_DOMAIN_TABLE_HINT = '; policy keys go in [domain."*"] or [domain."NAME"], not [domain]'


class _Loader:
    """One validation pass: collects problems instead of stopping at the first."""

    def __init__(self, text: str, filename: str) -> None:
        self._text = text
        self._filename = filename
        self._found: list[tuple[KeyPath, str]] = []

    # ----------------------------------------------------------------- generic helpers

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
            self.problem(path, f"expected a table, got {c.type_name(value)}")
            return None
        return value

    def fields(
        self,
        path: KeyPath,
        table: Mapping[str, Any],
        spec: Mapping[str, Field],
        handled: Collection[str] = (),
    ) -> dict[str, Any]:
        """Convert the keys present in ``table``; only explicitly set keys are returned.

        Keys in ``handled`` are the caller's business: skipped, but suggested for typos.
        """
        out: dict[str, Any] = {}
        for key, value in table.items():
            if key in handled:
                continue
            field = spec.get(key)
            if field is None:
                self.unknown(path, key, (*spec, *handled), value)
                continue
            try:
                out[field.name] = field.convert(value)
            except c.Invalid as exc:
                for at, message in exc.problems:
                    self.problem((*path, key, *at), message)
        return out

    def unknown(self, path: KeyPath, key: str, known: Collection[str], value: object) -> None:
        message = f"unknown key {key!r}"
        close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
        root = _domain_root(path)
        if close:
            message += f" (did you mean {close[0]!r}?)"
        elif root is not None and isinstance(value, dict):
            # [domain.example.net] parses as nested tables "example" > "net".
            name = ".".join(str(p) for p in (*path[root + 1 :], key))
            header = format_key_path((*path[: root + 1], name))
            message += f"; quote domain names that contain dots: [{header}]"
        self.problem((*path, key), message)

    def name(self, path: KeyPath, name: str) -> bool:
        if _NAME.fullmatch(name):
            return True
        self.problem(path, f"invalid name {name!r}; {_NAME_HINT}")
        return False

    def reference(
        self, path: KeyPath, name: str, known: Collection[str], what: str, hint: str = ""
    ) -> bool:
        """Check that ``name`` is one of ``known``; report with a suggestion otherwise."""
        if name in known:
            return True
        message = f"no {what} named {name!r}"
        close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
        if close:
            message += f" (did you mean {close[0]!r}?)"
        elif hint:
            message += f"; {hint}"
        self.problem(path, message)
        return False

    def section(
        self, data: Mapping[str, Any], name: str, spec: Mapping[str, Field]
    ) -> dict[str, Any]:
        if name not in data:
            return {}
        table = self.table((name,), data[name])
        return {} if table is None else self.fields((name,), table, spec)

    def named_tables(self, data: Mapping[str, Any], name: str) -> dict[str, dict[str, Any]]:
        """``[name."X"]`` tables with a valid X, in file order."""
        if name not in data:
            return {}
        table = self.table((name,), data[name])
        if table is None:
            return {}
        out: dict[str, dict[str, Any]] = {}
        for key, entry in table.items():
            path: KeyPath = (name, key)
            entry_table = self.table(path, entry)
            if entry_table is not None and self.name(path, key):
                out[key] = entry_table
        return out

    # ----------------------------------------------------------------- the whole file

    def build(self, data: Mapping[str, Any], source: Path | None) -> Config:
        for key in data:
            if key not in schema.TOP_LEVEL:
                self.unknown((), key, schema.TOP_LEVEL, data[key])
        server = self.section(data, "server", schema.SERVER)
        dns = self.section(data, "dns", schema.DNS)
        relay = self.section(data, "relay", schema.RELAY)
        auth = self.section(data, "auth", schema.AUTH)
        mta_sts = self.section(data, "mta-sts", schema.MTA_STS)
        self.check_password_hash(auth)
        macros = self.macros(data.get("domain-macro"))
        pattern_lists = self.pattern_lists(data)
        lists = frozenset(pattern_lists)
        domains = self.domain_tables(("domain",), data.get("domain"), macros, lists)
        hostname = server.get("hostname") or ServerSettings().hostname
        vmtas = self.virtual_mtas(data, hostname, macros, lists)
        pools = self.pools(data, vmtas)
        selectable = frozenset((*vmtas, *pools))
        if "default_virtual_mta" in server:
            path: KeyPath = ("server", "default-virtual-mta")
            self.vmta_reference(path, server["default_virtual_mta"], selectable)
        listeners = self.listeners(data.get("listener"), selectable)
        senders = self.sender_domains(data, selectable)
        problems = self.problems()
        if problems:
            raise ConfigError(problems)

        cwd = Path.cwd()
        settings = ServerSettings(**server)
        settings = replace(
            settings,
            spool_dir=cwd / settings.spool_dir,
            log_dir=cwd / settings.log_dir,
            state_dir=cwd / settings.state_dir,
        )
        auth_settings = AuthSettings(**auth)
        auth_settings = replace(auth_settings, users_file=cwd / auth_settings.users_file)
        macro_of = {domain: name for name, members in macros.items() for domain in members}
        policies = {
            name: resolve((domains,), name, macro_of.get(name))
            for name in (DEFAULT_POLICY_KEY, *domains.exact)
        }
        return Config(
            source=source,
            server=settings,
            dns=DnsSettings(**dns),
            listeners=tuple(ListenerSettings(**fields) for fields in listeners),
            relay=RelaySettings(**relay),
            domains=MappingProxyType(policies),
            domain_macros=MappingProxyType(macros),
            domain_layers=domains,
            virtual_mtas=MappingProxyType(vmtas),
            vmta_pools=MappingProxyType(pools),
            pattern_lists=MappingProxyType(pattern_lists),
            sender_domains=MappingProxyType(
                {name: SenderDomainSettings(**fields) for name, fields in senders.items()}
            ),
            auth=auth_settings,
            mta_sts=MtaStsSettings(**mta_sts),
        )

    # ----------------------------------------------------------------- listeners

    def listeners(self, value: object, vmtas: Collection[str]) -> list[dict[str, Any]]:
        if value is None:
            self.problem(("listener",), "at least one [[listener]] table is required")
            return []
        if not isinstance(value, list):
            self.problem(
                ("listener",),
                f"expected an array of tables ([[listener]]), got {c.type_name(value)}",
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
            fields = self.fields(path, table, schema.LISTENER)
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
            self.listener_security(path, table, fields)
            if "default_virtual_mta" in fields:
                vmta_path: KeyPath = (*path, "default-virtual-mta")
                self.vmta_reference(vmta_path, fields["default_virtual_mta"], vmtas)
            out.append(fields)
        return out

    def listener_security(
        self, path: KeyPath, table: Mapping[str, Any], fields: dict[str, Any]
    ) -> None:
        """Fill the role-dependent defaults and reject combinations that cannot work."""
        role = fields.get("role", "mx")
        submission = role != "mx"
        has_cert = "tls-cert" in table  # even if unreadable: that is reported already
        if has_cert != ("tls-key" in table):
            present = "tls-cert" if has_cert else "tls-key"
            self.problem((*path, present), "tls-cert and tls-key must be given together")
        if "tls" in fields:
            tls = fields["tls"]
            if tls != "none" and not has_cert:
                self.problem((*path, "tls"), f"tls = {tls!r} needs tls-cert and tls-key")
        else:
            tls = "none" if not has_cert else "implicit" if role == "submissions" else "starttls"
            fields["tls"] = tls
        if role == "submissions" and tls != "implicit" and "tls" not in table:
            self.problem(
                (*path, "role"),
                "role 'submissions' (TLS from the first byte) needs tls-cert and tls-key",
            )
        elif role == "submissions" and tls != "implicit":
            self.problem((*path, "tls"), "role 'submissions' needs tls = 'implicit'")
        fields.setdefault("auth", submission)
        fields.setdefault("add_missing_headers", submission)
        plaintext = fields.get("allow_plaintext_auth", False)
        host = fields["address"][0]
        if plaintext and not _is_loopback(host):
            self.problem(
                (*path, "allow-plaintext-auth"),
                f"only allowed on a loopback address, not {host!r}: "
                "passwords would cross the network in clear",
            )
        elif fields["auth"] and tls == "none" and not plaintext and role != "submissions":
            where = "auth" if "auth" in table else "role" if "role" in table else None
            self.problem(
                path if where is None else (*path, where),
                "AUTH is only offered over TLS: set tls-cert and tls-key, "
                "or allow-plaintext-auth = true on a loopback address, or auth = false",
            )

    def check_password_hash(self, auth: Mapping[str, Any]) -> None:
        if auth.get("password_hash") == "argon2id" and importlib.util.find_spec("argon2") is None:
            self.problem(
                ("auth", "password-hash"),
                "'argon2id' needs the argon2-cffi package, which is not installed; use 'scrypt'",
            )

    # ----------------------------------------------------------------- domains

    def macros(self, value: object) -> dict[str, frozenset[str]]:
        if value is None:
            return {}
        table = self.table(("domain-macro",), value)
        if table is None:
            return {}
        out: dict[str, frozenset[str]] = {}
        owner: dict[str, str] = {}
        for name, members in table.items():
            path: KeyPath = ("domain-macro", name)
            if not self.name(path, name):
                continue
            try:
                domains = c.array_of(c.domain, non_empty=True)(members)
            except c.Invalid as exc:
                for at, message in exc.problems:
                    self.problem((*path, *at), message)
                continue
            for index, domain in enumerate(domains):
                first = owner.setdefault(domain, name)
                if first != name:
                    self.problem(
                        (*path, index), f"domain {domain!r} is in macros {first!r} and {name!r}"
                    )
            out[name] = frozenset(domains)
        return out

    def domain_tables(
        self,
        path: KeyPath,
        value: object,
        macros: Mapping[str, frozenset[str]],
        pattern_lists: Collection[str],
    ) -> DomainLayers:
        """Sort ``[…domain."X"]`` tables into the layers of :class:`DomainLayers`."""
        if value is None:
            return DomainLayers()
        table = self.table(path, value)
        if table is None:
            return DomainLayers()
        layers: dict[str, dict[str, Any]] = {"star": {}, "wildcard": {}, "macro": {}, "exact": {}}
        origin: dict[tuple[str, str], str] = {}
        for name, entry in table.items():
            entry_path: KeyPath = (*path, name)
            if not isinstance(entry, dict):
                message = f"expected a table, got {c.type_name(entry)}"
                if name in schema.DOMAIN:
                    message += _DOMAIN_TABLE_HINT
                self.problem(entry_path, message)
                continue
            selector = self.domain_selector(entry_path, name, macros)
            if selector is None:
                continue
            if selector in origin:
                self.problem(
                    entry_path,
                    f"same domain as {format_key_path((*path, origin[selector]))}; "
                    "merge the two tables",
                )
                continue
            origin[selector] = name
            fields = self.fields(entry_path, entry, schema.DOMAIN)
            listed = fields.get("smtp_pattern_list")
            if listed is not None:
                self.reference(
                    (*entry_path, "smtp-pattern-list"),
                    listed,
                    pattern_lists,
                    "smtp-pattern-list",
                    "define it as [smtp-pattern-list.NAME]",
                )
            kind, key = selector
            layers[kind][key] = MappingProxyType(fields)
        star = layers["star"].get(DEFAULT_POLICY_KEY)
        return DomainLayers(
            star=MappingProxyType({}) if star is None else star,
            wildcards=MappingProxyType(layers["wildcard"]),
            macros=MappingProxyType(layers["macro"]),
            exact=MappingProxyType(layers["exact"]),
        )

    def domain_selector(
        self, path: KeyPath, name: str, macros: Mapping[str, frozenset[str]]
    ) -> tuple[str, str] | None:
        """(layer, key) for a domain table name: ``*``, ``$MACRO``, ``*.SUFFIX`` or a domain."""
        if name == DEFAULT_POLICY_KEY:
            return "star", name
        if name.startswith("$"):
            macro = name[1:]
            if not self.reference(
                path, macro, macros, "domain macro", "define it in [domain-macro]"
            ):
                return None
            return "macro", macro
        kind, text = ("wildcard", name[2:]) if name.startswith("*.") else ("exact", name)
        if "*" in text:
            self.problem(path, f"invalid wildcard {name!r}; write '*' or '*.DOMAIN'")
            return None
        try:
            return kind, units.normalize_domain(text)
        except ValueError as exc:
            self.problem(path, str(exc))
            return None

    # ----------------------------------------------------------------- shaping objects

    def pattern_lists(self, data: Mapping[str, Any]) -> dict[str, tuple[PatternRule, ...]]:
        out: dict[str, tuple[PatternRule, ...]] = {}
        for name, table in self.named_tables(data, "smtp-pattern-list").items():
            path: KeyPath = ("smtp-pattern-list", name)
            self.fields(path, table, {}, handled=("rules",))
            rules = table.get("rules")
            if rules is None:
                self.problem(path, "missing required key 'rules'")
                continue
            if not isinstance(rules, list):
                self.problem((*path, "rules"), f"expected an array, got {c.type_name(rules)}")
                continue
            if not rules:
                self.problem((*path, "rules"), "must not be empty")
                continue
            parsed: list[PatternRule] = []
            for index, rule in enumerate(rules):
                rule_path: KeyPath = (*path, "rules", index)
                rule_table = self.table(rule_path, rule)
                if rule_table is None:
                    continue
                fields = self.fields(rule_path, rule_table, schema.PATTERN_RULE)
                missing = [k for k in ("reply", "action") if k not in rule_table]
                for key in missing:
                    self.problem(rule_path, f"missing required key {key!r}")
                if len(fields) - ("phase" in fields) == 2:
                    fields.setdefault("phase", "any")
                    parsed.append(PatternRule(source=format_key_path(rule_path), **fields))
            out[name] = tuple(parsed)
        return out

    def virtual_mtas(
        self,
        data: Mapping[str, Any],
        hostname: str,
        macros: Mapping[str, frozenset[str]],
        pattern_lists: Collection[str],
    ) -> dict[str, VirtualMta]:
        out = {DEFAULT_VMTA: VirtualMta(DEFAULT_VMTA, None, hostname)}
        domain_key = schema.VIRTUAL_MTA_DOMAIN_KEY
        for name, table in self.named_tables(data, "virtual-mta").items():
            path: KeyPath = ("virtual-mta", name)
            fields = self.fields(path, table, schema.VIRTUAL_MTA, handled=(domain_key,))
            source_ip, ehlo = fields.get("source_host", (None, None))
            layers = self.domain_tables(
                (*path, domain_key), table.get(domain_key), macros, pattern_lists
            )
            out[name] = VirtualMta(name, source_ip, ehlo or hostname, layers)
        return out

    def pools(
        self, data: Mapping[str, Any], vmtas: Mapping[str, VirtualMta]
    ) -> dict[str, VmtaPool]:
        tables = self.named_tables(data, "virtual-mta-pool")
        out: dict[str, VmtaPool] = {}
        for name, table in tables.items():
            path: KeyPath = ("virtual-mta-pool", name)
            fields = self.fields(path, table, schema.VMTA_POOL)
            if name in vmtas:
                if name == DEFAULT_VMTA and "default" not in data.get("virtual-mta", {}):
                    message = "the name 'default' is reserved for the default virtual MTA"
                else:
                    message = (
                        f"{name!r} is already a virtual MTA; "
                        "virtual MTAs and pools share one namespace"
                    )
                self.problem(path, message)
            members: tuple[str, ...] | None = fields.get("members")
            if members is None:
                if "virtual-mtas" not in table:
                    self.problem(path, "missing required key 'virtual-mtas'")
                continue
            valid = True
            seen: set[str] = set()
            for index, member in enumerate(members):
                member_path: KeyPath = (*path, "virtual-mtas", index)
                if member in seen:
                    self.problem(member_path, f"{member!r} is listed twice")
                    valid = False
                seen.add(member)
                if member in vmtas:
                    continue
                valid = False
                if member in tables:
                    self.problem(member_path, f"{member!r} is a pool; pools contain virtual MTAs")
                else:
                    self.reference(member_path, member, vmtas, "virtual MTA")
            weights: tuple[int, ...] | None = fields.get("weights")
            if weights is None:
                if "weights" in table:
                    continue
                weights = (1,) * len(members)
            elif len(weights) != len(members):
                self.problem(
                    (*path, "weights"),
                    f"has {len(weights)} entries for {len(members)} virtual-mtas",
                )
                continue
            if valid:
                out[name] = VmtaPool(name, members, weights)
        return out

    def sender_domains(
        self, data: Mapping[str, Any], vmtas: Collection[str]
    ) -> dict[str, dict[str, Any]]:
        if "sender-domain" not in data:
            return {}
        table = self.table(("sender-domain",), data["sender-domain"])
        if table is None:
            return {}
        out: dict[str, dict[str, Any]] = {}
        origin: dict[str, str] = {}
        for name, entry in table.items():
            path: KeyPath = ("sender-domain", name)
            entry_table = self.table(path, entry)
            if entry_table is None:
                continue
            try:
                domain = units.normalize_domain(name)
            except ValueError as exc:
                self.problem(path, str(exc))
                continue
            if domain in origin:
                self.problem(
                    path,
                    f"same domain as {format_key_path(('sender-domain', origin[domain]))}; "
                    "merge the two tables",
                )
                continue
            origin[domain] = name
            fields = self.fields(path, entry_table, schema.SENDER_DOMAIN)
            if "virtual_mta" in fields:
                self.vmta_reference((*path, "virtual-mta"), fields["virtual_mta"], vmtas)
            out[domain] = fields
        return out

    def vmta_reference(self, path: KeyPath, name: str, names: Collection[str]) -> None:
        """A virtual-MTA selector must name a virtual MTA or a pool."""
        hint = "define it as [virtual-mta.NAME] or [virtual-mta-pool.NAME]"
        self.reference(path, name, names, "virtual MTA or pool", hint)


def _domain_root(path: KeyPath) -> int | None:
    """Index of the ``domain`` key whose children are domain tables, if ``path`` is in one."""
    if path[:1] == ("domain",):
        return 0
    if len(path) > 2 and path[0] == "virtual-mta" and path[2] == schema.VIRTUAL_MTA_DOMAIN_KEY:
        return 2
    return None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


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
