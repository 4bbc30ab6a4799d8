"""Domain-policy layering: which domain tables apply to a recipient domain, in what order.

Kept apart from the declarations in :mod:`outrider.config.model` because it is the one
piece of the config with logic on the delivery hot path (:meth:`Config.policy_for`
caches its results).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

from outrider.message.domains import domain_key

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

P = TypeVar("P", bound="DataclassInstance")
DEFAULT_POLICY_KEY = "*"
# Field name -> value, for the keys one domain table sets explicitly.
Overrides = Mapping[str, Any]
EMPTY: Overrides = MappingProxyType({})


def normalize_lookup(domain: str) -> str:
    """The domain's normal form, as the tables are keyed (:func:`domain_key`)."""
    return domain_key(domain)


def empty() -> Mapping[Any, Any]:
    return EMPTY


@dataclass(frozen=True, slots=True)
class DomainLayers:
    """The explicitly set keys of one scope's domain tables (global, or one virtual MTA).

    ``wildcards`` is keyed by the suffix after ``"*."``; ``macros`` by macro name.
    """

    star: Overrides = field(default_factory=empty)
    wildcards: Mapping[str, Overrides] = field(default_factory=empty)
    macros: Mapping[str, Overrides] = field(default_factory=empty)
    exact: Mapping[str, Overrides] = field(default_factory=empty)

    @classmethod
    def from_policies(cls, policies: Mapping[str, Any]) -> DomainLayers:
        """Layers equivalent to a mapping of effective policies (``"*"`` and exact names)."""
        layers = {
            name: MappingProxyType({f.name: getattr(p, f.name) for f in fields(p)})
            for name, p in policies.items()
        }
        return cls(star=layers.pop(DEFAULT_POLICY_KEY, EMPTY), exact=MappingProxyType(layers))

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
            into.update(self.macros.get(macro, EMPTY))
        into.update(self.exact.get(domain, EMPTY))


def resolve(base: P, layers: tuple[DomainLayers, ...], domain: str, macro: str | None) -> P:
    """``base`` (the built-in policy) with each scope's matching tables applied in order."""
    merged: dict[str, Any] = {}
    for scope in layers:
        scope.collect(domain, macro, merged)
    return replace(base, **merged) if merged else base
