"""Domain-policy layering: which tables apply to a recipient domain, and in what order.

Kept apart from :mod:`outrider.config.model` because it is the one piece of the
config with logic on the delivery hot path; :meth:`Config.policy_for` caches
its results.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from outrider.config.units import Rate

__all__ = [
    "DEFAULT_POLICY_KEY",
    "EMPTY_OVERRIDES",
    "DomainLayers",
    "DomainPolicy",
    "Overrides",
    "normalize_lookup",
]

DEFAULT_POLICY_KEY = "*"

Address = tuple[str, int]

# Field name -> value, for the keys one table sets explicitly.
Overrides = Mapping[str, Any]
EMPTY_OVERRIDES: Overrides = MappingProxyType({})


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
    # Traffic shaping (PowerMTA directive names; see docs/shaping.md).
    max_rcpt_per_transaction: int = 1000
    max_msg_rate: Rate | None = None  # None: unlimited
    max_connect_rate: Rate | None = None
    queue_priority: int = 50  # 0-100, higher first
    mx_rollup: bool = True  # domains sharing MX hosts share connections and limits
    bounce_upon_no_mx: bool = False
    smtp_421_means_mx_unavailable: bool = False
    smtp_pattern_list: str | None = None
    backoff_max_msg_rate: Rate | None = None
    backoff_max_smtp_out: int = 1
    backoff_retry_after: float = 3600.0
    backoff_to_normal_after: float | None = None  # None: never (only on delivery or by hand)
    backoff_to_normal_after_delivery: bool = False
    reenable_source_ip_after: float = 3600.0
    delay_warning_after: float | None = None  # None: never send delay DSNs
    # Outbound TLS.
    require_starttls: bool = False
    tls_verify: str = "none"  # "none" | "ca" | "ca+hostname"
    tls_ca_file: Path | None = None  # None: the system CAs
    mta_sts: bool = True


def normalize_lookup(domain: str) -> str:
    """Cheap, non-validating normalization for look-ups (validation happened at load)."""
    key = domain.lower()
    if key.endswith("."):
        key = key[:-1]
    if not key.isascii():
        with contextlib.suppress(UnicodeError):
            key = key.encode("idna").decode("ascii")
    return key


def _empty() -> Mapping[str, Any]:
    return EMPTY_OVERRIDES


@dataclass(frozen=True, slots=True)
class DomainLayers:
    """The explicitly set keys of one scope's domain tables (global, or one virtual MTA).

    ``wildcards`` is keyed by the suffix after ``"*."``; ``macros`` by macro name.
    """

    star: Overrides = field(default_factory=_empty)
    wildcards: Mapping[str, Overrides] = field(default_factory=_empty)
    macros: Mapping[str, Overrides] = field(default_factory=_empty)
    exact: Mapping[str, Overrides] = field(default_factory=_empty)

    @classmethod
    def from_policies(cls, policies: Mapping[str, DomainPolicy]) -> DomainLayers:
        """Layers equivalent to a mapping of effective policies (``"*"`` and exact names)."""
        star = policies.get(DEFAULT_POLICY_KEY)
        return cls(
            star=EMPTY_OVERRIDES if star is None else _as_overrides(star),
            exact=MappingProxyType(
                {
                    name: _as_overrides(policy)
                    for name, policy in policies.items()
                    if name != DEFAULT_POLICY_KEY
                }
            ),
        )

    def collect(self, domain: str, macro: str | None, into: dict[str, Any]) -> None:
        """Apply this scope's tables for ``domain`` to ``into``, least specific first."""
        into.update(self.star)
        if self.wildcards:
            dot = domain.find(".")
            while dot >= 0:  # longest suffix first: the most specific wildcard wins
                found = self.wildcards.get(domain[dot + 1 :])
                if found is not None:
                    into.update(found)
                    break
                dot = domain.find(".", dot + 1)
        if macro is not None:
            found = self.macros.get(macro)
            if found is not None:
                into.update(found)
        found = self.exact.get(domain)
        if found is not None:
            into.update(found)


def _as_overrides(policy: DomainPolicy) -> Overrides:
    return MappingProxyType({f.name: getattr(policy, f.name) for f in fields(policy)})


BUILTIN_POLICY = DomainPolicy()


def resolve(layers: tuple[DomainLayers, ...], domain: str, macro: str | None) -> DomainPolicy:
    """Built-in defaults with each scope's matching tables applied in order."""
    merged: dict[str, Any] = {}
    for scope in layers:
        scope.collect(domain, macro, merged)
    return replace(BUILTIN_POLICY, **merged) if merged else BUILTIN_POLICY
