"""Which virtual MTA (or pool) a message is sent from, decided once at intake.

The first that applies: ``X-Virtual-MTA`` (or the API's request) when the source may
choose, the listener's ``default-virtual-mta``, the sender domain's, the server's.
A requested name that does not exist is ignored (logged); a default that does not
exist gives ``"default"``. The choice is stored in ``Envelope.vmta`` with the message;
the scheduler only turns a pool into one of its members per delivery.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from outrider.config.model import DEFAULT_VMTA, Config
from outrider.message.domains import domain_key
from outrider.message.envelope import Envelope
from outrider.policy.vmta_select import select_vmta

log = logging.getLogger("outrider.intake")


@dataclass(frozen=True, slots=True)
class VmtaTable:
    """The names and defaults the choice needs, taken from the config once per (re)load."""

    known: frozenset[str]  # virtual MTAs and pools
    sender_defaults: Mapping[str, str]  # sender domain (normalised) -> its virtual-mta
    server_default: str = DEFAULT_VMTA

    @classmethod
    def from_config(cls, config: Config) -> VmtaTable:
        return cls(
            known=frozenset(config.virtual_mtas) | frozenset(config.vmta_pools),
            sender_defaults={
                domain: settings.virtual_mta
                for domain, settings in config.sender_domains.items()
                if settings.virtual_mta is not None
            },
            server_default=config.server.default_virtual_mta,
        )


def choose_vmta(
    table: VmtaTable,
    *,
    sender: str,
    requested: str | None,
    listener_default: str | None,
    queue_id: str = "",
) -> str:
    """The virtual MTA or pool for a message from ``sender``. ``requested``: the
    X-Virtual-MTA header when the listener honours it, or the API's request."""
    known = table.known
    if requested is not None and requested.strip() not in known:
        log.warning("%s: unknown X-Virtual-MTA %r ignored", queue_id, requested)
        requested = None
    sender_domain = domain_key(sender.rpartition("@")[2])
    chosen = select_vmta(
        header_value=requested,
        listener_allows_header=requested is not None,
        listener_default=listener_default,
        sender_domain_default=table.sender_defaults.get(sender_domain),
        server_default=table.server_default,
    ).strip()
    return chosen if chosen in known else DEFAULT_VMTA


def envelope_vmta(table: VmtaTable, envelope: Envelope) -> str:
    """The virtual MTA for a stored envelope: its own while that still exists, else
    chosen again from what it asked for (a spool file written before the intake chose,
    or a virtual MTA removed by a reload)."""
    if envelope.vmta in table.known:
        return envelope.vmta
    return choose_vmta(
        table,
        sender=envelope.sender,
        requested=envelope.vmta_request or None,
        listener_default=envelope.listener_vmta or None,
        queue_id=envelope.queue_id,
    )
