"""A scripted in-memory transport, for scheduler tests without sockets."""

from __future__ import annotations

from dataclasses import dataclass, field

from outrider.config.model import Config, DomainPolicy
from outrider.delivery.transport import DeliveryReport, Opened, RecipientReply, Route
from outrider.message.envelope import Envelope, Recipient
from outrider.policy.outcome import Outcome
from outrider.smtp.replies import Reply
from outrider.spool.reader import Body

OK = Reply(250, "2.0.0", "OK")


@dataclass
class Sent:
    queue_id: str
    recipients: list[str]
    destination: str
    vmta: str
    sender: str
    body: Body


@dataclass
class FakeTransport:
    """Replies per recipient address (default 250); open failures per domain; a
    destination key per domain (for rollup); ``lose`` makes every batch drop the
    connection (a site-level failure for the window)."""

    replies: dict[str, Reply] = field(default_factory=dict)
    greeting: dict[str, Reply] = field(default_factory=dict)  # domain -> refused greeting
    open_failures: dict[str, Outcome] = field(default_factory=dict)
    destinations: dict[str, str | Outcome] = field(default_factory=dict)
    lose: bool = False
    sent: list[Sent] = field(default_factory=list)
    opened: int = 0

    def destination(self, domain: str, policy: DomainPolicy) -> str | Outcome:
        return self.destinations.get(domain, domain)

    async def open(self, route: Route) -> Opened:
        refused = self.greeting.get(route.domain)
        if refused is not None:
            route.observe(refused, "greeting", "mx.fake")
        failure = self.open_failures.get(route.domain)
        if failure is not None:
            return Opened(None, failure)
        self.opened += 1
        return Opened(FakeConnection(self, route))

    def update_config(self, config: Config) -> None:
        return None


@dataclass
class FakeConnection:
    transport: FakeTransport
    route: Route
    usable: bool = True

    async def deliver(
        self, envelope: Envelope, recipients: list[Recipient], body: Body
    ) -> DeliveryReport:
        t = self.transport
        t.sent.append(
            Sent(
                envelope.queue_id,
                [r.address for r in recipients],
                self.route.destination,
                self.route.vmta,
                envelope.sender,
                body,
            )
        )
        replies = [RecipientReply(r, t.replies.get(r.address, OK), "rcpt") for r in recipients]
        if t.lose:
            self.usable = False
        return DeliveryReport(replies, remote_host="mx.fake", connection_lost=t.lose)

    async def can_carry(self, domain: str) -> bool:
        return True

    async def close(self) -> None:
        self.usable = False
