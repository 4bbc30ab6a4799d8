"""``outrider import-postfix DIR``: translate a Postfix configuration into Outrider TOML.

Each translation step is a function reading the parsed parameters (``postfix_parse``)
and filling a :class:`~outrider.importers.toml_out.TomlDoc`; every main.cf parameter
and master.cf ``-o`` option is either translated, equal to Postfix's default, or kept as
a comment naming its file and line and listed in :attr:`Imported.unsupported`, so an
administrator sees exactly what did not carry over.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from outrider.importers.postfix_parse import (
    DEFAULTS,
    Param,
    Service,
    Table,
    expand,
    locate,
    parse_main_cf,
    parse_master_cf,
    read_table,
    split_list,
)
from outrider.importers.toml_out import TomlDoc, TomlTable, domain_header, duration

#: master.cf service names of the SMTP ports, and the role each port gets.
PORTS = {"smtp": 25, "submission": 587, "submissions": 465, "smtps": 465}
ROLE_BY_PORT = {25: "mx", 587: "submission", 465: "submissions"}

#: Parameters with nothing to translate: installation paths and housekeeping.
QUIET = frozenset(
    {
        "compatibility_level",
        "queue_directory",
        "command_directory",
        "daemon_directory",
        "data_directory",
        "mail_owner",
        "setgid_group",
        "sendmail_path",
        "newaliases_path",
        "mailq_path",
        "html_directory",
        "manpage_directory",
        "sample_directory",
        "readme_directory",
        "shlib_directory",
        "meta_directory",
        "biff",
        "append_dot_mydomain",
        "smtpd_tls_session_cache_database",
        "smtp_tls_session_cache_database",
        "smtpd_tls_loglevel",
        "smtp_tls_loglevel",
        "syslog_name",
        "maillog_file",
        "inet_protocols",
        "mydomain",
        "smtpd_tls_received_header",
        "smtpd_tls_session_cache_timeout",
        "tls_random_source",
    }
)

#: Why well-known parameters are not translated (prefix match on the name).
REASONS: tuple[tuple[str, str], ...] = (
    ("milter", "milters are not supported"),
    ("canonical_maps", "address rewriting is not supported"),
    ("generic_maps", "address rewriting is not supported"),
    (
        "_restrictions",
        "access restrictions: Outrider relays for relay-networks, AUTH and [relay] domains",
    ),
    ("smtpd_sasl_", "Outrider authenticates against its own users file (outrider user add)"),
    ("smtp_sasl_", "Outrider does not authenticate to a relayhost (no SMTP AUTH client)"),
    ("content_filter", "content filters are not supported"),
    ("header_checks", "header/body checks are not supported"),
    ("body_checks", "header/body checks are not supported"),
    ("alias_", "local(8) aliases of Unix users: put aliases in [local-domain] aliases"),
    ("mydestination", "local(8) delivery to Unix accounts is not supported; use [local-domain]"),
    ("home_mailbox", "local(8) delivery to Unix accounts is not supported"),
    ("virtual_mailbox_limit", "no per-message mailbox limit: use the local domain's quota"),
    ("mailbox_", "local(8) delivery to Unix accounts is not supported"),
    ("myorigin", "Outrider does not qualify bare addresses"),
    ("relay_recipient_maps", "Outrider does not check relay recipients"),
    ("postscreen_", "postscreen is not supported (Outrider has its own pregreet check)"),
    ("bounce_queue_lifetime", "Outrider has one lifetime for all mail (bounce-after)"),
    ("smtpd_", "no Outrider equivalent for this smtpd(8) setting"),
)

_TIME = re.compile(r"(\d+)([smhdw]?)")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True)
class Note:
    """Something not translated: where, what and why."""

    where: str
    what: str
    why: str

    def line(self) -> str:
        return f"{self.where}: {self.what}  ({self.why})"


@dataclass
class Imported:
    """The TOML text and what did not carry over."""

    toml: str
    unsupported: list[Note] = field(default_factory=list)
    quiet: list[Note] = field(default_factory=list)


def postfix_seconds(text: str, unit: str) -> int | None:
    """A Postfix time value (``300s``, ``5d``, ``1w``; ``unit`` when none is written)."""
    match = _TIME.fullmatch(text.strip())
    if match is None:
        return None
    return int(match.group(1)) * _UNITS[match.group(2) or unit]


def retry_schedule(minimal: int, maximal: int) -> list[str]:
    """Postfix doubles the wait from minimal_backoff_time up to maximal_backoff_time; the
    same as an explicit list whose last value repeats."""
    waits: list[str] = []
    wait = max(1, minimal)
    while wait < maximal and len(waits) < 16:
        waits.append(duration(wait))
        wait *= 2
    waits.append(duration(max(maximal, 1)))
    return waits


def network(text: str) -> str | None:
    """A mynetworks entry as an Outrider network (``[::1]/128`` → ``::1/128``); None
    for host names, files and tables."""
    value = re.sub(r"^\[([^\]]+)\]", r"\1", text.strip())
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        return None


class Translator:
    """One import: the parameters read, the document built, and the notes."""

    def __init__(self, config_dir: Path, params: dict[str, Param], services: list[Service]):
        self.dir = config_dir
        self.params = params
        self.services = services
        self.doc = TomlDoc()
        self.used: set[str] = set()
        self.notes: list[Note] = []
        self.quiet: list[Note] = []

    # -- reading -------------------------------------------------------------------
    def get(self, name: str, scope: dict[str, Param] | None = None) -> str:
        """The expanded value of ``name``: a master.cf override, main.cf, the default."""
        params = {**self.params, **(scope or {})}
        if name in params:
            return expand(params[name].value, params)
        return expand(DEFAULTS.get(name, ""), params)

    def setting(self, name: str, scope: dict[str, Param] | None = None) -> Param | None:
        """Where ``name`` is set explicitly (override first), marking it used."""
        self.used.add(name)
        if scope and name in scope:
            return scope[name]
        return self.params.get(name)

    def rebase(self, path: str) -> str:
        """A file under /etc/postfix as found in the imported directory (the same path
        on the server itself; the copy's when a copied directory is imported)."""
        return str(locate(path, self.dir).absolute()) if path.startswith("/etc/postfix/") else path

    def note(self, where: str, what: str, why: str) -> None:
        self.notes.append(Note(where, what, why))

    def table(self, ref: str, where: str) -> Table:
        read = read_table(ref, self.dir, where)
        if read.problem:
            self.note(where, ref, read.problem)
        return read

    def domain_list(self, param: Param) -> list[str]:
        """A Postfix domain list: names, ``/file`` names and ``type:table`` keys."""
        domains: list[str] = []
        for item in split_list(self.get(param.name)):
            if ":" in item:
                domains.extend(e.key.lower() for e in self.table(item, param.where).entries)
            elif item.startswith("/"):
                try:
                    text = locate(item, self.dir).read_text(encoding="utf-8")
                except OSError as exc:
                    self.note(param.where, item, f"cannot read: {exc.strerror}")
                    continue
                domains.extend(w.lower() for w in text.split() if not w.startswith("#"))
            else:
                domains.append(item.lower().rstrip("."))
        return list(dict.fromkeys(domains))

    # -- translation -----------------------------------------------------------------
    def run(self) -> Imported:
        server = self.doc.table("server")
        if (host := self.setting("myhostname")) is not None:
            server.set("hostname", self.get("myhostname"), host.where + " myhostname")
        self.listeners()
        relay = self.setting("relay_domains")
        if relay is not None:
            domains = [d for d in self.domain_list(relay) if d]
            if domains:
                self.doc.table("relay").set("domains", domains, relay.where + " relay_domains")
        self.default_domain()
        self.local_domains()
        self.transports()
        self.leftovers()
        return self.finish()

    def listeners(self) -> None:
        smtpd = [
            s for s in self.services if s.type == "inet" and s.command in ("smtpd", "postscreen")
        ]
        if not self.services:
            smtpd = [Service("smtp", "inet", "smtpd", (), {}, "main.cf", 0)]
        self.setting("inet_interfaces")
        for service in smtpd:
            for address in self.addresses(service):
                self.listener(service, address)

    def addresses(self, service: Service) -> list[str]:
        host, colon, port_text = service.service.rpartition(":")
        port = PORTS.get(port_text) or (int(port_text) if port_text.isdigit() else 0)
        if not 0 < port < 65536:
            self.note(service.where, service.service, "unknown service port")
            return []
        hosts = [host.strip("[]")] if colon else self.interfaces(service)
        return [f"[{h}]:{port}" if ":" in h else f"{h}:{port}" for h in hosts]

    def interfaces(self, service: Service) -> list[str]:
        hosts: list[str] = []
        for item in split_list(self.get("inet_interfaces", service.overrides)):
            if item == "all":
                hosts.append("0.0.0.0")
            elif item in ("loopback-only", "localhost"):
                hosts.append("127.0.0.1")
            else:
                hosts.append(item.strip("[]"))
        return list(dict.fromkeys(hosts)) or ["0.0.0.0"]

    def listener(self, service: Service, address: str) -> None:
        scope = service.overrides
        port = int(address.rpartition(":")[2])
        wrapper = self.get("smtpd_tls_wrappermode", scope) == "yes"
        self.setting("smtpd_tls_wrappermode", scope)
        sasl = self.get("smtpd_sasl_auth_enable", scope) == "yes"
        self.setting("smtpd_sasl_auth_enable", scope)
        role = "submissions" if wrapper else ROLE_BY_PORT.get(port, "submission" if sasl else "mx")
        table = self.doc.append_array("listener")
        table.comments.append(
            f"{service.where}: {service.service} {service.type} … {service.command}"
        )
        table.set("address", address)
        table.set("role", role)
        if service.command == "postscreen":
            self.note(
                service.where,
                "postscreen",
                "not supported; Outrider's mx role has its own pregreet check",
            )
        has_tls = self.listener_tls(table, scope, role, wrapper)
        if role == "mx":
            if sasl:
                if has_tls:
                    table.set("auth", True, "smtpd_sasl_auth_enable = yes")
                else:
                    self.note(
                        service.where,
                        "smtpd_sasl_auth_enable = yes",
                        "AUTH needs TLS in Outrider and no certificate is set",
                    )
            self.relay_networks(table, scope)
        else:
            table.set(
                "relay-networks", [], "submission: AUTH required, as permit_sasl_authenticated"
            )
            self.setting("mynetworks", scope)
            if not has_tls:
                table.commented_out = True
                table.comments.append(
                    "Not enabled: Outrider offers AUTH only over TLS and no certificate is set."
                )
                self.note(
                    service.where,
                    service.service,
                    "submission without smtpd_tls_cert_file: listener left commented out",
                )
        self.listener_limits(table, scope)
        for name, param in scope.items():
            if name not in self.used:
                note = Note(param.where, f"-o {name}={param.value}", reason(name))
                (self.quiet if name in QUIET else self.notes).append(note)

    def listener_tls(
        self, table: TomlTable, scope: dict[str, Param], role: str, wrapper: bool
    ) -> bool:
        cert_param = self.setting("smtpd_tls_cert_file", scope)
        key_param = self.setting("smtpd_tls_key_file", scope)
        level_param = self.setting("smtpd_tls_security_level", scope)
        use = self.setting("smtpd_use_tls", scope)
        enforce = self.setting("smtpd_enforce_tls", scope)
        level = self.get("smtpd_tls_security_level", scope)
        if not level:
            level = "encrypt" if enforce and self.get("smtpd_enforce_tls", scope) == "yes" else ""
            level = level or (
                "may" if use and self.get("smtpd_use_tls", scope) == "yes" else "none"
            )
        cert = self.get("smtpd_tls_cert_file", scope)
        key = self.get("smtpd_tls_key_file", scope) or cert
        self.setting("smtpd_tls_chain_files", scope)
        if not cert:
            chain = split_list(self.get("smtpd_tls_chain_files", scope))
            if len(chain) >= 2:
                key, cert = chain[0], chain[1]
            elif len(chain) == 1:
                key = cert = chain[0]
        if not cert or (level == "none" and not wrapper):
            return False
        cert, key = self.rebase(cert), self.rebase(key)
        where = cert_param.where if cert_param else ""
        table.set("tls-cert", cert, f"{where} smtpd_tls_cert_file".strip())
        table.set("tls-key", key, f"{key_param.where} smtpd_tls_key_file" if key_param else "")
        if role == "mx" and level == "encrypt":
            source = level_param or enforce or cert_param
            self.note(
                source.where if source else "main.cf",
                "smtpd_tls_security_level = encrypt",
                "Outrider offers STARTTLS on port 25 but cannot require it",
            )
        for name in ("smtpd_tls_protocols", "smtpd_tls_mandatory_protocols"):
            param = self.setting(name, scope)
            if param is not None:
                version = tls_min_version(self.get(name, scope))
                if version:
                    table.set("tls-min-version", version, f"{param.where} {name}")
        return True

    def relay_networks(self, table: TomlTable, scope: dict[str, Param]) -> None:
        param = self.setting("mynetworks", scope)
        if param is None:
            return
        networks: list[str] = []
        for item in split_list(self.get("mynetworks", scope)):
            net = network(item)
            if net is None:
                self.note(
                    param.where, f"mynetworks {item}", "only addresses and CIDRs are imported"
                )
            elif net not in networks:
                networks.append(net)
        table.set("relay-networks", networks, f"{param.where} mynetworks")

    def listener_limits(self, table: TomlTable, scope: dict[str, Param]) -> None:
        size = self.setting("message_size_limit", scope)
        if size is not None:
            value = self.get("message_size_limit", scope)
            if value.isdigit() and int(value) > 0:
                table.set("max-message-size", int(value), f"{size.where} message_size_limit")
            else:
                self.note(
                    size.where, f"message_size_limit = {value}", "Outrider always has a limit"
                )
        plain = {
            "smtpd_recipient_limit": "max-rcpt-per-message",
            "smtpd_hard_error_limit": "max-errors",
            "smtpd_client_connection_count_limit": "max-connections-per-client",
        }
        for name, key in plain.items():
            param = self.setting(name, scope)
            value = self.get(name, scope)
            if param is not None and value.isdigit():
                number = int(value)
                if number or key == "max-connections-per-client":
                    table.set(key, number, f"{param.where} {name}")
        rate = self.setting("smtpd_client_connection_rate_limit", scope)
        if rate is not None:
            value = self.get("smtpd_client_connection_rate_limit", scope)
            unit = postfix_seconds(self.get("anvil_rate_time_unit") or "60s", "s") or 60
            self.used.add("anvil_rate_time_unit")
            if value.isdigit():
                text = "unlimited" if value == "0" else f"{value}/{duration(unit)}"
                text = text.replace("/1m", "/m") if text.endswith("/1m") else text
                table.set(
                    "max-connect-rate-per-client",
                    text,
                    f"{rate.where} smtpd_client_connection_rate_limit",
                )
        timeout = self.setting("smtpd_timeout", scope)
        if timeout is not None:
            seconds = postfix_seconds(self.get("smtpd_timeout", scope), "s")
            if seconds:
                table.set("command-timeout", duration(seconds), f"{timeout.where} smtpd_timeout")
        banner = self.setting("smtpd_banner", scope)
        if banner is not None:
            raw = (scope.get("smtpd_banner") or self.params["smtpd_banner"]).value
            if raw.startswith("$myhostname "):
                text = expand(raw[len("$myhostname ") :], {**self.params, **scope})
                if text.isascii():
                    table.set("banner", text, f"{banner.where} smtpd_banner")
            else:
                self.note(
                    banner.where,
                    f"smtpd_banner = {raw}",
                    "Outrider's greeting always starts with the hostname",
                )

    def default_domain(self) -> None:
        star = self.doc.table(f"domain.{domain_header('*')}")
        relayhost = self.setting("relayhost")
        if relayhost is not None and self.get("relayhost"):
            route = self.nexthop(self.get("relayhost"), relayhost.where)
            if route:
                star.set("route", route, f"{relayhost.where} relayhost")
        self.outbound_tls(star)
        lifetime = self.setting("maximal_queue_lifetime")
        if lifetime is not None:
            seconds = postfix_seconds(self.get("maximal_queue_lifetime"), "d")
            if seconds is not None:
                star.set(
                    "bounce-after", duration(seconds), f"{lifetime.where} maximal_queue_lifetime"
                )
        low, high = self.setting("minimal_backoff_time"), self.setting("maximal_backoff_time")
        if low is not None or high is not None:
            minimal = postfix_seconds(self.get("minimal_backoff_time"), "s") or 300
            maximal = postfix_seconds(self.get("maximal_backoff_time"), "s") or 4000
            where = " ".join(p.where for p in (low, high) if p is not None)
            star.set("retry-after", retry_schedule(minimal, maximal), f"{where} min/max backoff")
        warn = self.setting("delay_warning_time")
        if warn is not None:
            seconds = postfix_seconds(self.get("delay_warning_time"), "h")
            if seconds:
                star.set(
                    "delay-warning-after", duration(seconds), f"{warn.where} delay_warning_time"
                )
        self.concurrency(star, "smtp", default=True)
        timeouts = {
            "smtp_connect_timeout": "connect-timeout",
            "smtp_helo_timeout": "smtp-greeting-timeout",
            "smtp_rcpt_timeout": "smtp-command-timeout",
            "smtp_data_init_timeout": "smtp-data-init-timeout",
            "smtp_data_xfer_timeout": "smtp-data-block-timeout",
            "smtp_data_done_timeout": "smtp-data-termination-timeout",
        }
        for name, key in timeouts.items():
            param = self.setting(name)
            seconds = postfix_seconds(self.get(name), "s") if param else None
            if param is not None and seconds:
                star.set(key, duration(seconds), f"{param.where} {name}")

    def outbound_tls(self, star: TomlTable) -> None:
        param = self.setting("smtp_tls_security_level")
        level = self.get("smtp_tls_security_level")
        if param is None and self.get("smtp_use_tls") == "yes":
            param, level = self.setting("smtp_use_tls"), "may"
        if param is None:
            return
        where = f"{param.where} smtp_tls_security_level = {level}"
        if level == "none":
            star.set("use-starttls", False, where)
        elif level in ("may", "dane", ""):
            star.set("use-starttls", True, where)
            if level == "dane":
                self.note(
                    param.where,
                    "smtp_tls_security_level = dane",
                    "no DANE in Outrider: opportunistic TLS (may)",
                )
        elif level in ("encrypt", "dane-only"):
            star.set("require-starttls", True, where)
            if level == "dane-only":
                self.note(
                    param.where,
                    "smtp_tls_security_level = dane-only",
                    "no DANE in Outrider: TLS required, certificate not checked",
                )
        elif level in ("verify", "secure"):
            star.set("require-starttls", True, where)
            star.set("tls-verify", "ca+hostname", where)
        else:
            self.note(param.where, f"smtp_tls_security_level = {level}", "unknown level")
        ca = self.setting("smtp_tls_CAfile")
        if ca is not None and self.get("smtp_tls_CAfile"):
            star.set("tls-ca-file", self.get("smtp_tls_CAfile"), f"{ca.where} smtp_tls_CAfile")

    def concurrency(self, table: TomlTable, transport: str, default: bool = False) -> None:
        """``<transport>_destination_concurrency_limit`` (and the default one for smtp)
        → max-smtp-out; ``<transport>_destination_rate_delay`` → max-msg-rate."""
        names = [f"{transport}_destination_concurrency_limit"]
        if default:
            names.insert(0, "default_destination_concurrency_limit")
        for name in names:
            param = self.setting(name)
            value = self.get(name) if param else ""
            if param is not None and value.isdigit() and int(value) > 0:
                table.set("max-smtp-out", int(value), f"{param.where} {name}")
        delay_name = f"{transport}_destination_rate_delay"
        delay = self.setting(delay_name)
        if delay is None and default:
            delay_name = "default_destination_rate_delay"
            delay = self.setting(delay_name)
        seconds = postfix_seconds(self.get(delay_name), "s") if delay else None
        if delay is not None and seconds:
            rate = f"1/{duration(seconds)}".replace("/1s", "/s").replace("/1m", "/m")
            rate = rate if re.fullmatch(r"1/\d*[smhd]", rate) else f"1/{seconds}s"
            table.set("max-msg-rate", rate, f"{delay.where} {delay_name}")

    def nexthop(self, text: str, where: str) -> str | None:
        """``[host]:port`` / ``host:port`` as a route; Postfix looks up the MX of an
        unbracketed host, Outrider resolves only its addresses."""
        match = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?|([^:\[\]]+)(?::(\d+))?", text.strip())
        if match is None:
            self.note(where, text, "next hop not understood")
            return None
        host = match.group(1) or match.group(3)
        port = match.group(2) or match.group(4)
        if host.startswith("ipv6:"):
            host = host[5:]
        if match.group(3):
            self.note(
                where,
                text,
                "Postfix looks up the MX of an unbracketed next hop; Outrider connects to the host",
            )
        host = f"[{host}]" if ":" in host else host
        return f"{host}:{port}" if port else host

    def transport_of(self, name: str) -> str:
        """What a transport name runs: smtp, lmtp, virtual, error, … (from master.cf)."""
        for service in self.services:
            if service.service == name and service.type == "unix":
                return service.command
        return name

    def local_domains(self) -> None:
        mailbox_param = self.setting("virtual_mailbox_domains")
        alias_param = self.setting("virtual_alias_domains")
        self.mailbox_domains = self.domain_list(mailbox_param) if mailbox_param else []
        alias_domains = self.domain_list(alias_param) if alias_param else []
        self.locals: dict[str, TomlTable] = {}
        for domain in self.mailbox_domains + alias_domains:
            table = self.doc.table(f"local-domain.{domain_header(domain)}")
            self.locals[domain] = table
        delimiter = self.setting("recipient_delimiter")
        for table in self.locals.values():
            if delimiter is None:
                table.set("recipient-delimiter", "", "Postfix's default: no address extensions")
            else:
                value = self.get("recipient_delimiter")[:1]
                table.set("recipient-delimiter", value, f"{delimiter.where} recipient_delimiter")
                if len(self.get("recipient_delimiter")) > 1:
                    self.note(
                        delimiter.where, "recipient_delimiter", "only the first delimiter is used"
                    )
        self.mailboxes(mailbox_param)
        for domain in alias_domains:
            table = self.locals[domain]
            table.set("mailboxes", [], "alias-only domain (virtual_alias_domains)")
        self.aliases()
        transport = self.setting("virtual_transport")
        if transport is not None:
            for domain in self.mailbox_domains:
                self.local_transport(
                    self.locals[domain], self.get("virtual_transport"), transport.where
                )

    def mailboxes(self, domains_param: Param | None) -> None:
        param = self.setting("virtual_mailbox_maps")
        base_param = self.setting("virtual_mailbox_base")
        base = self.get("virtual_mailbox_base").rstrip("/")
        self.setting("virtual_uid_maps")
        self.setting("virtual_gid_maps")
        self.setting("virtual_minimum_uid")
        if param is None:
            for domain in self.mailbox_domains:
                self.locals[domain].set("mailboxes", [], "no virtual_mailbox_maps")
            return
        found: dict[str, list[str]] = {d: [] for d in self.mailbox_domains}
        templates: Counter[str] = Counter()
        for ref in split_list(self.get("virtual_mailbox_maps")):
            for entry in self.table(ref, param.where).entries:
                local, at, domain = entry.key.lower().rpartition("@")
                if not at or domain not in found:
                    self.note(
                        entry.where,
                        f"{entry.key} {entry.value}",
                        "not an address of a virtual_mailbox_domains domain",
                    )
                    continue
                if not local:
                    self.note(
                        entry.where,
                        f"{entry.key} {entry.value}",
                        "catch-all mailbox: use catch-all with a mailbox name",
                    )
                    continue
                found[domain].append(local)
                if entry.value.endswith("/"):
                    templates[entry.value.replace(domain, "{domain}").replace(local, "{user}")] += 1
                else:
                    self.note(
                        entry.where,
                        f"{entry.key} {entry.value}",
                        "mbox files are not supported, Maildir only",
                    )
        for domain, users in found.items():
            self.locals[domain].set(
                "mailboxes", list(dict.fromkeys(users)), f"{param.where} virtual_mailbox_maps"
            )
        if templates and base:
            template, _ = templates.most_common(1)[0]
            if "{user}" in template:
                path = f"{base}/{template}".rstrip("/")
                for domain in self.mailbox_domains:
                    note = f"{base_param.where} virtual_mailbox_base" if base_param else ""
                    self.locals[domain].set("maildir", path, note)
                if len(templates) > 1:
                    self.note(
                        param.where,
                        "virtual_mailbox_maps",
                        f"mailbox paths follow several patterns; used {path}",
                    )

    def aliases(self) -> None:
        param = self.setting("virtual_alias_maps")
        if param is None:
            return
        per_domain: dict[str, dict[str, list[str]]] = {}
        for ref in split_list(self.get("virtual_alias_maps")):
            for entry in self.table(ref, param.where).entries:
                local, at, domain = entry.key.lower().rpartition("@")
                targets = [t for t in split_list(entry.value) if t]
                if not at or domain not in self.locals:
                    self.note(
                        entry.where,
                        f"{entry.key} {entry.value}",
                        "alias outside the virtual domains",
                    )
                    continue
                kept = [
                    t[: -len(domain) - 1] if t.lower().endswith("@" + domain) else t
                    for t in targets
                ]
                if not local:
                    self.locals[domain].set("catch-all", kept, entry.where)
                    continue
                per_domain.setdefault(domain, {})[local] = kept
        for domain, aliases in per_domain.items():
            sub = self.doc.table(f"local-domain.{domain_header(domain)}.aliases")
            sub.comments.append(f"{param.where} virtual_alias_maps")
            for name, targets in aliases.items():
                sub.set(name, targets[0] if len(targets) == 1 else targets)

    def local_transport(self, table: TomlTable, value: str, where: str) -> bool:
        """An lmtp: or virtual: transport for a local domain; False when unsupported."""
        name, _, nexthop = value.partition(":")
        kind = self.transport_of(name)
        if kind == "virtual":
            table.set("transport", "maildir", where)
            return True
        if kind != "lmtp":
            self.note(
                where, value, f"transport '{name}' ({kind}) is not supported for local domains"
            )
            return False
        if nexthop.startswith("unix:"):
            path = nexthop[5:]
            if not path.startswith("/"):
                path = f"{self.get('queue_directory').rstrip('/')}/{path}"
            table.set("transport", f"lmtp:unix:{path}", where)
            return True
        host = nexthop.removeprefix("inet:")
        match = re.fullmatch(r"\[?([^\]]+?)\]?:(\d+)", host)
        if match is None:
            self.note(where, value, "LMTP next hop needs host:port or unix:/path")
            return False
        address = match.group(1)
        address = f"[{address}]" if ":" in address else address
        table.set("transport", f"lmtp:{address}:{match.group(2)}", where)
        return True

    def transports(self) -> None:
        param = self.setting("transport_maps")
        if param is None:
            return
        for ref in split_list(self.get("transport_maps")):
            for entry in self.table(ref, param.where).entries:
                self.transport_entry(entry.key.lower(), entry.value, entry.where)

    def transport_entry(self, key: str, value: str, where: str) -> None:
        name, _, nexthop = value.partition(":")
        kind = self.transport_of(name) if name else "smtp"
        if "@" in key:
            self.note(where, f"{key} {value}", "per-address transports are not supported")
            return
        domain = "*" if key == "*" else f"*{key}" if key.startswith(".") else key
        if kind in ("lmtp", "virtual"):
            if domain.startswith("*"):
                self.note(where, f"{key} {value}", "local domains are exact names")
                return
            header = f"local-domain.{domain_header(domain)}"
            self.local_transport(self.locals.get(domain) or self.doc.table(header), value, where)
            return
        if kind not in ("smtp", "relay"):
            self.note(where, f"{key} {value}", f"transport '{name}' ({kind}) is not supported")
            return
        table = self.doc.table(f"domain.{domain_header(domain)}")
        if nexthop:
            route = self.nexthop(nexthop, where)
            if route:
                table.set("route", route, where)
        if name and name not in ("smtp", ""):
            self.concurrency(table, name)

    def leftovers(self) -> None:
        for name, param in self.params.items():
            if name in self.used:
                continue
            if param.value == DEFAULTS.get(name, None):
                continue
            note = Note(param.where, f"{name} = {param.value}", reason(name))
            (self.quiet if name in QUIET else self.notes).append(note)

    def finish(self) -> Imported:
        self.doc.preamble = [
            f"Imported from Postfix ({self.dir}) by outrider import-postfix.",
            "Each key names the main.cf/master.cf line or table entry it came from.",
            "Check with: outrider check-config -c THIS_FILE",
        ]
        if not self.doc.tables or not any(t.array and not t.commented_out for t in self.doc.tables):
            table = self.doc.append_array("listener")
            table.comments.append("No usable smtpd service in master.cf: a default listener.")
            table.set("address", "0.0.0.0:25")
        if self.notes:
            self.doc.trailer.append("Not translated (see docs/migrating.md):")
            self.doc.trailer.extend(note.line() for note in self.notes)
        if self.quiet:
            self.doc.trailer.append("Not needed by Outrider:")
            self.doc.trailer.extend(note.line() for note in self.quiet)
        return Imported(self.doc.render(), self.notes, self.quiet)


def reason(name: str) -> str:
    for part, why in REASONS:
        if part in name:
            return why
    if name in QUIET:
        return "not needed"
    return "no Outrider equivalent"


def tls_min_version(text: str) -> str | None:
    """``>=TLSv1.2`` or ``!SSLv2, !SSLv3, !TLSv1, !TLSv1.1`` → the oldest allowed."""
    value = text.replace(" ", "")
    if value.startswith(">="):
        return {"TLSv1.2": "TLSv1.2", "TLSv1.3": "TLSv1.3"}.get(value[2:])
    excluded = {item[1:] for item in split_list(text) if item.startswith("!")}
    if "TLSv1.2" in excluded:
        return "TLSv1.3"
    if {"TLSv1", "TLSv1.1"} <= excluded:
        return "TLSv1.2"
    return None


def import_postfix(config_dir: Path) -> Imported:
    """Translate the Postfix configuration in ``config_dir`` (main.cf, master.cf and
    the tables they name). OSError when main.cf cannot be read."""
    main_text = (config_dir / "main.cf").read_text(encoding="utf-8", errors="replace")
    params, bad = parse_main_cf(main_text, "main.cf")
    try:
        master_text = (config_dir / "master.cf").read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        master_text = ""
    services, bad_master = parse_master_cf(master_text, "master.cf")
    translator = Translator(config_dir, params, services)
    for line in bad + bad_master:
        where, _, what = line.partition(": ")
        translator.note(where, what, "not understood")
    return translator.run()
