"""The relay decision at RCPT time (pure).

A recipient is accepted when the client may relay (its address is in the listener's
relay-networks, or it authenticated) or the recipient's domain is one we accept mail
for (relay.domains). Everything else is refused with 554 5.7.1, so no configuration
reachable by accident makes an open relay.

Only the domain after the last ``@`` counts, compared in the one normal form of
:mod:`outrider.message.domains` (UTS 46 A-labels), so ``bücher.test`` and
``xn--bcher-kva.test`` are one domain, as they are for routing and policy. Routing
syntax in the local part (``user%other@relay.test``, ``other!user@relay.test``,
``"user@other"@relay.test``) is never interpreted: such a recipient is mail *for*
relay.test and goes to relay.test's MX unchanged. Address literals never match.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable, Sequence

from outrider.message import domains as names

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_may_relay(client_ip: str, networks: Sequence[IPNetwork]) -> bool:
    try:
        addr = ipaddress.ip_address(client_ip.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr.version == net.version and addr in net for net in networks)


def normalize_domain(domain: str) -> str:
    """The normal form of :mod:`outrider.message.domains`; "" for what cannot be a
    domain name, which then matches no relay domain (the client gets the normal refusal)."""
    try:
        return names.normalize_domain(domain)
    except names.InvalidDomainError:
        return ""


def normalize_domains(domains: Iterable[str]) -> frozenset[str]:
    return frozenset(d for d in map(normalize_domain, domains) if d)


def recipient_domain(address: str) -> str:
    """Normalised domain of a forward-path; "" when there is none (bare ``postmaster``)."""
    at = address.rfind("@")
    if at < 0:
        return ""
    return normalize_domain(address[at + 1 :])  # an address literal stays one: never matches


def relay_allowed(*, client_trusted: bool, recipient: str, relay_domains: Collection[str]) -> bool:
    """``client_trusted``: in relay-networks or authenticated. ``relay_domains`` normalised."""
    if client_trusted:
        return True
    domain = recipient_domain(recipient)
    return bool(domain) and domain in relay_domains
