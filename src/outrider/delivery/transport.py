"""The transport contract: how the scheduler hands mail to something that delivers it.

A :class:`Transport` opens connections for a route; a :class:`Connection` carries one
batch (one message, some recipients) at a time and says, per recipient, what the far
end replied. Transports report facts only: classifying replies, applying response
patterns, retrying and bouncing stay in the scheduler, so SMTP, LMTP, Maildir or a
pipe all get the same shaping, retries, DSNs and accounting.

Failures that stop a batch before any recipient was tried carry an
:class:`~outrider.policy.outcome.Outcome` whose ``scope`` says how far they reach
(the recipient, the message, the recipient domain, or the whole destination); the
scheduler reads that scope in exactly one place.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from outrider.config.model import Config, DomainPolicy
from outrider.message.envelope import Envelope, Recipient
from outrider.policy.outcome import Outcome
from outrider.smtp.replies import Reply
from outrider.spool.reader import Body

# Called with (reply, phase, remote host) for replies seen outside a transaction, such
# as a refused greeting, so response patterns (backoff mode) can react to them.
Observer = Callable[[Reply, str, str], None]


@dataclass(frozen=True, slots=True)
class Route:
    domain: str  # the recipient domain the connection is opened for
    destination: str  # the delivery queue's destination key
    vmta: str  # the concrete virtual MTA (source IP, EHLO name)
    policy: DomainPolicy
    observe: Observer


@dataclass(slots=True)
class RecipientReply:
    recipient: Recipient
    reply: Reply
    phase: str  # "mail", "rcpt" or "data-end": which command the reply answered


@dataclass(slots=True)
class DeliveryReport:
    replies: list[RecipientReply] = field(default_factory=list)
    remote_host: str = ""
    source_ip: str = ""
    destination_ip: str = ""
    peer_dsn: bool = False  # the peer took over DSN duty (RFC 3461 5.2.2)
    esmtp: str = ""  # the EHLO keywords the peer offered, space-separated (dlvEsmtpAvailable)
    connection_lost: bool = False
    # Set when the batch could not be attempted at all (e.g. the next MX after a 421
    # could not be reached); replies is then empty.
    failure: Outcome | None = None


class Connection(Protocol):
    @property
    def usable(self) -> bool:
        """Whether another batch may be sent on this connection."""
        ...

    async def deliver(
        self, envelope: Envelope, recipients: list[Recipient], body: Body
    ) -> DeliveryReport:
        """``body`` is in memory, or a :class:`~outrider.spool.reader.StoredBody` to
        read in chunks as it is sent (a big message is never held whole)."""
        ...

    async def can_carry(self, domain: str) -> bool:
        """Whether mail for ``domain`` may reuse this connection (e.g. its TLS policy)."""
        ...

    async def close(self) -> None: ...


class ConnectionWrapper:
    """A connection that adds to another's ``deliver`` (list posts, SRS) and hands the
    rest of the contract to it unchanged."""

    def __init__(self, inner: Connection) -> None:
        self.inner = inner

    @property
    def usable(self) -> bool:
        return self.inner.usable

    async def can_carry(self, domain: str) -> bool:
        return await self.inner.can_carry(domain)

    async def close(self) -> None:
        await self.inner.close()


@dataclass(slots=True)
class Opened:
    connection: Connection | None
    failure: Outcome | None = None  # why no connection could be opened


class Transport(Protocol):
    def destination(
        self, domain: str, policy: DomainPolicy
    ) -> str | Outcome | Awaitable[str | Outcome]:
        """The destination key whose queue carries ``domain``'s mail (the domain itself,
        or a shared key such as an MX host set), or an Outcome when it cannot be
        known (DNS says the domain does not exist). Answer directly when no lookup is
        needed: the scheduler then routes without creating a task."""
        ...

    async def open(self, route: Route) -> Opened: ...

    def update_config(self, config: Config) -> None: ...


# Chooses the transport for a recipient domain; the scheduler never names one.
TransportSelector = Callable[[str, DomainPolicy], Transport]
