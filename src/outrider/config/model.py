"""Typed, immutable configuration objects.

Values are already converted to the units the daemon works in: durations in
float seconds, sizes in int bytes, rates as :class:`Rate`, addresses as
``(host, port)`` tuples and networks as :mod:`ipaddress` objects, so no consumer
re-parses strings.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from outrider.config.policy import (
    DEFAULT_POLICY_KEY,
    DomainLayers,
    DomainPolicy,
    normalize_lookup,
    resolve,
)
from outrider.config.units import IPNetwork, Rate

__all__ = [
    "DEFAULT_CLIENT_CONNECT_RATE",
    "DEFAULT_POLICY_KEY",
    "DEFAULT_VMTA",
    "LISTENER_ROLES",
    "LISTENER_TLS_MODES",
    "PATTERN_ACTIONS",
    "PATTERN_PHASES",
    "TLS_MIN_VERSIONS",
    "TLS_VERIFY_MODES",
    "AuthSettings",
    "Config",
    "ConfigError",
    "DnsSettings",
    "DomainLayers",
    "DomainPolicy",
    "ListenerSettings",
    "MtaStsSettings",
    "PatternRule",
    "Problem",
    "Rate",
    "RelaySettings",
    "SenderDomainSettings",
    "ServerSettings",
    "VirtualMta",
    "VmtaPool",
]

DEFAULT_VMTA = "default"
LISTENER_ROLES = ("mx", "submission", "submissions")
LISTENER_TLS_MODES = ("none", "starttls", "implicit")
TLS_MIN_VERSIONS = ("TLSv1.2", "TLSv1.3")
TLS_VERIFY_MODES = ("none", "ca", "ca+hostname")
PATTERN_ACTIONS = ("mode=backoff", "mode=normal", "disable-source-ip", "bounce", "defer")
PATTERN_PHASES = (
    "any",
    "connect",
    "greeting",
    "ehlo",
    "starttls",
    "mail",
    "rcpt",
    "data",
    "data-end",
)

Address = tuple[str, int]

DEFAULT_CLIENT_CONNECT_RATE = Rate(60, 60.0)

# policy_for() results kept per (domain, vmta); oldest entries go first when full.
_POLICY_CACHE_MAX = 65536


@dataclass(frozen=True, slots=True)
class Problem:
    """One configuration mistake, located so an editor can jump to it."""

    file: str
    line: int
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.key}: {self.message}"


class ConfigError(Exception):
    """Raised with every problem found, so one edit-reload cycle fixes them all."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


@dataclass(frozen=True, slots=True)
class ServerSettings:
    hostname: str = field(default_factory=lambda: socket.getfqdn())
    spool_dir: Path = Path("var/spool")
    log_dir: Path = Path("var/log")
    shutdown_timeout: float = 30.0
    receiver_processes: int = 1
    max_delivery_concurrency: int = 500
    pid_file: Path | None = None
    default_virtual_mta: str = DEFAULT_VMTA  # a virtual MTA or pool name
    state_dir: Path = Path("var/state")  # persistent runtime state (paused queues, ...)


@dataclass(frozen=True, slots=True)
class DnsSettings:
    nameservers: tuple[Address, ...] = ()  # empty: use the system resolver
    timeout: float = 5.0


def _default_relay_networks() -> tuple[IPNetwork, ...]:
    return (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


@dataclass(frozen=True, slots=True)
class ListenerSettings:
    """One listening socket. The loader fills role-dependent defaults (tls, auth, headers)."""

    address: Address
    relay_networks: tuple[IPNetwork, ...] = field(default_factory=_default_relay_networks)
    max_message_size: int = 50 * 1024 * 1024
    max_rcpt_per_message: int = 1000
    max_errors: int = 20
    command_timeout: float = 300.0
    data_timeout: float = 600.0
    max_connections: int = 1000
    banner: str = "ESMTP Outrider"
    role: str = "mx"  # "mx" | "submission" | "submissions"
    tls: str = "none"  # "none" | "starttls" | "implicit"
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_min_version: str = "TLSv1.2"  # "TLSv1.2" | "TLSv1.3"
    auth: bool = False
    allow_plaintext_auth: bool = False  # only ever true on a loopback address
    max_connections_per_client: int = 20  # 0: unlimited
    max_connect_rate_per_client: Rate | None = DEFAULT_CLIENT_CONNECT_RATE  # None: unlimited
    max_messages_per_connection: int = 1000  # 0: unlimited
    max_rcpt_per_connection: int = 10000  # 0: unlimited
    auth_max_failures: int = 5
    auth_failure_window: float = 600.0
    auth_block_time: float = 900.0
    auth_failure_delay: float = 1.0  # doubles per further failure, capped at 10 s
    add_missing_headers: bool = False
    default_virtual_mta: str | None = None
    process_x_virtual_mta: bool = False

    def may_relay(self, client_ip: str) -> bool:
        """True if a client at ``client_ip`` may relay to any domain through this listener."""
        try:
            ip = ipaddress.ip_address(client_ip)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.relay_networks)


@dataclass(frozen=True, slots=True)
class RelaySettings:
    domains: frozenset[str] = frozenset()  # normalized: lower-case A-labels, no trailing dot


@dataclass(frozen=True, slots=True)
class VirtualMta:
    """A sending identity: source address, EHLO name and per-domain overrides."""

    name: str
    source_ip: str | None  # None: let the kernel choose
    ehlo_name: str
    domain_overrides: DomainLayers = field(default_factory=DomainLayers)


@dataclass(frozen=True, slots=True)
class VmtaPool:
    """Virtual MTAs used in turn, in proportion to ``weights``."""

    name: str
    members: tuple[str, ...]
    weights: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class PatternRule:
    """One smtp-pattern-list rule: a remote reply matching ``regex`` triggers ``action``.

    ``source`` names the rule for logs: ``smtp-pattern-list.NAME.rules[I]``.
    """

    regex: re.Pattern[str]
    action: str  # one of PATTERN_ACTIONS
    phase: str  # one of PATTERN_PHASES
    source: str


@dataclass(frozen=True, slots=True)
class SenderDomainSettings:
    virtual_mta: str | None = None


@dataclass(frozen=True, slots=True)
class AuthSettings:
    users_file: Path = Path("var/users")
    password_hash: str = "scrypt"  # "scrypt" | "argon2id"


@dataclass(frozen=True, slots=True)
class MtaStsSettings:
    enabled: bool = True
    cache_dir: Path | None = None  # None: in memory only
    fetch_timeout: float = 10.0
    https_port: int = 443
    ca_file: Path | None = None  # None: the system CAs


def _empty() -> Mapping[Any, Any]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration.

    ``domains`` holds *effective* global policies for ``"*"`` and for every
    exact domain table. :meth:`policy_for` is the lookup to use: it also applies
    wildcard and macro tables and virtual-MTA overrides. ``domain_layers`` is
    the raw material; when it is not given it is derived from ``domains``.
    ``virtual_mtas`` always contains ``"default"``.
    """

    source: Path | None
    server: ServerSettings
    dns: DnsSettings
    listeners: tuple[ListenerSettings, ...]
    relay: RelaySettings
    domains: Mapping[str, DomainPolicy] = field(
        default_factory=lambda: MappingProxyType({DEFAULT_POLICY_KEY: DomainPolicy()})
    )
    domain_macros: Mapping[str, frozenset[str]] = field(default_factory=_empty)
    domain_layers: DomainLayers | None = None
    virtual_mtas: Mapping[str, VirtualMta] = field(default_factory=_empty)
    vmta_pools: Mapping[str, VmtaPool] = field(default_factory=_empty)
    pattern_lists: Mapping[str, tuple[PatternRule, ...]] = field(default_factory=_empty)
    sender_domains: Mapping[str, SenderDomainSettings] = field(default_factory=_empty)
    auth: AuthSettings = field(default_factory=AuthSettings)
    mta_sts: MtaStsSettings = field(default_factory=MtaStsSettings)
    _macro_of: Mapping[str, str] = field(init=False, repr=False, compare=False)
    _policy_cache: dict[tuple[str, str | None], DomainPolicy] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        setattr_ = object.__setattr__
        if self.domain_layers is None:
            setattr_(self, "domain_layers", DomainLayers.from_policies(self.domains))
        if DEFAULT_VMTA not in self.virtual_mtas:
            vmtas = {DEFAULT_VMTA: VirtualMta(DEFAULT_VMTA, None, self.server.hostname)}
            vmtas.update(self.virtual_mtas)
            setattr_(self, "virtual_mtas", MappingProxyType(vmtas))
        macro_of = {
            domain: name for name, members in self.domain_macros.items() for domain in members
        }
        setattr_(self, "_macro_of", macro_of)
        setattr_(self, "_policy_cache", {})

    def policy_for(self, domain: str, vmta: str | None = None) -> DomainPolicy:
        """Effective policy for a recipient domain, optionally as sent by virtual MTA ``vmta``.

        Order, later wins key by key: built-in defaults, ``"*"``, the longest matching
        wildcard, the domain's macro, the exact table; then the same for ``vmta``'s
        own domain tables. Case-insensitive, trailing dot ignored. Raises
        :class:`KeyError` for an unknown virtual MTA (pools must be resolved first).
        """
        cache = self._policy_cache
        key = (domain, vmta)
        policy = cache.get(key)
        if policy is not None:
            return policy
        name = normalize_lookup(domain)
        layers = self.domain_layers
        assert layers is not None  # filled by __post_init__
        if vmta is None:
            scopes: tuple[DomainLayers, ...] = (layers,)
        else:
            scopes = (layers, self.virtual_mtas[vmta].domain_overrides)
        policy = resolve(scopes, name, self._macro_of.get(name))
        if len(cache) >= _POLICY_CACHE_MAX:
            del cache[next(iter(cache))]
        cache[key] = policy
        return policy

    def is_relay_domain(self, domain: str) -> bool:
        """True if mail to ``domain`` is accepted from any client."""
        domains = self.relay.domains
        return domain in domains or normalize_lookup(domain) in domains
