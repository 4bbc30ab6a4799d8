"""A post to a list is stored again as a copy to its members, exactly once."""

from __future__ import annotations

from outrider.config.loader import parse_config
from outrider.delivery.list_transport import ListExpander
from outrider.intake.build import build_notice_intake
from outrider.local.directory import Directory, LocalDomain, MailingList
from outrider.message.envelope import Envelope, Recipient, Source
from outrider.message.headers import header_value
from tests.support.memory_spool import MemorySpool

ORG = LocalDomain("example.com", frozenset({"alice", "bob"}))
TEAM = MailingList("team@example.com", ("alice@example.com", "far@elsewhere.example"))
POST = b"From: bob@example.com\r\nSubject: lunch\r\n\r\nnoon?\r\n"


class Sink:
    def __init__(self) -> None:
        self.got: list[Envelope] = []

    def accept(self, envelope: Envelope, body: bytes) -> None:
        self.got.append(envelope)


def expander(directory: Directory) -> tuple[ListExpander, MemorySpool, Sink]:
    config = parse_config(
        '[server]\nhostname = "mx.example.com"\n[[listener]]\naddress = "127.0.0.1:0"\n'
    )
    spool, sink = MemorySpool(), Sink()
    intake = build_notice_intake(config, spool=spool, sink=sink)
    return ListExpander(intake, lambda: directory), spool, sink


async def test_a_post_becomes_one_copy_from_the_bounce_address() -> None:
    lists, spool, sink = expander(Directory({"example.com": ORG}, {TEAM.address: TEAM}))
    post = Envelope(
        "Q1", "bob@example.com", [Recipient("bob@example.com"), Recipient("team@example.com")], 0.0
    )
    report = await lists.post(post, [post.recipients[1]], POST)
    [reply] = report.replies
    assert (reply.reply.code, reply.phase) == (250, "data-end")
    assert "as Q1-L1" in reply.reply.text
    [copy] = sink.got
    assert copy.queue_id == "Q1-L1"
    assert copy.sender == "team-bounces@example.com"
    assert copy.source is Source.LIST
    assert [r.address for r in copy.recipients] == ["alice@example.com", "far@elsewhere.example"]
    body = spool.bodies["Q1-L1"]
    assert header_value(body, "List-Id") == "<team.example.com>"
    assert body.endswith(POST.split(b"\r\n\r\n", 1)[1])
    again = await lists.post(post, [post.recipients[1]], POST)  # after a crash: same id
    assert again.replies[0].reply.code == 250
    assert len(sink.got) == 1  # stored once


async def test_loops_removed_lists_and_empty_lists() -> None:
    empty = MailingList("empty@example.com", ())
    lists, _, sink = expander(
        Directory({"example.com": ORG}, {TEAM.address: TEAM, empty.address: empty})
    )
    post = Envelope(
        "Q2",
        "bob@example.com",
        [
            Recipient("team@example.com"),
            Recipient("gone@example.com"),
            Recipient("empty@example.com"),
        ],
        0.0,
    )
    looped = b"List-Id: <team.example.com>\r\n" + POST
    report = await lists.post(post, post.recipients, looped)
    assert [r.reply.code for r in report.replies] == [554, 550, 250]
    assert sink.got == []
