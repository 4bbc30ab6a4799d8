"""The relay decision at RCPT time (pure).

A recipient is accepted when the client may relay (its address is in the listener's
relay-networks) or the recipient's domain is one we accept mail for (relay.domains).
Everything else is refused with 554 5.7.1, so no configuration reachable by accident
makes an open relay.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Sequence

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_may_relay(client_ip: str, networks: Sequence[IPNetwork]) -> bool:
    try:
        addr = ipaddress.ip_address(client_ip.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr.version == net.version and addr in net for net in networks)


def recipient_domain(address: str) -> str:
    """Lower-cased domain of a forward-path; "" when there is none (bare ``postmaster``)."""
    at = address.rfind("@")
    if at < 0:
        return ""
    return address[at + 1 :].rstrip(".").lower()


def relay_allowed(*, client_trusted: bool, recipient: str, relay_domains: Collection[str]) -> bool:
    if client_trusted:
        return True
    domain = recipient_domain(recipient)
    # Address literals and source-route remnants never match a relay domain.
    return bool(domain) and domain in relay_domains
