"""``outrider route ADDRESS``: what would happen to mail for an address now.

Asks the running daemon's own resolver, MTA-STS cache and config, so the answer is
what its deliveries would see: the postmaster mapping, a configured route or the MX
hosts (preferences and addresses), the delivery queue the mail joins, every policy
value with the table it came from, and the TLS requirement.
"""

from __future__ import annotations

from typing import Any

from outrider.config.model import Config
from outrider.config.provenance import explained_policy
from outrider.delivery.dns import DnsError
from outrider.delivery.smtp_transport import SmtpTransport
from outrider.intake.checks import PostmasterAddress
from outrider.local.directory import Directory, Kind
from outrider.local.lists import members_of
from outrider.message.domains import domain_key
from outrider.message.envelope import Recipient
from outrider.policy.outcome import Outcome


def _vmtas(config: Config, vmta: str | None) -> tuple[str, list[str]]:
    """The virtual MTA (or pool) asked for or the server's default, and its members."""
    name = vmta or config.server.default_virtual_mta
    pool = config.vmta_pools.get(name)
    return name, list(pool.members) if pool is not None else [name]


def explain_local(config: Config, directory: Directory, address: str) -> dict[str, Any] | None:
    """For an address of a local domain (or a bounce to an SRS address): what it is and
    where its mail goes; None for any other address."""
    found = directory.lookup(address)
    if found.kind is Kind.REMOTE:
        return None
    answer: dict[str, Any] = {"kind": found.kind.value, "address": found.address}
    if found.kind is Kind.UNKNOWN:
        answer["refused"] = "550 5.1.1 at RCPT: no such mailbox, alias or list"
        return answer
    expansion = directory.expand(address)
    answer["mailboxes"] = [t.address for t in expansion.mailboxes]
    answer["forwarded"] = expansion.remote
    answer["lists"] = expansion.lists
    answer["loop"] = expansion.loop or None
    if found.kind is Kind.LIST:
        answer["members"] = list(members_of(directory, found.address))
    settings = config.local_domains.get(found.domain)
    if settings is not None:
        answer["transport"] = str(settings.transport)
        if settings.transport.kind == "maildir" and found.kind is Kind.MAILBOX:
            answer["maildir"] = settings.maildir.format(domain=found.domain, user=found.mailbox)
    return answer


async def explain_route(
    config: Config,
    transport: SmtpTransport,
    address: str,
    vmta: str | None,
    directory: Directory | None = None,
) -> dict[str, Any]:
    """The answer (raises ValueError for an address or virtual MTA that cannot be)."""
    if directory is not None:
        local = explain_local(config, directory, address)
        if local is not None:
            return {"address": address, "delivery": "local", "local": local}
    name, members = _vmtas(config, vmta)
    if name not in config.virtual_mtas and name not in config.vmta_pools:
        raise ValueError(f"no virtual MTA or pool named {name}")
    postmaster = PostmasterAddress(config.server.hostname, config.server.postmaster)
    mapped = postmaster.address if postmaster.names(address) else None
    target = mapped or address
    if "@" not in target:
        raise ValueError(f"{address} has no domain (mail for it is refused)")
    domain = Recipient(target).domain
    policy = config.policy_for(domain)
    answer: dict[str, Any] = {
        "address": address,
        "postmaster_mapped_to": mapped,
        "domain": domain,
        "relay_domain": config.is_relay_domain(domain_key(domain)),
        "vmta": name,
        "delivery": "route" if policy.route is not None else "mx",
        "hosts": [],
        "error": None,
    }
    if policy.route is not None:
        host, port = policy.route
        answer["hosts"] = [{"host": host, "port": port, "preference": None, "addresses": []}]
        try:
            addresses = await transport.resolver.resolve_addresses(host)
            answer["hosts"][0]["addresses"] = list(addresses)
        except DnsError as exc:
            answer["error"] = str(exc)
    else:
        try:
            hosts = await transport.resolver.resolve_mx(domain)
        except DnsError as exc:
            answer["error"] = str(exc)
        else:
            if hosts and hosts[0].implicit:
                answer["delivery"] = "implicit-mx"
            answer["hosts"] = [
                {
                    "host": h.name,
                    "port": policy.smtp_port,
                    "preference": h.preference,
                    "addresses": list(h.addresses),
                }
                for h in hosts
            ]
    found = transport.destination(domain, policy)
    if not isinstance(found, str | Outcome):
        found = await found
    if isinstance(found, Outcome):
        answer["queues"] = []
        answer["error"] = answer["error"] or found.diagnostic
    else:
        answer["queues"] = [f"{found}/{member}" for member in members]
    tls = await transport.tls_for(domain, policy)
    answer["tls"] = {
        "mode": tls.mode,
        "verify": tls.verify,
        "source": tls.source,
        "mta_sts_mx": list(tls.mx_patterns or tls.testing_mx_patterns),
    }
    answer["policy"] = explained_policy(config, domain, members[0] if len(members) == 1 else None)
    return answer
