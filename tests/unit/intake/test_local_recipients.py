"""Recipients at local domains: unknown addresses refused at RCPT, list posting rules,
aliases expanded before the message is stored."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from outrider.config.loader import parse_config
from outrider.intake import Accepted, Intake, MailEnvelope, MailRecipient, Verdict
from outrider.intake.build import build_intake
from outrider.local.build import LiveDirectory
from outrider.message.envelope import Envelope, Notify
from outrider.smtp.replies import RELAY_DENIED, Reply
from tests.support.memory_spool import MemorySpool
from tests.unit.intake.support import CONTENT, SMTP

CONFIG = """
[server]
hostname = "mx.example.com"
postmaster = "postmaster@example.com"
[[listener]]
address = "127.0.0.1:0"
relay-networks = []
[local-domain."example.com"]
mailboxes = ["alice", "bob", "carol"]
[local-domain."example.com".aliases]
postmaster = "alice"
sales = ["alice", "bob"]
fwd = "far@elsewhere.example"
loop = "loop2"
loop2 = "loop"
ghost = "nobody"
[list."team@example.com"]
members = ["alice@example.com", "carol@example.com", "out@elsewhere.example"]
[list."open@example.com"]
members = ["bob@example.com"]
allowed-senders = "anyone"
[list."partners@example.com"]
members = ["bob@example.com"]
allowed-senders = ["partner.example", "boss@elsewhere.example"]
"""


class Sink:
    def accept(self, envelope: Envelope, body: bytes) -> None:
        pass


def intake_for() -> Intake:
    config = parse_config(CONFIG)
    return build_intake(config, spool=MemorySpool(), sink=Sink(), users=None)


def rcpt(intake: Intake, recipient: str, sender: str = "s@outside.example") -> Reply | None:
    verdict = intake.check_rcpt(SMTP, sender, recipient)
    assert isinstance(verdict, Verdict)
    return verdict.reply


def code(reply: Reply | None) -> str:
    return "ok" if reply is None else f"{reply.code} {reply.enhanced}"


@pytest.mark.parametrize(
    ("recipient", "sender", "expected"),
    [
        ("alice@example.com", "s@outside.example", "ok"),  # a stranger may write to us
        ("ALICE@Example.COM", "s@outside.example", "ok"),
        ("alice+news@example.com", "s@outside.example", "ok"),
        ("sales@example.com", "s@outside.example", "ok"),
        ("nobody@example.com", "s@outside.example", "550 5.1.1"),
        ("ghost@example.com", "s@outside.example", "550 5.1.1"),  # an alias to nobody
        ("loop@example.com", "s@outside.example", "550 5.4.6"),
        ("team@example.com", "s@outside.example", "550 5.7.1"),
        ("team@example.com", "Carol@example.com", "ok"),
        ("team@example.com", "", "550 5.7.1"),  # a bounce is no post
        ("open@example.com", "s@outside.example", "ok"),
        ("partners@example.com", "x@partner.example", "ok"),
        ("partners@example.com", "boss@elsewhere.example", "ok"),
        ("partners@example.com", "other@elsewhere.example", "550 5.7.1"),
        ("user@elsewhere.example", "s@outside.example", code(RELAY_DENIED)),  # still no relay
    ],
)
def test_rcpt_time_answers(recipient: str, sender: str, expected: str) -> None:
    assert code(rcpt(intake_for(), recipient, sender)) == expected


async def test_aliases_are_expanded_with_orcpt_and_notify_kept() -> None:
    intake = intake_for()
    rcpts = (
        MailRecipient("sales@example.com", Notify.FAILURE),
        MailRecipient("fwd@example.com", None, "rfc822;Fwd@Example.com"),
        MailRecipient("bob@example.com"),
        MailRecipient("postmaster"),
    )
    result = await intake.submit(SMTP, MailEnvelope("s@outside.example", rcpts), CONTENT)
    assert isinstance(result, Accepted)
    stored = [(r.address, r.notify, r.orcpt) for r in result.envelope.recipients]
    # bob (asked directly too) and the postmaster (an alias of alice) are queued once
    assert stored == [
        ("alice@example.com", Notify.FAILURE, "rfc822;sales@example.com"),
        ("bob@example.com", Notify.FAILURE, "rfc822;sales@example.com"),
        ("far@elsewhere.example", None, "rfc822;Fwd@Example.com"),
    ]


def test_files_are_reread_when_they_change(tmp_path: Path) -> None:
    boxes = tmp_path / "boxes"
    boxes.write_text("alice\n")
    config = parse_config(
        '[[listener]]\naddress = "127.0.0.1:0"\n'
        f'[local-domain."example.com"]\nmailboxes-file = "{boxes}"\n'
    )
    now = [0.0]
    live = LiveDirectory(config, clock=lambda: now[0])
    assert not live.current().accepts("bob@example.com")
    boxes.write_text("alice\nbob\n")
    future = time.time() + 5
    os.utime(boxes, (future, future))
    assert not live.current().accepts("bob@example.com")  # looked at most once a second
    now[0] = 2.0
    assert live.current().accepts("bob@example.com")
    boxes.write_text("alice\n../bad\n")
    os.utime(boxes, (future + 5, future + 5))
    now[0] = 4.0
    assert live.current().accepts("bob@example.com")  # a bad file keeps the last good one
