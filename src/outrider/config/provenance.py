"""Where each value of a domain's effective policy comes from, for ``outrider route``.

Walks the same tables in the same order as :meth:`Config.policy_for` (built-in, ``"*"``,
the longest matching wildcard, the domain's macro, the exact table; then the same in
the virtual MTA's own domain tables) and remembers, key by key, the last one that set
it. Pure: config in, labels out.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from outrider.config.kinds import keys_of
from outrider.config.layers import DomainLayers, normalize_lookup
from outrider.config.model import BUILTIN_POLICY, Config, DomainPolicy

BUILTIN = "built-in default"


def _scope_tables(
    layers: DomainLayers, domain: str, macro: str | None, prefix: str
) -> list[tuple[str, dict[str, Any]]]:
    """(label, keys set) of one scope's tables that apply to ``domain``, least specific first."""
    found: list[tuple[str, dict[str, Any]]] = [(f'{prefix}domain."*"', dict(layers.star))]
    dot = domain.find(".")
    while layers.wildcards and dot >= 0:
        suffix = domain[dot + 1 :]
        table = layers.wildcards.get(suffix)
        if table is not None:
            found.append((f'{prefix}domain."*.{suffix}"', dict(table)))
            break
        dot = domain.find(".", dot + 1)
    if macro is not None:
        found.append((f'{prefix}domain."${macro}"', dict(layers.macros.get(macro, {}))))
    found.append((f'{prefix}domain."{domain}"', dict(layers.exact.get(domain, {}))))
    return found


def policy_sources(config: Config, domain: str, vmta: str | None) -> dict[str, str]:
    """Field name -> the table that set it (``built-in default`` when none did)."""
    name = normalize_lookup(domain)
    macro = next((m for m, members in config.domain_macros.items() if name in members), None)
    sources = {f.name: BUILTIN for f in fields(DomainPolicy)}
    assert config.domain_layers is not None  # filled by Config.__post_init__
    scopes = [(config.domain_layers, "")]
    if vmta is not None and vmta in config.virtual_mtas:
        scopes.append((config.virtual_mtas[vmta].domain_overrides, f"virtual-mta.{vmta}."))
    for layers, prefix in scopes:
        for label, table in _scope_tables(layers, name, macro, prefix):
            for key in table:
                sources[key] = label
    return sources


def _plain(value: Any) -> Any:
    """A policy value as JSON can carry it."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    return str(value)


def explained_policy(config: Config, domain: str, vmta: str | None) -> dict[str, dict[str, Any]]:
    """Every policy key (TOML spelling) with its effective value and where it came from."""
    known = vmta if vmta is not None and vmta in config.virtual_mtas else None
    policy = config.policy_for(domain, known)
    sources = policy_sources(config, domain, known)
    explained: dict[str, dict[str, Any]] = {}
    for toml, (field_name, _) in keys_of(DomainPolicy).items():
        value = getattr(policy, field_name)
        default = getattr(BUILTIN_POLICY, field_name)
        source = sources.get(field_name, BUILTIN)
        if source != BUILTIN and value == default:
            source += " (same as the default)"
        explained[toml] = {"value": _plain(value), "from": source}
    return explained
