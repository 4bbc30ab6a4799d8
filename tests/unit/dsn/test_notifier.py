"""The DSN notifier: builds an owed notice, stores it under its derived queue id, and
schedules it only once the original has recorded it; every failure leaves it owed."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
from dataclasses import dataclass, field

import pytest

from outrider.config.model import DomainPolicy
from outrider.dsn.builder import MAX_RETURNED_SIZE, RETURNED_HEAD
from outrider.dsn.notices import DELAYED, FAILED, RELAYED
from outrider.dsn.notifier import DsnNotifier, dsn_envelope, status_for
from outrider.events.types import NoticeDue
from outrider.intake.core import Accepted, Rejected
from outrider.intake.sink import HeldSink
from outrider.intake.submission import MailEnvelope, MailRecipient, Submission
from outrider.message.envelope import Envelope, Notify, RcptStatus, Recipient, Source
from outrider.smtp.replies import Reply
from outrider.spool.base import DuplicateMessageError

NOW = 1_795_811_465.0
ARRIVED = NOW - 3600
ORIGINAL = b"From: s@example.com\r\nSubject: hello\r\n\r\nbody\r\n"


def original(kind: str = FAILED, *, sender: str = "s@example.com") -> Envelope:
    rcpt = Recipient("user@example.org", last_reply="550 5.1.1 no such user", last_mta="mx.test")
    if kind == FAILED:
        rcpt.status = RcptStatus.BOUNCED
    elif kind == RELAYED:
        rcpt.status, rcpt.relayed_owed = RcptStatus.DELIVERED, True
        rcpt.notify, rcpt.last_reply = Notify.SUCCESS, "250 2.0.0 ok"
    else:
        rcpt.last_reply = "451 4.7.1 try later"
    env = Envelope("Q1", sender, [rcpt], ARRIVED, size=len(ORIGINAL))
    env.notices = kind
    return env


@dataclass
class Desk:
    env: Envelope | None
    stored: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    submitted: list[tuple[Envelope, bytes | None]] = field(default_factory=list)
    store_fails: bool = False

    def envelope(self, queue_id: str) -> Envelope | None:
        return self.env if self.env is not None and self.env.queue_id == queue_id else None

    async def notice_stored(self, queue_id: str, kind: str) -> None:
        if self.store_fails:
            raise OSError("disk full")
        self.stored.append((queue_id, kind))

    def notice_failed(self, queue_id: str, kind: str) -> None:
        self.failed.append((queue_id, kind))

    def submit(self, envelope: Envelope, body: bytes | None) -> None:
        self.submitted.append((envelope, body))


@dataclass
class FakeIntake:
    """Stores into ``held`` like the real intake, or fails as told."""

    held: HeldSink
    hostname: str = "mx.test"
    outcome: str = "accept"  # or "reject", "duplicate", "crash", "lose"
    calls: list[tuple[Submission, MailEnvelope, bytes, str | None]] = field(default_factory=list)

    async def submit(
        self, submission: Submission, mail: MailEnvelope, content: bytes, *, queue_id: str | None
    ) -> Accepted | Rejected:
        self.calls.append((submission, mail, content, queue_id))
        if self.outcome == "reject":
            return Rejected(Reply(452, "4.3.1", "spool full"))
        if self.outcome == "duplicate":
            raise DuplicateMessageError(queue_id)
        if self.outcome == "crash":
            raise RuntimeError("pipeline broke")
        env = Envelope(queue_id or "", "", [Recipient(mail.recipients[0].address)], NOW)
        if self.outcome != "lose":  # "lose": stored, but the sink lost it
            self.held.accept(env, content)
        return Accepted(env)


@dataclass
class FakeSpool:
    body: bytes = ORIGINAL
    broken: bool = False
    reads: list[str] = field(default_factory=list)

    async def load_body(self, queue_id: str) -> bytes:
        self.reads.append("whole")
        return self._body(queue_id)

    async def open_body(self, queue_id: str) -> bytes:
        self.reads.append("head")
        return self._body(queue_id)

    def _body(self, queue_id: str) -> bytes:
        if self.broken or queue_id != "Q1":
            raise OSError(f"{queue_id} is gone")
        return self.body


@dataclass
class Rig:
    desk: Desk
    intake: FakeIntake
    spool: FakeSpool
    held: HeldSink
    notifier: DsnNotifier


def rig(env: Envelope | None, **intake: object) -> Rig:
    held = HeldSink()
    desk, spool = Desk(env), FakeSpool()
    fake = FakeIntake(held, **intake)  # type: ignore[arg-type]
    policy = DomainPolicy(bounce_after=86400.0)
    notifier = DsnNotifier(
        spool,  # type: ignore[arg-type]
        fake,  # type: ignore[arg-type]
        held,
        desk,
        policy_for=lambda domain: policy if domain == "example.org" else DomainPolicy(),
        clock=lambda: NOW,
    )
    return Rig(desk, fake, spool, held, notifier)


def parse(data: bytes) -> email.message.EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, email.message.EmailMessage)
    return msg


def report_fields(data: bytes) -> dict[str, str]:
    """The per-recipient fields of the (single-recipient) delivery-status part."""
    blocks = list(parse(data).iter_parts())[1].get_payload()
    assert isinstance(blocks, list)
    return dict(blocks[1].items())


# --- pure helpers ---


def test_a_failure_notice_for_a_temporary_reply_says_expired() -> None:
    assert status_for(FAILED, "4.2.2") == "4.4.7"
    assert status_for(FAILED, "5.1.1") == "5.1.1"
    assert status_for(DELAYED, "4.2.2") == "4.2.2"
    assert status_for(RELAYED, "2.0.0") == "2.0.0"


def test_the_dsn_envelope_goes_from_the_null_sender_to_the_original_sender() -> None:
    env = dsn_envelope(original(), "Q1-F", b"notice", NOW)
    assert (env.queue_id, env.sender, [r.address for r in env.recipients]) == (
        "Q1-F",
        "",
        ["s@example.com"],
    )
    assert (env.received_at, env.size, env.source) == (NOW, 6, Source.DSN)
    assert (env.smtputf8, env.body_8bit) == (False, False)


def test_the_dsn_envelope_needs_smtputf8_only_for_a_utf8_sender() -> None:
    env = dsn_envelope(original(sender="jörg@example.com"), "Q1-F", "ü".encode(), NOW)
    assert env.smtputf8 and env.body_8bit
    ascii_sender = dsn_envelope(original(), "Q1-F", "ü".encode(), NOW)
    assert not ascii_sender.smtputf8 and ascii_sender.body_8bit


# --- sending ---


async def test_a_failure_notice_is_stored_recorded_then_scheduled() -> None:
    r = rig(original())
    await r.notifier._send("Q1", FAILED)
    [(submission, mail, data, queue_id)] = r.intake.calls
    assert queue_id == "Q1-F"
    assert (submission.source, submission.protocol, submission.smtputf8) == (
        Source.DSN,
        "local",
        False,
    )
    assert mail == MailEnvelope("", (MailRecipient("s@example.com"),))
    assert r.desk.stored == [("Q1", FAILED)]
    assert [(e.queue_id, body) for e, body in r.desk.submitted] == [("Q1-F", data)]
    assert r.held.held == {} and r.desk.failed == []
    msg = parse(data)
    assert msg["Message-ID"] == "<Q1-F@mx.test>"
    assert msg["Date"] == "Fri, 27 Nov 2026 20:31:05 +0000"
    fields = report_fields(data)
    assert fields["Action"] == "failed"
    assert fields["Status"] == "5.1.1"
    assert fields["Remote-MTA"] == "dns; mx.test"
    assert fields["Diagnostic-Code"] == "smtp; 550 5.1.1 no such user"
    assert ORIGINAL in data  # returned whole


async def test_a_utf8_sender_gets_its_notice_over_smtputf8() -> None:
    r = rig(original(sender="jörg@example.com"))
    await r.notifier._send("Q1", FAILED)
    assert r.intake.calls[0][0].smtputf8


async def test_an_expired_recipient_is_reported_failed_with_4_4_7() -> None:
    env = original()
    env.recipients[0].last_reply = "452 4.2.2 mailbox full"
    r = rig(env)
    await r.notifier._send("Q1", FAILED)
    assert report_fields(r.intake.calls[0][2])["Status"] == "4.4.7"


@pytest.mark.parametrize(
    ("kind", "reply", "status"),
    [(FAILED, "550 gone", "5.0.0"), (DELAYED, "451 later", "4.0.0"), (RELAYED, "250 ok", "2.0.0")],
)
async def test_a_reply_without_a_status_gets_the_kinds_default(
    kind: str, reply: str, status: str
) -> None:
    env = original(kind)
    env.recipients[0].last_reply = reply
    r = rig(env)
    await r.notifier._send("Q1", kind)
    assert report_fields(r.intake.calls[0][2])["Status"] == status


async def test_a_delay_notice_says_until_when_it_is_retried() -> None:
    r = rig(original(DELAYED))
    await r.notifier._send("Q1", DELAYED)
    data = r.intake.calls[0][2]
    assert r.intake.calls[0][3] == "Q1-D"
    fields = report_fields(data)
    assert fields["Action"] == "delayed"
    assert fields["Status"] == "4.7.1"
    # arrival + the recipient domain's bounce-after (one day)
    assert fields["Will-Retry-Until"] == "Sat, 28 Nov 2026 19:31:05 +0000"
    assert r.desk.stored == [("Q1", DELAYED)]


async def test_a_relayed_notice_reports_the_delivery() -> None:
    r = rig(original(RELAYED))
    await r.notifier._send("Q1", RELAYED)
    assert r.intake.calls[0][3] == "Q1-S"
    fields = report_fields(r.intake.calls[0][2])
    assert (fields["Action"], fields["Status"]) == ("relayed", "2.0.0")


async def test_nothing_is_sent_for_a_message_gone_or_a_notice_not_owed() -> None:
    gone = rig(None)
    await gone.notifier._send("Q1", FAILED)
    not_owed = rig(original(FAILED))
    await not_owed.notifier._send("Q1", DELAYED)
    for r in (gone, not_owed):
        assert r.intake.calls == [] and r.desk.stored == [] and r.desk.submitted == []


async def test_a_notice_with_nobody_left_to_report_on_is_cleared() -> None:
    env = original()
    env.recipients[0].notify = Notify.NEVER
    r = rig(env)
    await r.notifier._send("Q1", FAILED)
    assert r.intake.calls == [] and r.desk.submitted == []
    assert r.desk.stored == [("Q1", FAILED)]


@pytest.mark.parametrize("outcome", ["reject", "crash"])
async def test_a_notice_that_cannot_be_stored_stays_owed(outcome: str) -> None:
    r = rig(original(), outcome=outcome)
    await r.notifier._send("Q1", FAILED)
    assert r.desk.failed == [("Q1", FAILED)]
    assert r.desk.stored == [] and r.desk.submitted == []


async def test_a_notice_stored_by_an_earlier_try_is_cleared_and_scheduled() -> None:
    r = rig(original(), outcome="duplicate")
    await r.notifier._send("Q1", FAILED)
    assert r.desk.stored == [("Q1", FAILED)] and r.desk.failed == []
    [(env, body)] = r.desk.submitted
    assert body is None  # read from the spool
    assert (env.queue_id, env.sender, env.source) == ("Q1-F", "", Source.DSN)
    assert [rcpt.address for rcpt in env.recipients] == ["s@example.com"]
    assert env.received_at == NOW


async def test_a_duplicate_whose_clearing_fails_is_not_scheduled() -> None:
    r = rig(original(), outcome="duplicate")
    r.desk.store_fails = True
    await r.notifier._send("Q1", FAILED)
    assert r.desk.failed == [("Q1", FAILED)] and r.desk.submitted == []


async def test_a_dsn_is_scheduled_only_once_its_original_recorded_it() -> None:
    r = rig(original())
    r.desk.store_fails = True
    await r.notifier._send("Q1", FAILED)
    assert r.desk.failed == [("Q1", FAILED)]
    assert r.desk.submitted == []
    assert r.held.held == {}  # released: the next try finds it stored (a duplicate)


async def test_a_dsn_the_sink_lost_is_not_scheduled_twice() -> None:
    r = rig(original(), outcome="lose")
    await r.notifier._send("Q1", FAILED)
    assert r.desk.stored == [("Q1", FAILED)] and r.desk.submitted == []


# --- the original's content ---


async def test_a_small_original_is_read_whole_and_returned() -> None:
    r = rig(original())
    await r.notifier._send("Q1", FAILED)
    assert r.spool.reads == ["whole"]
    assert b"Content-Type: message/rfc822" in r.intake.calls[0][2]


async def test_a_big_original_is_read_only_up_to_its_head() -> None:
    env = original()
    env.size = MAX_RETURNED_SIZE + 1
    r = rig(env)
    r.spool.body = ORIGINAL + b"x" * (RETURNED_HEAD + 100)
    await r.notifier._send("Q1", FAILED)
    assert r.spool.reads == ["head"]
    data = r.intake.calls[0][2]
    assert b"Content-Type: text/rfc822-headers" in data
    assert f"({MAX_RETURNED_SIZE + 1} bytes)".encode() in data  # the real size


async def test_an_original_exactly_at_the_limit_is_read_whole() -> None:
    env = original()
    env.size = MAX_RETURNED_SIZE
    r = rig(env)
    await r.notifier._send("Q1", FAILED)
    assert r.spool.reads == ["whole"]


async def test_an_unreadable_original_still_gets_its_notice() -> None:
    r = rig(original())
    r.spool.broken = True
    await r.notifier._send("Q1", FAILED)
    data = r.intake.calls[0][2]
    assert r.desk.submitted and r.desk.failed == []
    parts = list(parse(data).iter_parts())
    assert len(parts) == 2  # no third part
    assert "no longer available" in " ".join(str(parts[0].get_content()).split())


# --- events ---


async def test_a_notice_due_event_sends_the_notice() -> None:
    r = rig(original())
    r.notifier.handle([NoticeDue(NOW, "Q1", FAILED)])
    # named for the message, as a task dump shows it
    assert [task.get_name() for task in r.notifier._tasks] == ["dsn-Q1"]
    await r.notifier.drain(5)
    assert r.desk.stored == [("Q1", FAILED)] and len(r.desk.submitted) == 1
    await asyncio.sleep(0)
    assert r.notifier._tasks == set()  # a finished task is forgotten


async def test_drain_waits_for_notices_under_way() -> None:
    r = rig(original())
    gate = asyncio.Event()
    stored = r.desk.notice_stored

    async def slow(queue_id: str, kind: str) -> None:
        await gate.wait()
        await stored(queue_id, kind)

    r.desk.notice_stored = slow  # type: ignore[method-assign]
    r.notifier.handle([NoticeDue(NOW, "Q1", FAILED)])
    assert await r.notifier.drain(0.05) is False  # a stop then writes no schedule snapshot
    assert r.notifier.busy
    assert r.desk.stored == []  # timed out: still under way
    gate.set()
    assert await r.notifier.drain(5) is True
    assert not r.notifier.busy
    assert r.desk.stored == [("Q1", FAILED)]


async def test_other_events_are_ignored() -> None:
    r = rig(original())
    r.notifier.handle([object()])  # type: ignore[list-item]
    assert r.notifier._tasks == set()
    assert await r.notifier.drain(0.01) is True  # nothing under way: returns


# --- what the log says ---


def log_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [rec.getMessage() for rec in caplog.records if rec.name == "outrider.dsn"]


async def test_a_sent_notice_is_logged_with_its_id_and_recipient(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "outrider.dsn")
    await rig(original()).notifier._send("Q1", FAILED)
    assert log_lines(caplog) == ["Q1: failed DSN Q1-F to <s@example.com>"]


@pytest.mark.parametrize(
    ("outcome", "line"),
    [
        ("reject", "Q1: cannot store the failed DSN: 452 4.3.1 spool full"),
        ("crash", "Q1: cannot build the failed DSN"),
    ],
)
async def test_a_notice_that_cannot_be_stored_is_logged(
    caplog: pytest.LogCaptureFixture, outcome: str, line: str
) -> None:
    await rig(original(), outcome=outcome).notifier._send("Q1", FAILED)
    assert log_lines(caplog) == [line]


async def test_a_notice_that_cannot_be_recorded_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    r = rig(original(DELAYED))
    r.desk.store_fails = True
    await r.notifier._send("Q1", DELAYED)
    assert log_lines(caplog) == ["Q1: cannot record the delayed DSN: disk full"]


async def test_an_unreadable_original_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    r = rig(original())
    r.spool.broken = True
    await r.notifier._send("Q1", FAILED)
    assert log_lines(caplog)[0] == "cannot load Q1 for its DSN; returning headers only"
