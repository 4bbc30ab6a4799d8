"""Forwarded recipients get a transaction of their own, from the SRS sender."""

from __future__ import annotations

from outrider.delivery.srs_transport import SrsConnection
from outrider.delivery.transport import DeliveryReport, RecipientReply
from outrider.local.srs import Srs
from outrider.message.envelope import FORWARDED, Envelope, Recipient
from outrider.smtp.replies import Reply
from outrider.spool.reader import Body

SRS = Srs(b"k" * 32, "srs.example.net")
OK = Reply(250, "2.0.0", "ok")


class Inner:
    usable = True

    def __init__(self) -> None:
        self.sent: list[tuple[str, list[str]]] = []

    async def deliver(
        self, envelope: Envelope, recipients: list[Recipient], body: Body
    ) -> DeliveryReport:
        self.sent.append((envelope.sender, [r.address for r in recipients]))
        return DeliveryReport([RecipientReply(r, OK, "data-end") for r in recipients])

    async def can_carry(self, domain: str) -> bool:
        return True

    async def close(self) -> None:
        pass


def envelope(sender: str = "bob@sender.example", forwarded: str = "1,2") -> Envelope:
    rcpts = [Recipient(f"r{i}@far.example") for i in range(4)]
    env = Envelope("Q1", sender, rcpts, 0.0)
    if forwarded:
        env.extra = {FORWARDED: forwarded}
    return env


async def test_forwarded_recipients_go_from_the_rewritten_sender() -> None:
    inner = Inner()
    env = envelope()
    report = await SrsConnection(inner, SRS).deliver(env, env.recipients, b"body")
    [(plain, first), (rewritten, second)] = inner.sent
    assert (plain, first) == ("bob@sender.example", ["r0@far.example", "r3@far.example"])
    assert rewritten.startswith("SRS0=") and rewritten.endswith("@srs.example.net")
    assert SRS.reverse(rewritten) == "bob@sender.example"
    assert second == ["r1@far.example", "r2@far.example"]
    assert sorted(r.recipient.address for r in report.replies) == [
        r.address for r in env.recipients
    ]
    assert env.sender == "bob@sender.example"  # the stored envelope is not changed


async def test_nothing_forwarded_or_a_bounce_is_one_transaction() -> None:
    for env in (envelope(forwarded=""), envelope(sender="")):
        inner = Inner()
        await SrsConnection(inner, SRS).deliver(env, env.recipients, b"body")
        assert len(inner.sent) == 1 and inner.sent[0][0] == env.sender
    inner = Inner()
    env = envelope(forwarded="1")
    await SrsConnection(inner, SRS).deliver(env, [env.recipients[1]], b"body")
    assert [s[1] for s in inner.sent] == [["r1@far.example"]] and inner.sent[0][0].startswith(
        "SRS0="
    )
