"""The running configuration as tables of TOML keys, for ``outrider show config``.

Like ``postconf -n``, the plain form lists what differs from the defaults (for domain
tables: what each table sets); ``effective`` lists every key with the value in force.
Values come back in the units the daemon uses (durations in seconds, sizes in
octets); keys are the TOML spellings.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from outrider.config.kinds import keys_of
from outrider.config.layers import DomainLayers
from outrider.config.model import Config, DomainPolicy

Table = dict[str, Any]


def plain(value: Any) -> Any:
    """A config value as JSON (and TOML) can carry it."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if isinstance(value, frozenset | set):
        return sorted(str(plain(v)) for v in value)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, re.Pattern):
        return value.pattern
    if isinstance(value, Path | ipaddress.IPv4Network | ipaddress.IPv6Network):
        return str(value)
    return str(value)


def _default(field: dataclasses.Field[Any]) -> Any:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return dataclasses.MISSING
    return Path.cwd() / value if isinstance(value, Path) else value  # paths load absolute


def settings(obj: Any, *, effective: bool) -> Table:
    """One settings object's keys: all of them, or those that differ from the default."""
    by_name = {f.name: f for f in dataclasses.fields(obj)}
    cls: type = obj.__class__
    table: Table = {}
    for toml, (name, _) in keys_of(cls).items():
        value = getattr(obj, name)
        if not effective and value == _default(by_name[name]):
            continue
        table[toml] = plain(value)
    return table


_POLICY_KEYS = {name: toml for toml, (name, _) in keys_of(DomainPolicy).items()}


def _policy_keys(overrides: Mapping[str, Any]) -> Table:
    return {_POLICY_KEYS.get(name, name): plain(value) for name, value in overrides.items()}


def domain_tables(layers: DomainLayers, prefix: str = "") -> dict[str, Table]:
    """Each domain table of one scope and the keys it sets."""
    tables: dict[str, Table] = {}
    if layers.star:
        tables[f'{prefix}domain."*"'] = _policy_keys(layers.star)
    for suffix, keys in layers.wildcards.items():
        tables[f'{prefix}domain."*.{suffix}"'] = _policy_keys(keys)
    for macro, keys in layers.macros.items():
        tables[f'{prefix}domain."${macro}"'] = _policy_keys(keys)
    for domain, keys in layers.exact.items():
        tables[f'{prefix}domain."{domain}"'] = _policy_keys(keys)
    return tables


def dump(config: Config, *, effective: bool = False) -> dict[str, Any]:
    """Table name -> keys (``listener`` is a list of tables)."""
    out: dict[str, Any] = {
        "server": settings(config.server, effective=effective),
        "dns": settings(config.dns, effective=effective),
        "listener": [settings(s, effective=effective) for s in config.listeners],
        "relay": settings(config.relay, effective=effective),
        "auth": settings(config.auth, effective=effective),
        "mta-sts": settings(config.mta_sts, effective=effective),
        "http": settings(config.http, effective=effective),
        "accounting": settings(config.accounting, effective=effective),
        "suppression": settings(config.suppression, effective=effective),
        "srs": settings(config.srs, effective=effective),
        "event-log": settings(config.event_log, effective=effective),
        "bounce-categories": settings(config.bounce_categories, effective=effective),
        "unsubscribe": settings(config.unsubscribe, effective=effective),
        "cluster": settings(config.cluster, effective=effective),
    }
    if config.webhooks:
        out["webhook"] = [settings(s, effective=effective) for s in config.webhooks]
    assert config.domain_layers is not None  # filled by Config.__post_init__
    out.update(domain_tables(config.domain_layers))
    if effective:  # every key of the policy other domain tables start from
        out['domain."*"'] = settings(config.policy_for("*"), effective=True)
    if config.domain_macros:
        out["domain-macro"] = {name: sorted(d) for name, d in config.domain_macros.items()}
    for name, vmta in config.virtual_mtas.items():
        if name == "default" and not vmta.source_ip and not effective:
            continue
        out[f"virtual-mta.{name}"] = settings(vmta, effective=effective)
        out.update(domain_tables(vmta.domain_overrides, f"virtual-mta.{name}."))
    for name, pool in config.vmta_pools.items():
        out[f"virtual-mta-pool.{name}"] = settings(pool, effective=True)
    for name, rules in config.pattern_lists.items():
        out[f"smtp-pattern-list.{name}"] = {
            "rules": [settings(rule, effective=True) for rule in rules]
        }
    for name, sender in config.sender_domains.items():
        out[f'sender-domain."{name}"'] = settings(sender, effective=effective)
    for name, local in config.local_domains.items():
        out[f'local-domain."{name}"'] = settings(local, effective=True)
    for name, bounce in config.bounce_domains.items():
        out[f'bounce-domain."{name}"'] = settings(bounce, effective=effective)
    for name, mlist in config.lists.items():
        out[f'list."{name}"'] = settings(mlist, effective=True)
    if config.dkim:
        out["dkim"] = [settings(entry, effective=effective) for entry in config.dkim]
    return {key: value for key, value in out.items() if value or key == "listener"}
