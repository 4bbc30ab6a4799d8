"""Recognising an MX host or a server that is Outrider itself ("mail for X loops back
to myself").

Two checks, as Postfix makes them. Before connecting: an MX target whose address and
port are one of our own listening sockets is us; RFC 5321 section 5.1 then drops it and
every MX host of equal or worse preference, and when nothing is left the mail loops.
After connecting: a server that greets us (or answers EHLO) with our own host name is us,
reached through an address we cannot recognise (NAT, a proxy, another interface).

A domain with an explicit ``route`` skips both: an operator may route to another local
instance on purpose. Whatever gets through (a loop through other hosts) is stopped by
the hop count (``max-received-headers``).
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from outrider.config.model import Address
from outrider.message.domains import domain_key
from outrider.policy.outcome import Outcome, Scope, local_outcome
from outrider.smtp.replies import Reply

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
T = TypeVar("T")

LOOP_STATUS = "5.4.6"  # RFC 3463: routing loop detected
_WILDCARDS = (ipaddress.IPv4Address("0.0.0.0"), ipaddress.IPv6Address("::"))
_LOOPBACK: dict[int, IP] = {
    4: ipaddress.IPv4Address("127.0.0.1"),
    6: ipaddress.IPv6Address("::1"),
}
_LOCAL_CACHE_TTL = 60.0  # an address added to or removed from the host is noticed this late
_LOCAL_CACHE_MAX = 4096


def loop_outcome(domain: str) -> Outcome:
    """A permanent failure for the domain's mail: its recipients bounce with 5.4.6."""
    return local_outcome(
        554, LOOP_STATUS, f"mail for {domain} loops back to myself", scope=Scope.DOMAIN
    )


def _ip(text: str) -> IP | None:
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def host_has_address(ip: IP) -> bool:
    """Whether ``ip`` is one of this host's own addresses.

    A UDP socket "connected" to a local address gets that same address as its source
    (the kernel routes it through the loopback device); no packet is sent. Loopback
    addresses are local by definition."""
    if ip.is_loopback:
        return True
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((str(ip), 9))
            source = probe.getsockname()[0]
    except OSError:  # no route to it: not ours
        return False
    return _ip(str(source)) == ip


class OwnAddresses:
    """Our listening sockets, to recognise an MX target that would connect back to us.

    A listener on a specific address matches that address and port; a wildcard one
    (``0.0.0.0``, ``::``) matches every address of the host in its family, loopback
    included, on its port. Listeners on port 0 (a test rig's ephemeral port) match
    nothing."""

    def __init__(
        self,
        listeners: Iterable[Address],
        *,
        is_local: Callable[[IP], bool] = host_has_address,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.exact: set[tuple[IP, int]] = set()
        self.wildcard: set[tuple[int, int]] = set()  # (IP version, port)
        for host, port in listeners:
            ip = _ip(host)
            if ip is None or port == 0:
                continue
            if ip in _WILDCARDS:
                self.wildcard.add((ip.version, port))
            else:
                self.exact.add((ip, port))
        self._is_local = is_local
        self._clock = clock
        self._local: dict[IP, tuple[bool, float]] = {}

    def __bool__(self) -> bool:
        return bool(self.exact or self.wildcard)

    def contains(self, address: str, port: int) -> bool:
        """Whether connecting to ``address``:``port`` would reach one of our listeners."""
        ip = _ip(address)
        if ip is None:
            return False
        if ip.is_unspecified:  # connecting to 0.0.0.0 or :: reaches this host's loopback
            ip = _LOOPBACK[ip.version]
        if (ip, port) in self.exact:
            return True
        return (ip.version, port) in self.wildcard and self._local_address(ip)

    def _local_address(self, ip: IP) -> bool:
        now = self._clock()
        cached = self._local.get(ip)
        if cached is not None and cached[1] > now:
            return cached[0]
        local = self._is_local(ip)
        if len(self._local) >= _LOCAL_CACHE_MAX:
            self._local.clear()
        self._local[ip] = (local, now + _LOCAL_CACHE_TTL)
        return local


def drop_own(
    targets: Sequence[T], is_own: Callable[[T], bool], preference: Callable[[T], int]
) -> tuple[list[T], bool]:
    """RFC 5321 section 5.1: when we are one of the MX hosts, drop ourselves and every host
    of equal or worse (higher) preference, since those would relay to us. Returns the
    targets to try and whether any of them was us."""
    own = [preference(t) for t in targets if is_own(t)]
    if not own:
        return list(targets), False
    best = min(own)
    return [t for t in targets if preference(t) < best and not is_own(t)], True


def names_host(reply: Reply | None, hostname: str) -> bool:
    """Whether a greeting or EHLO reply starts with ``hostname`` (Postfix: "host X greeted
    me with my own hostname")."""
    if reply is None or not hostname:
        return False
    words = reply.lines()[0].split(None, 1)
    return bool(words) and domain_key(words[0]) == domain_key(hostname)
