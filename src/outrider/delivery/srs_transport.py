"""Forwarded recipients leave with an SRS sender (:mod:`outrider.local.srs`).

The intake marks the recipients a local alias forwards to remote addresses. When a
batch for a remote destination holds some, they go in a transaction of their own, from
the rewritten sender, on the same connection; the others keep the original sender.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable

from outrider.config.model import Config, DomainPolicy
from outrider.delivery.transport import (
    Connection,
    ConnectionWrapper,
    DeliveryReport,
    Opened,
    Route,
    Transport,
)
from outrider.local.srs import Srs
from outrider.message.envelope import Envelope, Recipient, forwarded_recipients
from outrider.policy.outcome import Outcome
from outrider.spool.reader import Body


class SrsConnection(ConnectionWrapper):
    def __init__(self, inner: Connection, srs: Srs) -> None:
        super().__init__(inner)
        self.srs = srs

    async def deliver(
        self, envelope: Envelope, recipients: list[Recipient], body: Body
    ) -> DeliveryReport:
        marked = forwarded_recipients(envelope)
        if not marked or not envelope.sender:
            return await self.inner.deliver(envelope, recipients, body)
        index = {id(r): i for i, r in enumerate(envelope.recipients)}
        forwards = [r for r in recipients if index.get(id(r)) in marked]
        if not forwards:
            return await self.inner.deliver(envelope, recipients, body)
        others = [r for r in recipients if index.get(id(r)) not in marked]
        report = await self.inner.deliver(envelope, others, body) if others else None
        if report is not None and not self.inner.usable:
            return report  # the forwarded ones get no reply: tried again later
        rewritten = dataclasses.replace(envelope, sender=self.srs.forward(envelope.sender))
        forwarded = await self.inner.deliver(rewritten, forwards, body)
        if report is None:
            return forwarded
        report.replies.extend(forwarded.replies)
        report.connection_lost = report.connection_lost or forwarded.connection_lost
        return report


class SrsTransport:
    def __init__(self, inner: Transport, srs: Callable[[], Srs | None]) -> None:
        self.inner = inner
        self.srs = srs

    def destination(
        self, domain: str, policy: DomainPolicy
    ) -> str | Outcome | Awaitable[str | Outcome]:
        return self.inner.destination(domain, policy)

    async def open(self, route: Route) -> Opened:
        opened = await self.inner.open(route)
        srs = self.srs()
        if opened.connection is None or srs is None:
            return opened
        return Opened(SrsConnection(opened.connection, srs))

    def update_config(self, config: Config) -> None:
        self.inner.update_config(config)
