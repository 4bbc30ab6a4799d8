"""Which ``[[dkim]]`` entries sign a message: pure look-ups on the From domain.

The entries of the From address's domain sign it (all of them: an RSA and an Ed25519
key of one domain both sign, RFC 8463). A domain without entries of its own is signed
by the nearest parent domain whose entries say ``subdomains = true``, with that
parent's ``d=`` (relaxed DMARC alignment still passes). An entry is skipped when the
message already carries a DKIM-Signature with its ``d=`` and ``s=`` (mail re-injected
after it was signed is never signed twice).
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from outrider.dkim.signer import SigningKey, header_fields

_TAG = re.compile(rb"(?:^|;)\s*([ds])\s*=\s*([^;\s]+)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class SigningTable:
    """The signing keys by their ``d=`` domain (lower case, no trailing dot)."""

    exact: Mapping[str, tuple[SigningKey, ...]] = field(default_factory=dict)
    parents: Mapping[str, tuple[SigningKey, ...]] = field(default_factory=dict)

    @classmethod
    def build(cls, entries: Iterable[tuple[SigningKey, bool]]) -> SigningTable:
        """``entries``: each key and whether it also signs its domain's subdomains."""
        exact: dict[str, list[SigningKey]] = {}
        parents: dict[str, list[SigningKey]] = {}
        for key, subdomains in entries:
            exact.setdefault(key.domain, []).append(key)
            if subdomains:
                parents.setdefault(key.domain, []).append(key)
        return cls(
            MappingProxyType({d: tuple(k) for d, k in exact.items()}),
            MappingProxyType({d: tuple(k) for d, k in parents.items()}),
        )

    def keys_for_from(self, from_value: str | None) -> tuple[SigningKey, ...]:
        domain = from_domain(from_value)
        return () if domain is None else self.keys_for(domain)

    def keys_for(self, domain: str) -> tuple[SigningKey, ...]:
        keys = self.exact.get(domain)
        if keys:
            return keys
        labels = domain.split(".")
        for i in range(1, len(labels) - 1):  # never a top-level domain alone
            keys = self.parents.get(".".join(labels[i:]))
            if keys:
                return keys
        return ()


def from_domain(value: str | None) -> str | None:
    """The domain of the (first) From address, lower case; None when there is none."""
    if not value:
        return None
    _, address = email.utils.parseaddr(value)
    local, at, domain = address.rpartition("@")
    domain = domain.strip().rstrip(".").lower()
    if not at or not local or not domain:
        return None
    try:
        return domain.encode("idna").decode("ascii") if not domain.isascii() else domain
    except UnicodeError:
        return None


def signature_id(raw: bytes) -> tuple[str, str] | None:
    """(d, s) of one DKIM-Signature field, lower case; None when it lacks either."""
    value = raw.partition(b":")[2].replace(b"\r\n", b"")
    tags = {m.group(1).lower(): m.group(2) for m in _TAG.finditer(value)}
    if b"d" not in tags or b"s" not in tags:
        return None
    d = tags[b"d"].decode("ascii", "replace").rstrip(".").lower()
    return d, tags[b"s"].decode("ascii", "replace").lower()


def existing_signatures(fields: Sequence[tuple[bytes, bytes]]) -> set[tuple[str, str]]:
    """(d, s) of every DKIM-Signature field already in the header section."""
    found: set[tuple[str, str]] = set()
    for name, raw in fields:
        if name == b"dkim-signature" and (pair := signature_id(raw)) is not None:
            found.add(pair)
    return found


def drop_signatures(head: bytes, pairs: set[tuple[str, str]]) -> bytes:
    """``head`` without the DKIM-Signature fields whose (d, s) is in ``pairs``; the same
    object when there are none."""
    if b"dkim-signature" not in head.lower():
        return head
    kept: list[bytes] = []
    dropped = False
    for name, raw in header_fields(head, keep_all=True):
        if name == b"dkim-signature" and signature_id(raw) in pairs:
            dropped = True
        else:
            kept.append(raw)
    return b"".join(kept) if dropped else head


def keys_to_sign(
    table: SigningTable, from_value: str | None, fields: Sequence[tuple[bytes, bytes]]
) -> list[SigningKey]:
    domain = from_domain(from_value)
    if domain is None:
        return []
    keys = table.keys_for(domain)
    if not keys:
        return []
    done = existing_signatures(fields)
    return [k for k in keys if (k.domain, k.selector.lower()) not in done]
