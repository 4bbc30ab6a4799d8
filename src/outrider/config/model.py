"""Typed, immutable configuration objects.

Values are already converted to the units the daemon works in: durations in
float seconds, sizes in int bytes, addresses as ``(host, port)`` tuples and
networks as :mod:`ipaddress` objects, so no consumer re-parses strings.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from outrider.config.units import IPNetwork

__all__ = [
    "DEFAULT_POLICY_KEY",
    "Config",
    "ConfigError",
    "DnsSettings",
    "DomainPolicy",
    "ListenerSettings",
    "Problem",
    "RelaySettings",
    "ServerSettings",
]

DEFAULT_POLICY_KEY = "*"

Address = tuple[str, int]


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


@dataclass(frozen=True, slots=True)
class DnsSettings:
    nameservers: tuple[Address, ...] = ()  # empty: use the system resolver
    timeout: float = 5.0


def _default_relay_networks() -> tuple[IPNetwork, ...]:
    return (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


@dataclass(frozen=True, slots=True)
class ListenerSettings:
    address: Address
    relay_networks: tuple[IPNetwork, ...] = field(default_factory=_default_relay_networks)
    max_message_size: int = 50 * 1024 * 1024
    max_rcpt_per_message: int = 1000
    max_errors: int = 20
    command_timeout: float = 300.0
    data_timeout: float = 600.0
    max_connections: int = 1000
    banner: str = "ESMTP Outrider"

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
class DomainPolicy:
    retry_after: tuple[float, ...] = (300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0)
    bounce_after: float = 4 * 86400.0 + 12 * 3600.0
    route: Address | None = None  # smarthost; None: look up MX
    max_smtp_out: int = 20
    max_msg_per_connection: int = 0  # 0: unlimited
    connect_timeout: float = 30.0
    smtp_greeting_timeout: float = 300.0
    smtp_command_timeout: float = 300.0
    smtp_data_init_timeout: float = 120.0
    smtp_data_block_timeout: float = 180.0
    smtp_data_termination_timeout: float = 600.0
    connection_idle_timeout: float = 5.0
    use_starttls: bool = True
    smtp_port: int = 25  # port of MX hosts (a route carries its own)


_BUILTIN_POLICY = DomainPolicy()


def _normalize_lookup(domain: str) -> str:
    key = domain.lower()
    if key.endswith("."):
        key = key[:-1]
    if not key.isascii():
        with contextlib.suppress(UnicodeError):
            key = key.encode("idna").decode("ascii")
    return key


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration.

    ``domains`` holds *effective* policies: the ``"*"`` entry is the built-in
    defaults with the ``[domain."*"]`` keys applied, and every other entry is that
    with its own table's explicitly set keys applied. The loader always fills
    ``"*"``.
    """

    source: Path | None
    server: ServerSettings
    dns: DnsSettings
    listeners: tuple[ListenerSettings, ...]
    relay: RelaySettings
    domains: Mapping[str, DomainPolicy] = field(
        default_factory=lambda: MappingProxyType({DEFAULT_POLICY_KEY: DomainPolicy()})
    )

    def policy_for(self, domain: str) -> DomainPolicy:
        """Policy for a recipient domain (case-insensitive, trailing dot ignored)."""
        policy = self.domains.get(domain)
        if policy is not None:
            return policy
        policy = self.domains.get(_normalize_lookup(domain))
        if policy is not None:
            return policy
        return self.domains.get(DEFAULT_POLICY_KEY, _BUILTIN_POLICY)

    def is_relay_domain(self, domain: str) -> bool:
        """True if mail to ``domain`` is accepted from any client."""
        domains = self.relay.domains
        return domain in domains or _normalize_lookup(domain) in domains
