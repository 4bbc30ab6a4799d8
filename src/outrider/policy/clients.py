"""How client addresses are grouped for per-client limits (pure).

An IPv4-mapped IPv6 address counts as its IPv4 address, and IPv6 clients are grouped
by /64: a single host or subscriber is routinely given a whole /64 and can pick a fresh
address from it for every connection, so per-address limits would be trivial to evade.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

_V6_PREFIX_MASK = ((1 << 64) - 1) << 64


def client_key(client_ip: str) -> str:
    """The key a client is counted under: the IPv4 address, or the IPv6 /64 as ``net/64``.

    Anything that is not an IP address (a Unix socket peer, an empty string) is its own key.
    """
    if ":" not in client_ip:  # IPv4 as reported by the socket layer: already canonical
        return client_ip
    return _ipv6_key(client_ip)


@lru_cache(maxsize=8192)
def _ipv6_key(client_ip: str) -> str:
    try:
        addr = ipaddress.ip_address(client_ip.split("%", 1)[0])
    except ValueError:
        return client_ip
    if isinstance(addr, ipaddress.IPv4Address):  # "192.0.2.1%zone:x" style garbage
        return str(addr)
    mapped = addr.ipv4_mapped
    if mapped is not None:
        return str(mapped)
    return f"{ipaddress.IPv6Address(int(addr) & _V6_PREFIX_MASK)}/64"
