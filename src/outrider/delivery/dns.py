"""MX resolution for outbound delivery (RFC 5321 section 5.1, RFC 7505 null MX).

``MxResolver.resolve_mx`` turns a recipient domain into an ordered list of
delivery candidates, each with its addresses, or raises ``DnsError`` whose
``kind`` tells the caller whether to bounce or defer:

========================  =========================================  ==========
kind                      meaning                                    suggested
========================  =========================================  ==========
``NXDOMAIN``              the domain does not exist (or is not a     5.1.2
                          valid domain name)
``NULL_MX``               the domain publishes a null MX: it         5.1.10
                          accepts no mail (RFC 7505)
``NO_ADDRESSES``          no MX and no A/AAAA: the implicit MX is    5.4.4
                          unusable; RFC 5321 calls this an error,
                          Postfix bounces it, a cautious caller may
                          defer
``TEMPORARY``             SERVFAIL, REFUSED, timeout, network        4.4.3
                          error, or MX hosts none of which has an
                          address (RFC 5321: defer)
========================  =========================================  ==========

Answers are cached in-process (the MTA must not hammer its recursive resolver
once per message): positive answers until the RRset TTL runs out, NXDOMAIN and
NODATA for the RFC 2308 negative TTL (capped), temporary failures for a few
seconds only. Concurrent lookups of one (name, type) share a single query.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import dns.asyncresolver
import dns.exception
import dns.message
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.rdtypes.ANY.MX
import dns.resolver

from outrider.message import domains

__all__ = [
    "DnsError",
    "DnsErrorKind",
    "MxHost",
    "MxResolver",
    "normalize_domain",
    "order_mx",
    "parse_nameserver",
]

_MX = dns.rdatatype.MX
_A = dns.rdatatype.A
_AAAA = dns.rdatatype.AAAA

_MAX_POSITIVE_TTL = 86400.0  # a day, like most recursive resolvers' cache-max-ttl
_EDNS_PAYLOAD = 1232  # DNS flag day 2020: avoids IP fragmentation


class DnsErrorKind(enum.Enum):
    TEMPORARY = "temporary"
    NXDOMAIN = "nxdomain"
    NULL_MX = "null_mx"
    NO_ADDRESSES = "no_addresses"


_KIND_TEXT = {
    DnsErrorKind.TEMPORARY: "temporary DNS failure",
    DnsErrorKind.NXDOMAIN: "domain not found",
    DnsErrorKind.NULL_MX: "domain does not accept mail (null MX)",
    DnsErrorKind.NO_ADDRESSES: "domain has no MX and no address records",
}

_KIND_STATUS = {
    DnsErrorKind.TEMPORARY: "4.4.3",
    DnsErrorKind.NXDOMAIN: "5.1.2",
    DnsErrorKind.NULL_MX: "5.1.10",
    DnsErrorKind.NO_ADDRESSES: "5.4.4",
}


class DnsError(Exception):
    """A lookup outcome that yields no delivery candidate; ``kind`` drives bounce vs defer."""

    def __init__(self, kind: DnsErrorKind, domain: str, detail: str = "") -> None:
        super().__init__(kind, domain, detail)
        self.kind = kind
        self.domain = domain
        self.detail = detail

    @property
    def is_permanent(self) -> bool:
        """Whether the usual policy bounces (everything but ``TEMPORARY``)."""
        return self.kind is not DnsErrorKind.TEMPORARY

    @property
    def enhanced_status(self) -> str:
        """Suggested RFC 3463 status code for the bounce or deferral text."""
        return _KIND_STATUS[self.kind]

    def __str__(self) -> str:
        text = f"{self.domain}: {_KIND_TEXT[self.kind]}"
        return f"{text} ({self.detail})" if self.detail else text


@dataclass(frozen=True, slots=True)
class MxHost:
    name: str  # A-label host name, lower case, no trailing dot (or the IP literal)
    preference: int
    addresses: tuple[str, ...]  # in connection order
    implicit: bool = False  # no MX record: the domain's own address (RFC 5321 5.1)


def order_mx(records: Sequence[tuple[int, str]], rng: random.Random) -> list[tuple[int, str]]:
    """Sort by preference; shuffle among equal preference to spread load (RFC 5321 5.1).

    Sorting on a (preference, random) key yields a uniform permutation within
    each preference group in one C-level sort.
    """
    draw = rng.random
    return sorted(records, key=lambda record: (record[0], draw()))


def parse_nameserver(spec: str) -> tuple[str, int]:
    """Parse ``host``, ``host:port``, ``v6`` or ``[v6]:port``; the host must be an IP address."""
    text = spec.strip()
    port = 53
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"invalid nameserver {spec!r}: missing ']'")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"invalid nameserver {spec!r}")
            port = _parse_port(spec, rest[1:])
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = _parse_port(spec, port_text)
    else:
        host = text
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"invalid nameserver {spec!r}: not an IP address") from None
    return str(address), port


def build_resolver(
    nameservers: Sequence[str | tuple[str, int]] | None, *, timeout: float, lifetime: float
) -> dns.asyncresolver.Resolver:
    """A dnspython resolver that never falls back to the system resolver when servers are
    given (tests and benchmarks point at loopback). dnspython's cache is off: callers cache
    their converted answers themselves."""
    if nameservers is None:
        resolver = dns.asyncresolver.Resolver(configure=True)
    else:
        if not nameservers:
            raise ValueError("nameservers must not be empty (use None for the system resolver)")
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [
            dns.nameserver.Do53Nameserver(*_nameserver_address(spec)) for spec in nameservers
        ]
    resolver.cache = None
    resolver.timeout = timeout
    resolver.lifetime = lifetime
    resolver.use_edns(0, 0, _EDNS_PAYLOAD)
    return resolver


def _nameserver_address(spec: str | tuple[str, int]) -> tuple[str, int]:
    if isinstance(spec, str):
        return parse_nameserver(spec)
    host, port = spec
    if not 0 < port < 65536:
        raise ValueError(f"invalid nameserver {spec!r}: bad port")
    try:
        return str(ipaddress.ip_address(host)), port
    except ValueError:
        raise ValueError(f"invalid nameserver {spec!r}: not an IP address") from None


def _parse_port(spec: str, text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"invalid nameserver {spec!r}: bad port")
    return int(text)


def normalize_domain(domain: str) -> str:
    """The domain's normal form (:mod:`outrider.message.domains`), for look-ups and
    cache keys: the A-label we compute, so dnspython's own IDNA choice never applies.

    Raises ``DnsError(NXDOMAIN)`` for a name DNS cannot hold (and for an address
    literal): such a domain can never resolve, and 5.1.2 ("bad destination system
    address") fits it.
    """
    text = domain.strip()
    try:
        name = domains.normalize_domain(text)
    except domains.InvalidDomainError as exc:
        raise DnsError(
            DnsErrorKind.NXDOMAIN, domain, f"invalid domain name: {exc.reason}"
        ) from None
    if domains.is_address_literal(name):
        raise DnsError(DnsErrorKind.NXDOMAIN, domain, "an address literal is no domain name")
    return name


def _ip_literal(text: str) -> str | None:
    """The address in ``1.2.3.4``, ``[1.2.3.4]`` or ``[IPv6:::1]``, else None."""
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
        if text[:5].lower() == "ipv6:":
            text = text[5:]
    elif not text or not (text[0].isdigit() or text[0] == ":" or text[-1].isdigit()):
        return None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


class _Status(enum.Enum):
    OK = "ok"
    NODATA = "nodata"
    NXDOMAIN = "nxdomain"
    TEMPFAIL = "tempfail"


@dataclass(frozen=True, slots=True)
class _Outcome:
    """One cached (name, type) answer, already converted to plain Python values."""

    status: _Status
    mx: tuple[tuple[int, str], ...] = ()  # MX answers: (preference, exchange text)
    addresses: tuple[str, ...] = ()  # A/AAAA answers
    detail: str = ""


@dataclass(slots=True)
class _Entry:
    outcome: _Outcome
    expires: float


@dataclass(frozen=True, slots=True)
class _HostAddresses:
    addresses: tuple[str, ...]
    tempfail: bool
    nxdomain: bool
    detail: str


class MxResolver:
    """Caching, coalescing MX/address resolver; one instance is shared by all deliveries.

    ``nameservers`` entries are ``host``, ``host:port``, ``[v6]:port`` or a
    ``(host, port)`` tuple, hosts being IP addresses; when given,
    ``/etc/resolv.conf`` is never read. ``None`` uses the system resolver; an
    empty sequence is refused rather than silently meaning "system resolver".
    """

    def __init__(
        self,
        nameservers: Sequence[str | tuple[str, int]] | None = None,
        *,
        timeout: float = 5.0,
        lifetime: float = 10.0,
        max_cache_entries: int = 10000,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        ipv4: bool = True,
        ipv6: bool = True,
        prefer_ipv6: bool = False,
        randomize_addresses: bool = True,
        max_negative_ttl: float = 3600.0,
        tempfail_ttl: float = 3.0,
    ) -> None:
        if not (ipv4 or ipv6):
            raise ValueError("at least one of ipv4 and ipv6 must be enabled")
        self._resolver = build_resolver(nameservers, timeout=timeout, lifetime=lifetime)
        self._lifetime = lifetime
        self._max_entries = max_cache_entries
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._families = (
            ((_AAAA, _A) if prefer_ipv6 else (_A, _AAAA))
            if ipv4 and ipv6
            else ((_A,) if ipv4 else (_AAAA,))
        )
        self._ipv4 = ipv4
        self._ipv6 = ipv6
        self._randomize = randomize_addresses
        self._max_negative_ttl = max_negative_ttl
        self._tempfail_ttl = tempfail_ttl
        self._cache: OrderedDict[tuple[str, int], _Entry] = OrderedDict()
        self._inflight: dict[tuple[str, int], asyncio.Task[_Outcome]] = {}

    # -- public API -----------------------------------------------------------------

    async def resolve_mx(self, domain: str) -> list[MxHost]:
        """Ordered delivery candidates for ``domain``; raises ``DnsError``.

        A domain literal (``[192.0.2.1]``) yields that address without a lookup.
        MX hosts without addresses are skipped; an MX exchange written as an IP
        address (RFC-invalid but seen in the wild) is used as that address.
        """
        literal = _ip_literal(domain) if domain.startswith("[") else None
        if literal is not None:
            addresses = self._filter_literal(literal)
            if not addresses:
                raise DnsError(DnsErrorKind.NO_ADDRESSES, domain, "address family disabled")
            return [MxHost(domain, 0, addresses)]
        name = normalize_domain(domain)
        outcome = await self._lookup(name, _MX)
        if outcome.status is _Status.NXDOMAIN:
            raise DnsError(DnsErrorKind.NXDOMAIN, name, outcome.detail)
        if outcome.status is _Status.TEMPFAIL:
            raise DnsError(DnsErrorKind.TEMPORARY, name, f"MX lookup: {outcome.detail}")
        if outcome.status is _Status.NODATA:
            return [await self._implicit_mx(name)]
        return await self._mx_hosts(name, outcome.mx)

    async def resolve_addresses(self, host: str) -> tuple[str, ...]:
        """A and AAAA addresses of ``host`` in connection order; raises ``DnsError``.

        One family failing temporarily does not hide the other's addresses.
        """
        literal = _ip_literal(host)
        if literal is not None:
            addresses = self._filter_literal(literal)
            if not addresses:
                raise DnsError(DnsErrorKind.NO_ADDRESSES, host, "address family disabled")
            return addresses
        name = normalize_domain(host)
        result = await self._host_addresses(name)
        if result.addresses:
            return result.addresses
        if result.tempfail:
            raise DnsError(DnsErrorKind.TEMPORARY, name, result.detail)
        if result.nxdomain:
            raise DnsError(DnsErrorKind.NXDOMAIN, name)
        raise DnsError(DnsErrorKind.NO_ADDRESSES, name, "no A/AAAA records")

    def clear_cache(self) -> None:
        self._cache.clear()

    # -- MX logic -------------------------------------------------------------------

    async def _implicit_mx(self, name: str) -> MxHost:
        result = await self._host_addresses(name)
        if result.addresses:
            return MxHost(name, 0, result.addresses, implicit=True)
        if result.tempfail:
            raise DnsError(DnsErrorKind.TEMPORARY, name, f"implicit MX: {result.detail}")
        raise DnsError(DnsErrorKind.NO_ADDRESSES, name)

    async def _mx_hosts(self, name: str, records: tuple[tuple[int, str], ...]) -> list[MxHost]:
        # A null MX mixed with real ones is a misconfiguration (RFC 7505 3); the
        # real exchanges are still the publisher's best statement of intent.
        usable = [record for record in records if record[1] != "."]
        if not usable:
            raise DnsError(DnsErrorKind.NULL_MX, name, "MX 0 .")
        ordered: list[tuple[int, str]] = []
        seen: set[str] = set()
        for record in order_mx(usable, self._rng):
            if record[1] not in seen:  # keep the lowest preference of a duplicated host
                seen.add(record[1])
                ordered.append(record)

        found: dict[str, _HostAddresses] = {}
        missing: list[str] = []
        for _, host in ordered:
            literal = _ip_literal(host)
            if literal is not None:
                found[host] = _HostAddresses(self._filter_literal(literal), False, False, "")
                continue
            cached = self._cached_host_addresses(host)
            if cached is None:
                missing.append(host)
            else:
                found[host] = cached
        if len(missing) == 1:
            found[missing[0]] = await self._host_addresses(missing[0])
        elif missing:
            results = await asyncio.gather(*(self._host_addresses(host) for host in missing))
            found.update(zip(missing, results, strict=True))

        hosts = [
            MxHost(host, preference, found[host].addresses)
            for preference, host in ordered
            if found[host].addresses
        ]
        if hosts:
            return hosts
        failures = [f"{host}: {found[host].detail}" for _, host in ordered if found[host].tempfail]
        detail = "; ".join(failures) if failures else "no MX host has an address"
        raise DnsError(DnsErrorKind.TEMPORARY, name, detail)

    # -- addresses ------------------------------------------------------------------

    def _filter_literal(self, address: str) -> tuple[str, ...]:
        is_v6 = ":" in address
        return (address,) if (self._ipv6 if is_v6 else self._ipv4) else ()

    def _cached_host_addresses(self, name: str) -> _HostAddresses | None:
        outcomes = []
        for rdtype in self._families:
            outcome = self._cached((name, rdtype))
            if outcome is None:
                return None
            outcomes.append(outcome)
        return self._combine(outcomes)

    async def _host_addresses(self, name: str) -> _HostAddresses:
        if len(self._families) == 1:
            return self._combine([await self._lookup(name, self._families[0])])
        outcomes = await asyncio.gather(*(self._lookup(name, t) for t in self._families))
        return self._combine(outcomes)

    def _combine(self, outcomes: Sequence[_Outcome]) -> _HostAddresses:
        addresses: list[str] = []
        for outcome in outcomes:
            if self._randomize and len(outcome.addresses) > 1:
                family = list(outcome.addresses)
                self._rng.shuffle(family)
                addresses.extend(family)
            else:
                addresses.extend(outcome.addresses)
        tempfails = [o.detail for o in outcomes if o.status is _Status.TEMPFAIL]
        nxdomain = all(o.status is _Status.NXDOMAIN for o in outcomes)
        detail = "; ".join(tempfails) if tempfails else ("host not found" if nxdomain else "")
        return _HostAddresses(tuple(addresses), bool(tempfails), nxdomain, detail)

    # -- cache and in-flight coalescing ---------------------------------------------

    def _cached(self, key: tuple[str, int]) -> _Outcome | None:
        entry = self._cache.get(key)
        if entry is None:
            return None
        if entry.expires <= self._clock():
            del self._cache[key]
            return None
        self._cache.move_to_end(key)
        return entry.outcome

    async def _lookup(self, name: str, rdtype: int) -> _Outcome:
        key = (name, rdtype)
        cached = self._cached(key)
        if cached is not None:
            return cached
        loop = asyncio.get_running_loop()
        task = self._inflight.get(key)
        if task is None or task.get_loop() is not loop:
            task = loop.create_task(self._fetch(name, rdtype))
            self._inflight[key] = task
            task.add_done_callback(partial(self._fetch_done, key))
        # shield: one caller giving up must not cancel the query the others await
        return await asyncio.shield(task)

    def _fetch_done(self, key: tuple[str, int], task: asyncio.Task[_Outcome]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # mark retrieved; _fetch converts every DNS failure anyway

    async def _fetch(self, name: str, rdtype: int) -> _Outcome:
        outcome, ttl = await self._query(name, rdtype)
        if ttl > 0 and self._max_entries > 0:
            cache = self._cache
            cache[(name, rdtype)] = _Entry(outcome, self._clock() + ttl)
            cache.move_to_end((name, rdtype))
            while len(cache) > self._max_entries:
                cache.popitem(last=False)
        return outcome

    async def _query(self, name: str, rdtype: int) -> tuple[_Outcome, float]:
        """One network lookup, converted to an outcome and how long it may be cached."""
        # ``name`` is ASCII (our A-label, or an exchange as DNS gave it), so dnspython's
        # IDNA codec, 2003 or 2008 depending on what is installed, is never consulted.
        qname = dns.name.from_text(name)
        rdtype_enum = dns.rdatatype.RdataType.make(rdtype)
        try:
            answer = await self._resolver.resolve(
                qname, rdtype_enum, raise_on_no_answer=False, search=False
            )
        except dns.resolver.NXDOMAIN as exc:
            return _Outcome(_Status.NXDOMAIN), self._nxdomain_ttl(exc)
        except dns.exception.Timeout:
            return self._tempfail(f"timed out after {self._lifetime:g}s")
        except dns.resolver.NoNameservers as exc:
            return self._tempfail(_nameserver_errors(exc))
        except dns.exception.DNSException as exc:
            return self._tempfail(str(exc) or type(exc).__name__)
        except OSError as exc:
            return self._tempfail(f"network error: {exc}")
        ttl = float(answer.chaining_result.minimum_ttl)
        rrset = answer.rrset
        if rrset is None:
            return _Outcome(_Status.NODATA), min(ttl, self._max_negative_ttl)
        ttl = min(ttl, _MAX_POSITIVE_TTL)
        if rdtype == _MX:
            mx = tuple(
                (rd.preference, _exchange_text(rd.exchange))
                for rd in rrset
                if isinstance(rd, dns.rdtypes.ANY.MX.MX)
            )
            return _Outcome(_Status.OK, mx=mx), ttl
        return _Outcome(_Status.OK, addresses=tuple(rd.address for rd in rrset)), ttl

    def _tempfail(self, detail: str) -> tuple[_Outcome, float]:
        return _Outcome(_Status.TEMPFAIL, detail=detail), self._tempfail_ttl

    def _nxdomain_ttl(self, exc: dns.resolver.NXDOMAIN) -> float:
        ttl = 0.0
        try:
            responses: dict[dns.name.Name, dns.message.QueryMessage] = exc.kwargs["responses"]
            for response in responses.values():
                ttl = max(ttl, float(response.resolve_chaining().minimum_ttl))
        except (dns.exception.DNSException, KeyError):
            return 0.0
        return min(ttl, self._max_negative_ttl)


def _exchange_text(exchange: dns.name.Name) -> str:
    if exchange == dns.name.root:
        return "."
    return exchange.to_text(omit_final_dot=True).lower()


def _nameserver_errors(exc: dns.resolver.NoNameservers) -> str:
    """Short "SERVFAIL from 127.0.0.1@53" style text instead of dnspython's verbose repr."""
    errors = exc.kwargs.get("errors") or []
    parts = []
    for error in errors:
        # dnspython: (address, tcp, port, error text or exception, response)
        server, problem = str(error[0]).removeprefix("Do53:"), error[3]
        # A truncated answer with no TCP to retry over is an exception with no text.
        text = str(problem) or type(problem).__name__
        parts.append(f"{text} from {server}")
    return "; ".join(parts) if parts else "all nameservers failed"
