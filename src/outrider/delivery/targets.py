"""Where to connect for a destination: a configured route or the domain's MX hosts."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from outrider.delivery.dns import MxResolver


@dataclass(frozen=True, slots=True)
class Target:
    host: str  # MX or route host name (or the IP itself), reported as dsnMta
    address: str  # IP to connect to
    port: int
    implicit: bool = False  # the domain has no MX: its own address (RFC 5321 5.1)
    preference: int = 0  # the MX preference (0 for a route, an address literal, implicit MX)

    def describe(self) -> str:
        return self.host if self.host == self.address else f"{self.host} ({self.address})"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def resolve_targets(
    domain: str, route: tuple[str, int] | None, resolver: MxResolver, *, mx_port: int = 25
) -> list[Target]:
    """Ordered connection candidates. Raises DnsError for the caller to classify."""
    if route is not None:
        host, port = route
        if _is_ip(host):
            return [Target(host, host, port)]
        return [Target(host, ip, port) for ip in await resolver.resolve_addresses(host)]
    if domain.startswith("[") and domain.endswith("]"):
        literal = domain[1:-1]
        if literal.lower().startswith("ipv6:"):
            literal = literal[5:]
        return [Target(literal, literal, mx_port)]
    hosts = await resolver.resolve_mx(domain)
    return [
        Target(mx.name, ip, mx_port, mx.implicit, mx.preference)
        for mx in hosts
        for ip in mx.addresses
    ]
