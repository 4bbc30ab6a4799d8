"""The bounce-domain transport: mail for a ``[bounce-domain]`` is consumed, never relayed.

The selector (:class:`~outrider.delivery.local_transport.LocalDelivery`) routes a bounce
domain here. Each recipient's "delivery" is the consumer reading the message; the reply
is always 250, so the message is finished like a local delivery (a ``d`` row with
``dsnMta`` ``bounce-domain``) and can never become a bounce of a bounce. Only a spool
read error (a damaged file) raises, as for any transport.
"""

from __future__ import annotations

from outrider.config.model import Config, DomainPolicy
from outrider.delivery.transport import DeliveryReport, Opened, RecipientReply, Route
from outrider.feedback.consumer import FeedbackConsumer
from outrider.message.envelope import Envelope, Recipient
from outrider.smtp.replies import Reply
from outrider.spool.reader import Body, body_chunks

HOST = "bounce-domain"
CONSUMED = Reply(250, "2.0.0", "Consumed by the bounce domain")
MAX_READ = 10 * 1024 * 1024  # octets of a message read: reports are small


class BounceConnection:
    usable = True

    def __init__(self, consumer: FeedbackConsumer) -> None:
        self.consumer = consumer

    async def deliver(
        self, envelope: Envelope, recipients: list[Recipient], body: Body
    ) -> DeliveryReport:
        data = await read_body(body)
        replies = []
        for rcpt in recipients:
            self.consumer.consume(rcpt.address, data, envelope.queue_id)
            replies.append(RecipientReply(rcpt, CONSUMED, "data-end"))
        return DeliveryReport(replies=replies, remote_host=HOST)

    async def can_carry(self, domain: str) -> bool:
        return True

    async def close(self) -> None:
        return None


async def read_body(body: Body) -> bytes:
    if isinstance(body, bytes):
        return body[:MAX_READ]
    parts: list[bytes] = []
    size = 0
    chunks = body_chunks(body)
    try:
        async for chunk in chunks:
            parts.append(chunk)
            size += len(chunk)
            if size >= MAX_READ:
                break
    finally:
        await chunks.aclose()
    return b"".join(parts)[:MAX_READ]


class BounceTransport:
    def __init__(self, consumer: FeedbackConsumer) -> None:
        self.consumer = consumer

    def destination(self, domain: str, policy: DomainPolicy) -> str:
        return f"{HOST}:{domain}"

    async def open(self, route: Route) -> Opened:
        return Opened(BounceConnection(self.consumer))

    def update_config(self, config: Config) -> None:
        return None  # the daemon rebuilds the consumer's keys on reload
