"""Load and validate the TOML config, reporting every problem as ``FILE:LINE: key: message``.

Each table's keys, kinds and defaults come from its declaration in
:mod:`outrider.config.model` (read by :class:`~outrider.config.reader.Reader`); this
module adds what one table cannot check alone: listener roles and TLS, duplicates,
references between tables and the layering of domain tables.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import re
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar, cast

from outrider.config import model as m
from outrider.config.kinds import Invalid, keys_of, type_name
from outrider.config.layers import DEFAULT_POLICY_KEY, EMPTY, DomainLayers, resolve
from outrider.config.locator import KeyLocator, KeyPath, format_key_path
from outrider.config.model import Config, ConfigError, Problem
from outrider.config.reader import Reader
from outrider.config.units import normalize_domain
from outrider.local.aliases_file import (
    AliasError,
    check_name,
    read_aliases,
    read_mailboxes,
    read_members,
)
from outrider.policy.bounce_category import RulesFileError, read_rules

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

T = TypeVar("T")
_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_TOML_AT_END = re.compile(r"\s*\(at end of document\)\s*$")
_SHARED = "virtual MTAs and pools share one namespace"
_VMTA = ("virtual MTA or pool", "define it as [virtual-mta.NAME] or [virtual-mta-pool.NAME]")
Macros = Mapping[str, frozenset[str]]


def known_keys() -> dict[str, tuple[str, ...]]:
    """Keys accepted per table.

    ``listener`` is [[listener]]; ``domain``, ``virtual-mta``, ``virtual-mta-pool``,
    ``smtp-pattern-list`` and ``sender-domain`` are ``[TABLE."NAME"]``;
    ``smtp-pattern-list.rules`` are the keys of one rule. ``[domain-macro]`` takes
    any macro name, and ``[virtual-mta.NAME.domain."…"]`` the ``domain`` keys.
    """
    return {name: tuple(keys_of(cls)) for name, cls in m.DECLARED.items()}


def _settings(cls: type[T], values: Mapping[str, Any]) -> T:
    """``cls(**values)`` with relative paths, defaults included, made absolute."""
    made: Any = cls(**values)
    paths = {f.name: v for f in fields(made) if isinstance(v := getattr(made, f.name), Path)}
    return cast(T, replace(made, **{name: Path.cwd() / v for name, v in paths.items()}))


def _is_loopback(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host == "localhost"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


class _Loader(Reader):
    """The checks across keys and tables, and the assembly of :class:`Config`."""

    def build(self, data: Mapping[str, Any], source: Path | None) -> Config:
        for key in data:
            if key not in m.TABLES:
                self.unknown((), key, m.TABLES, data[key])
        server = self.section(data, "server", m.ServerSettings)
        dns = self.section(data, "dns", m.DnsSettings)
        relay = self.section(data, "relay", m.RelaySettings)
        auth = self.section(data, "auth", m.AuthSettings)
        mta_sts = self.section(data, "mta-sts", m.MtaStsSettings)
        http = self.section(data, "http", m.HttpSettings)
        accounting = self.section(data, "accounting", m.AccountingSettings)
        suppression = self.section(data, "suppression", m.SuppressionSettings)
        srs = self.section(data, "srs", m.SrsSettings)
        event_log = self.section(data, "event-log", m.EventLogSettings)
        webhooks = self.webhooks(data.get("webhook"))
        bounce_categories = self.section(data, "bounce-categories", m.BounceCategorySettings)
        self.bounce_rules(bounce_categories.get("rules_file"))
        if auth.get("password_hash") == "argon2id" and importlib.util.find_spec("argon2") is None:
            self.problem(
                ("auth", "password-hash"),
                "'argon2id' needs the argon2-cffi package, which is not installed; use 'scrypt'",
            )
        macros = self.macros(data.get("domain-macro"))
        pattern_lists = self.pattern_lists(data)
        domains = self.domain_tables(("domain",), data.get("domain"), macros, pattern_lists)
        hostname = server.get("hostname") or m.ServerSettings().hostname
        explicit = self.virtual_mtas(data, hostname, macros, pattern_lists)
        vmtas = {m.DEFAULT_VMTA: m.VirtualMta(m.DEFAULT_VMTA, None, hostname)} | explicit
        pools = self.pools(data, vmtas, explicit)
        selectable = frozenset((*vmtas, *pools))
        if "default_virtual_mta" in server:
            path: KeyPath = ("server", "default-virtual-mta")
            self.reference(path, server["default_virtual_mta"], selectable, *_VMTA)
        listeners = self.listeners(data.get("listener"), selectable)
        senders = self.sender_domains(data.get("sender-domain"), selectable)
        local_domains = self.local_domains(data.get("local-domain"))
        bounce_domains = self.bounce_domains(data.get("bounce-domain"), local_domains)
        lists = self.lists(data.get("list"), local_domains)
        dkim = self.dkim(data.get("dkim"))
        unsubscribe = self.section(data, "unsubscribe", m.UnsubscribeSettings)
        self.unsubscribe(unsubscribe, data)
        cluster = self.section(data, "cluster", m.ClusterSettings)
        self.raise_problems()
        macro_of = {domain: name for name, members in macros.items() for domain in members}
        policies = {
            name: resolve(m.BUILTIN_POLICY, (domains,), name, macro_of.get(name))
            for name in (DEFAULT_POLICY_KEY, *domains.exact)
        }
        return Config(
            source=source,
            server=_settings(m.ServerSettings, server),
            dns=_settings(m.DnsSettings, dns),
            listeners=tuple(_settings(m.ListenerSettings, fields) for fields in listeners),
            relay=_settings(m.RelaySettings, relay),
            domains=MappingProxyType(policies),
            domain_macros=MappingProxyType(macros),
            domain_layers=domains,
            virtual_mtas=MappingProxyType(vmtas),
            vmta_pools=MappingProxyType(pools),
            pattern_lists=MappingProxyType(pattern_lists),
            sender_domains=MappingProxyType(senders),
            auth=_settings(m.AuthSettings, auth),
            mta_sts=_settings(m.MtaStsSettings, mta_sts),
            http=_settings(m.HttpSettings, http),
            accounting=_settings(m.AccountingSettings, accounting),
            suppression=_settings(m.SuppressionSettings, suppression),
            local_domains=MappingProxyType(local_domains),
            lists=MappingProxyType(lists),
            srs=_settings(m.SrsSettings, srs),
            bounce_domains=MappingProxyType(bounce_domains),
            webhooks=tuple(_settings(m.WebhookSettings, fields) for fields in webhooks),
            event_log=_settings(m.EventLogSettings, event_log),
            bounce_categories=_settings(m.BounceCategorySettings, bounce_categories),
            dkim=tuple(dkim),
            unsubscribe=_settings(m.UnsubscribeSettings, unsubscribe),
            cluster=_settings(m.ClusterSettings, cluster),
        )

    def unsubscribe(self, fields: Mapping[str, Any], data: Mapping[str, Any]) -> None:
        """``mailto`` must reach a bounce domain, whose consumer reads the unsubscribe
        mails;
        ``sender-domains`` without ``url`` or ``mailto`` would promise headers never added."""
        mailto = fields.get("mailto")
        if mailto is not None:
            tables = data.get("bounce-domain")
            known = {
                str(name).lower().rstrip(".")
                for name in (tables if isinstance(tables, Mapping) else {})
            }
            if mailto.rpartition("@")[2].lower().rstrip(".") not in known:
                listed = ", ".join(sorted(known)) or "none is configured"
                self.problem(
                    ("unsubscribe", "mailto"),
                    f"must be an address at a [bounce-domain] ({listed}), whose consumer "
                    "reads the unsubscribe mails",
                )
        if fields.get("sender_domains") and "url" not in fields and mailto is None:
            self.problem(
                ("unsubscribe", "sender-domains"),
                "needs url or mailto: without them no List-Unsubscribe header can be added",
            )

    def webhooks(self, value: object) -> list[dict[str, Any]]:
        """The ``[[webhook]]`` tables (none is fine), each name once."""
        if value is None:
            return []
        if not isinstance(value, list):
            wrong = f"expected an array of tables ([[webhook]]), got {type_name(value)}"
            self.problem(("webhook",), wrong)
            return []
        out: list[dict[str, Any]] = []
        seen: dict[str, int] = {}
        for index, entry in enumerate(value):
            path: KeyPath = ("webhook", index)
            table = self.table(path, entry)
            fields = {} if table is None else self.fields(path, table, m.WebhookSettings)
            name = fields.get("name")
            if name is not None and (not name or "/" in name or name.startswith(".")):
                self.problem((*path, "name"), f"must be a non-empty file name, got {name!r}")
                continue
            if name is not None and (first := seen.setdefault(name, index)) != index:
                where = f"(also webhook[{first}])"
                self.problem((*path, "name"), f"duplicate webhook name {name!r} {where}")
                continue
            if table is not None and {"name", "url", "secret_file"} <= fields.keys():
                out.append(fields)
        return out

    def listeners(self, value: object, vmtas: Collection[str]) -> list[dict[str, Any]]:
        if not isinstance(value, list) or not value:
            wrong = f"expected an array of tables ([[listener]]), got {type_name(value)}"
            required = "at least one [[listener]] table is required"
            self.problem(("listener",), wrong if value not in (None, []) else required)
            return []
        out: list[dict[str, Any]] = []
        seen: dict[tuple[str, int], int] = {}
        for index, entry in enumerate(value):
            path: KeyPath = ("listener", index)
            table = self.table(path, entry)
            fields = {} if table is None else self.fields(path, table, m.ListenerSettings)
            if table is None or "address" not in fields:
                continue
            address = fields["address"]
            # Port 0 asks the kernel for a fresh port: never a clash.
            if address[1] != 0 and (first := seen.setdefault(address, index)) != index:
                self.problem(
                    (*path, "address"),
                    f"duplicate listener address {table['address']!r} "
                    f"(also listener[{first}].address)",
                )
            self.listener_security(path, table, fields)
            if "default_virtual_mta" in fields:
                where = (*path, "default-virtual-mta")
                self.reference(where, fields["default_virtual_mta"], vmtas, *_VMTA)
            out.append(fields)
        return out

    def listener_security(
        self, path: KeyPath, table: Mapping[str, Any], fields: dict[str, Any]
    ) -> None:
        """Fill the role-dependent defaults and reject combinations that cannot work."""
        role = fields.get("role", "mx")
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
        fields.setdefault("auth", role != "mx")
        fields.setdefault("add_missing_headers", role != "mx")
        plaintext = fields.get("allow_plaintext_auth", False)
        host = fields["address"][0]
        if plaintext and not _is_loopback(host):
            self.problem(
                (*path, "allow-plaintext-auth"),
                f"only allowed on a loopback address, not {host!r}: "
                "passwords would cross the network in clear",
            )
        elif fields["auth"] and tls == "none" and not plaintext and role != "submissions":
            where = next((k for k in ("auth", "role") if k in table), None)
            self.problem(
                path if where is None else (*path, where),
                "AUTH is only offered over TLS: set tls-cert and tls-key, "
                "or allow-plaintext-auth = true on a loopback address, or auth = false",
            )

    def macros(self, value: object) -> dict[str, frozenset[str]]:
        table = None if value is None else self.table(("domain-macro",), value)
        out: dict[str, frozenset[str]] = {}
        owner: dict[str, str] = {}
        for name, members in (table or {}).items():
            path: KeyPath = ("domain-macro", name)
            if not self.valid_name(path, name):
                continue
            try:
                domains = m.MACRO.convert(members)
            except Invalid as exc:
                self.invalid(path, exc)
                continue
            for index, domain in enumerate(domains):
                if (first := owner.setdefault(domain, name)) != name:
                    message = f"domain {domain!r} is in macros {first!r} and {name!r}"
                    self.problem((*path, index), message)
            out[name] = frozenset(domains)
        return out

    def domain_tables(
        self, path: KeyPath, value: object, macros: Macros, pattern_lists: Collection[str]
    ) -> DomainLayers:
        """Sort ``[…domain."X"]`` tables into the layers of :class:`DomainLayers`."""
        layers: dict[str, dict[str, Any]] = {"star": {}, "wildcard": {}, "macro": {}, "exact": {}}
        origin: dict[tuple[str, str], str] = {}
        for name, entry_path, table in self.entries(path, value, keys_of(m.DomainPolicy)):
            selector = self.domain_selector(entry_path, name, macros)
            if selector is None or not self.once(path, name, selector, origin):
                continue
            fields = self.fields(entry_path, table, m.DomainPolicy)
            if "smtp_pattern_list" in fields:
                self.reference(
                    (*entry_path, "smtp-pattern-list"),
                    fields["smtp_pattern_list"],
                    pattern_lists,
                    "smtp-pattern-list",
                    "define it as [smtp-pattern-list.NAME]",
                )
            layer, key = selector
            layers[layer][key] = MappingProxyType(fields)
        star = layers["star"].get(DEFAULT_POLICY_KEY, EMPTY)
        wildcards, by_macro, exact = (
            MappingProxyType(layers[k]) for k in ("wildcard", "macro", "exact")
        )
        return DomainLayers(star, wildcards, by_macro, exact)

    def domain_selector(self, path: KeyPath, name: str, macros: Macros) -> tuple[str, str] | None:
        """(layer, key) for a domain table name: ``*``, ``$MACRO``, ``*.SUFFIX`` or a domain."""
        if name == DEFAULT_POLICY_KEY:
            return "star", name
        if name.startswith("$"):
            if name[1:] in macros:
                return "macro", name[1:]
            self.reference(path, name[1:], macros, "domain macro", "define it in [domain-macro]")
            return None
        layer, text = ("wildcard", name[2:]) if name.startswith("*.") else ("exact", name)
        if "*" in text:
            self.problem(path, f"invalid wildcard {name!r}; write '*' or '*.DOMAIN'")
            return None
        try:
            return layer, normalize_domain(text)
        except ValueError as exc:
            self.problem(path, str(exc))
            return None

    def pattern_lists(self, data: Mapping[str, Any]) -> dict[str, tuple[m.PatternRule, ...]]:
        out: dict[str, tuple[m.PatternRule, ...]] = {}
        for name, path, table in self.named(data, "smtp-pattern-list"):
            rules = self.fields(path, table, m.PatternList).get("rules")
            if rules is None:
                continue
            parsed: list[m.PatternRule] = []
            for index, rule in enumerate(rules):
                rule_path: KeyPath = (*path, "rules", index)
                rule_table = self.table(rule_path, rule)
                fields = (
                    {} if rule_table is None else self.fields(rule_path, rule_table, m.PatternRule)
                )
                if "regex" in fields and "action" in fields:
                    parsed.append(m.PatternRule(**fields, source=format_key_path(rule_path)))
            out[name] = tuple(parsed)
        return out

    def virtual_mtas(
        self, data: Mapping[str, Any], hostname: str, macros: Macros, lists: Collection[str]
    ) -> dict[str, m.VirtualMta]:
        out: dict[str, m.VirtualMta] = {}
        for name, path, table in self.named(data, "virtual-mta"):
            fields = self.fields(path, table, m.VirtualMta, extra=("domain",))
            source_ip, ehlo = fields.get("source_ip") or (None, None)  # from smtp-source-host
            layers = self.domain_tables((*path, "domain"), table.get("domain"), macros, lists)
            out[name] = m.VirtualMta(name, source_ip, ehlo or hostname, layers)
        return out

    def pools(
        self, data: Mapping[str, Any], vmtas: Collection[str], explicit: Collection[str]
    ) -> dict[str, m.VmtaPool]:
        named = self.named(data, "virtual-mta-pool")
        pools = {name for name, _, _ in named}
        out: dict[str, m.VmtaPool] = {}
        for name, path, table in named:
            if name in explicit:
                self.problem(path, f"{name!r} is already a virtual MTA; {_SHARED}")
            elif name in vmtas:
                self.problem(path, "the name 'default' is reserved for the default virtual MTA")
            fields = self.fields(path, table, m.VmtaPool)
            members: tuple[str, ...] | None = fields.get("members")
            if members is None:
                continue
            valid = True
            for index, member in enumerate(members):
                member_path: KeyPath = (*path, "virtual-mtas", index)
                if member in members[:index]:
                    self.problem(member_path, f"{member!r} is listed twice")
                    valid = False
                if member in vmtas:
                    continue
                valid = False
                if member in pools:
                    self.problem(member_path, f"{member!r} is a pool; pools contain virtual MTAs")
                else:
                    self.reference(member_path, member, vmtas, "virtual MTA")
            weights = fields.get("weights", None if "weights" in table else (1,) * len(members))
            if weights is not None and len(weights) != len(members):
                message = f"has {len(weights)} entries for {len(members)} virtual-mtas"
                self.problem((*path, "weights"), message)
            elif weights is not None and valid:
                out[name] = m.VmtaPool(name, members, weights)
        return out

    def sender_domains(
        self, value: object, vmtas: Collection[str]
    ) -> dict[str, m.SenderDomainSettings]:
        out: dict[str, m.SenderDomainSettings] = {}
        origin: dict[str, str] = {}
        for name, path, table in self.entries(("sender-domain",), value):
            try:
                domain = normalize_domain(name)
            except ValueError as exc:
                self.problem(path, str(exc))
                continue
            if not self.once(("sender-domain",), name, domain, origin):
                continue
            fields = self.fields(path, table, m.SenderDomainSettings)
            if "virtual_mta" in fields:
                self.reference((*path, "virtual-mta"), fields["virtual_mta"], vmtas, *_VMTA)
            out[domain] = m.SenderDomainSettings(**fields)
        return out

    def bounce_domains(
        self, value: object, local_domains: Collection[str]
    ) -> dict[str, m.BounceDomainSettings]:
        """``[bounce-domain."D"]``: a bounce domain's mail is consumed, so it cannot also
        be a local domain whose mail goes to mailboxes."""
        out: dict[str, m.BounceDomainSettings] = {}
        origin: dict[str, str] = {}
        for name, path, table in self.entries(("bounce-domain",), value):
            try:
                domain = normalize_domain(name)
            except ValueError as exc:
                self.problem(path, str(exc))
                continue
            if not self.once(("bounce-domain",), name, domain, origin):
                continue
            if domain in local_domains:
                self.problem(path, f"{domain} is also a [local-domain]: choose one")
                continue
            fields = self.fields(path, table, m.BounceDomainSettings)
            out[domain] = _settings(m.BounceDomainSettings, fields)
        return out

    def bounce_rules(self, path: Path | None) -> None:
        """The administrator's bounce-category rules must parse: each bad line is a problem
        naming the rules file and its line."""
        if path is None:
            return
        try:
            read_rules(path)
        except RulesFileError as exc:
            for line, message in exc.problems:
                self.problem(("bounce-categories", "rules-file"), f"{exc.file}:{line}: {message}")
        except OSError as exc:
            self.problem(("bounce-categories", "rules-file"), f"cannot read {path}: {exc.strerror}")

    def local_domains(self, value: object) -> dict[str, m.LocalDomainSettings]:
        out: dict[str, m.LocalDomainSettings] = {}
        origin: dict[str, str] = {}
        for name, path, table in self.entries(("local-domain",), value):
            try:
                domain = normalize_domain(name)
            except ValueError as exc:
                self.problem(path, str(exc))
                continue
            if not self.once(("local-domain",), name, domain, origin):
                continue
            fields = self.fields(path, table, m.LocalDomainSettings)
            settings = _settings(m.LocalDomainSettings, fields)
            if not settings.maildir.startswith("/"):
                settings = replace(settings, maildir=str(Path.cwd() / settings.maildir))
            listed = settings.mailboxes is not None or settings.mailboxes_file is not None
            if settings.transport.kind == "maildir" and not listed:
                self.problem(
                    path,
                    "a Maildir domain needs 'mailboxes' or 'mailboxes-file' (which addresses"
                    " exist); only an LMTP domain may leave that to its server",
                )
            for key, file, read in (
                ("mailboxes-file", settings.mailboxes_file, read_mailboxes),
                ("aliases-file", settings.aliases_file, read_aliases),
            ):
                if file is not None:
                    try:
                        read(file)
                    except AliasError as exc:
                        self.problem((*path, key), str(exc))
            out[domain] = settings
        return out

    def lists(
        self, value: object, local: Mapping[str, m.LocalDomainSettings]
    ) -> dict[str, m.ListSettings]:
        out: dict[str, m.ListSettings] = {}
        for name, path, table in self.entries(("list",), value):
            local_part, at, domain = name.rpartition("@")
            try:
                address = f"{local_part.lower()}@{normalize_domain(domain)}"
                if not at or check_name(local_part):
                    raise ValueError(f"a list is named by its address, got {name!r}")
            except ValueError as exc:
                self.problem(path, str(exc))
                continue
            if address.rpartition("@")[2] not in local:
                self.problem(
                    path,
                    f'{domain} is not a local domain: add a [local-domain."{domain}"] table',
                )
            if address in out:
                self.problem(path, f"{address} is defined twice")
                continue
            fields = self.fields(path, table, m.ListSettings)
            settings = _settings(m.ListSettings, fields)
            if settings.members_file is not None:
                try:
                    read_members(settings.members_file)
                except AliasError as exc:
                    self.problem((*path, "members-file"), str(exc))
            elif not settings.members:
                self.problem(path, "a list needs 'members' or 'members-file'")
            out[address] = settings
        return out

    def dkim(self, value: object) -> list[m.DkimSettings]:
        """The ``[[dkim]]`` entries, each with its private key loaded and checked."""
        from outrider.dkim.keys import DkimKeyError, load_private_key

        if value is None:
            return []
        if not isinstance(value, list):
            self.problem(
                ("dkim",), f"expected an array of tables ([[dkim]]), got {type_name(value)}"
            )
            return []
        out: list[m.DkimSettings] = []
        seen: dict[tuple[str, str], int] = {}
        for index, entry in enumerate(value):
            path: KeyPath = ("dkim", index)
            table = self.table(path, entry)
            fields = {} if table is None else self.fields(path, table, m.DkimSettings)
            needed = ("domain", "selector", "key_file")
            if table is None or any(name not in fields for name in needed):
                continue
            settings = _settings(m.DkimSettings, fields)
            if not _SELECTOR.fullmatch(settings.selector):
                self.problem((*path, "selector"), f"not a valid selector: {settings.selector!r}")
            pair = (settings.domain, settings.selector.lower())
            if (first := seen.setdefault(pair, index)) != index:
                self.problem(
                    (*path, "selector"),
                    f"selector {settings.selector!r} of {settings.domain} is also dkim[{first}]'s",
                )
            if settings.headers is not None and "from" not in settings.headers:
                self.problem((*path, "headers"), "the signed headers must include 'From'")
            try:
                key = load_private_key(settings.key_file, settings.algorithm)
            except DkimKeyError as exc:
                self.problem((*path, "key-file"), f"{settings.key_file}: {exc}")
                continue
            except OSError as exc:
                reason = exc.strerror or str(exc)
                self.problem((*path, "key-file"), f"{settings.key_file}: cannot read: {reason}")
                continue
            out.append(replace(settings, private_key=key))
        return out


_SELECTOR = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
)


def _syntax_problem(exc: tomllib.TOMLDecodeError, text: str, filename: str) -> Problem:
    message = str(exc)
    line = 1
    if (match := _TOML_POSITION.search(message)) is not None:
        line = int(match.group(1))
        message = f"{message[: match.start()]} (column {match.group(2)})"
    elif (match := _TOML_AT_END.search(message)) is not None:
        line = max(1, text.count("\n") + (not text.endswith("\n")))  # not splitlines: U+2028...
        message = f"{message[: match.start()]} (at end of file)"
    return Problem(filename, line, "syntax", message)


def parse_config(text: str, filename: str = "<string>", *, source: Path | None = None) -> Config:
    """Parse config text; ``filename`` only labels problems. Raises :class:`ConfigError`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([_syntax_problem(exc, text, filename)]) from None
    except RecursionError:  # tomllib recurses once per nested array or inline table
        raise ConfigError([Problem(filename, 1, "syntax", "nested too deeply")]) from None
    return _Loader(text, filename).build(data, source)


def load_config(path: Path | str) -> Config:
    """Read and validate a config file. Unreadable files are reported as ``FILE:0: file: ...``."""
    source = Path(path)
    try:
        raw = source.read_bytes()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError([Problem(str(path), 0, "file", f"cannot read: {reason}")]) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        problem = Problem(str(path), line, "encoding", f"not valid UTF-8: {exc.reason}")
        raise ConfigError([problem]) from None
    return parse_config(text, str(path), source=source)
