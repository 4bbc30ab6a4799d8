"""Intake.submit: checks, then header completion and the virtual MTA, then the durable
store, then the sink — and nothing reaches the sink that was not stored."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytest

from outrider.config.loader import parse_config
from outrider.intake import (
    CONTINUE,
    Accepted,
    Intake,
    IntakePipeline,
    MailEnvelope,
    Rejected,
    SchedulerSink,
    SinkUnavailableError,
    Submission,
    Verdict,
)
from outrider.intake.build import build_intake, reconfigure_intake
from outrider.intake.checks import Relay, UserRate
from outrider.intake.content import Content
from outrider.intake.pipeline import Check
from outrider.intake.verdict import VerdictResult
from outrider.intake.vmta import VmtaTable
from outrider.message.envelope import Envelope, Source
from outrider.message.headers import rfc5322_date
from outrider.message.ids import is_queue_id
from outrider.smtp.replies import LOCAL_ERROR, RELAY_DENIED, Reply
from outrider.spool.base import SpoolError, SpoolFullError
from outrider.spool.disk import DiskSpool
from outrider.spool.spill import SpillFile
from tests.support.memory_spool import MemorySpool
from tests.unit.intake.support import CONTENT, MAIL, NO, SMTP, Recording

VMTAS = VmtaTable(known=frozenset({"default", "mta10"}), sender_defaults={}, server_default="mta10")


class Journal:
    """A spool and a sink that write what happens, in order, to one list."""

    def __init__(self, fail_store: Exception | None = None, fail_sink: Exception | None = None):
        self.events: list[tuple[str, Envelope, bytes]] = []
        self.fail_store = fail_store
        self.fail_sink = fail_sink

    async def store(self, envelope: Envelope, body: bytes) -> None:
        if self.fail_store is not None:
            raise self.fail_store
        self.events.append(("store", envelope, body))

    def accept(self, envelope: Envelope, body: bytes) -> None:
        if self.fail_sink is not None:
            raise self.fail_sink
        self.events.append(("sink", envelope, body))


def make_intake(journal: Journal, checks: list[Check] | None = None) -> Intake:
    return Intake(
        pipeline=IntakePipeline(checks or []),
        spool=journal,
        sink=journal,
        hostname="mx.test",
        vmtas=VMTAS,
        new_queue_id=lambda: "Q1",
        clock=lambda: 1_700_000_000.0,
    )


async def test_store_then_sink_with_the_same_envelope_and_bytes() -> None:
    journal = Journal()
    result = await make_intake(journal).submit(replace(SMTP, auth_user="alice"), MAIL, CONTENT)
    assert isinstance(result, Accepted) and result.queue_id == "Q1"
    (first, env, body), (second, env2, body2) = journal.events
    assert (first, second) == ("store", "sink")
    assert env is env2 is result.envelope and body is body2  # no copy on the way
    assert body.startswith(b"Received: from c ([192.0.2.1])") and body.endswith(CONTENT)
    assert env.size == len(body)
    assert (env.source, env.auth_user, env.listener) == (Source.SMTP, "alice", "127.0.0.1:25")
    assert env.vmta == "mta10"  # chosen before the store: the spool file carries it


async def test_header_and_listener_requests_choose_the_vmta() -> None:
    journal = Journal()
    intake = make_intake(journal)
    content = b"X-Virtual-MTA: default\r\n" + CONTENT
    await intake.submit(replace(SMTP, vmta_header=True), MAIL, content)
    await intake.submit(replace(SMTP, listener_vmta="default"), MAIL, CONTENT)
    await intake.submit(SMTP, MAIL, content)  # the header may not choose here
    stored = [env for kind, env, _ in journal.events if kind == "store"]
    assert [env.vmta for env in stored] == ["default", "default", "mta10"]
    assert [env.vmta_request for env in stored] == ["default", "", ""]


async def test_store_failure_is_a_451_and_nothing_reaches_the_sink() -> None:
    journal = Journal(fail_store=SpoolError("disk on fire"))
    result = await make_intake(journal).submit(SMTP, MAIL, CONTENT)
    assert result == Rejected(Reply(451, "4.3.0", "Local error in processing; try again later"))
    assert journal.events == []
    full = Journal(fail_store=SpoolFullError("ENOSPC"))
    result = await make_intake(full).submit(SMTP, MAIL, CONTENT)
    assert isinstance(result, Rejected) and result.reply.code == 452  # the spool's own reply
    broken = Journal(fail_store=OSError("unexpected"))
    assert await make_intake(broken).submit(SMTP, MAIL, CONTENT) == Rejected(LOCAL_ERROR)
    assert full.events == broken.events == []


async def test_a_stored_message_is_accepted_even_when_the_sink_fails() -> None:
    """A 4xx after the store would make the client send it again: a duplicate."""
    for failure in (SinkUnavailableError("delivery process is gone"), RuntimeError("bug")):
        journal = Journal(fail_sink=failure)
        result = await make_intake(journal).submit(SMTP, MAIL, CONTENT)
        assert isinstance(result, Accepted)
        assert [kind for kind, _, _ in journal.events] == ["store"]  # scheduled from the spool


async def test_message_checks_run_first_and_a_refusal_stores_nothing() -> None:
    log: list[str] = []
    journal = Journal()
    intake = make_intake(
        journal, [Recording("a", log), Recording("b", log, Verdict.reject(NO), awaitable=True)]
    )
    assert await intake.submit(SMTP, MAIL, CONTENT) == Rejected(NO)
    assert log == ["message:a", "message:b"]
    assert journal.events == []


async def test_memory_spool_and_scheduler_sink() -> None:
    spool = MemorySpool()
    submitted: list[tuple[Envelope, bytes | None]] = []
    intake = Intake(
        pipeline=IntakePipeline([]),
        spool=spool,
        sink=SchedulerSink(lambda env, body: submitted.append((env, body))),
        hostname="mx.test",
        vmtas=VMTAS,
    )
    result = await intake.submit(SMTP, MAIL, CONTENT)
    assert isinstance(result, Accepted)
    [(env, body)] = submitted
    assert env is result.envelope and spool.bodies[env.queue_id] is body


CONFIG = """
[server]
hostname = "{host}"
state-dir = "{state}"
[[listener]]
address = "127.0.0.1:0"
[relay]
domains = ["{domain}"]
"""


async def test_build_and_reconfigure_keep_the_user_rate_state(tmp_path: Path) -> None:
    def config(host: str, domain: str) -> str:
        return CONFIG.format(host=host, state=tmp_path, domain=domain)

    intake = build_intake(
        parse_config(config("a.test", "one.test")), spool=MemorySpool(), sink=Journal(), users=None
    )
    assert Relay in [type(c) for c in intake.pipeline.checks]
    rates = intake.pipeline.find(UserRate)
    assert rates is not None and intake.hostname == "a.test"
    assert intake.check_rcpt(SMTP, "", "u@one.test") is CONTINUE

    reconfigure_intake(intake, parse_config(config("b.test", "two.test")), None)
    after = intake.pipeline.find(UserRate)
    assert after is not None and after is not rates and after.limiter is rates.limiter
    assert intake.hostname == "b.test"
    assert intake.check_rcpt(SMTP, "", "u@one.test") == Verdict.reject(RELAY_DENIED)


async def test_an_id_taken_for_a_message_not_stored_is_given_back() -> None:
    """The spool reserves names to store into (spool.names): a refused message's id goes
    back to it; one refused before an id was needed takes none; a stored one keeps it."""
    released: list[str] = []
    ids = iter(["Q1", "Q2", "Q3"])
    for journal, expected in (
        (Journal(fail_store=SpoolError("disk on fire")), ["Q1"]),
        (Journal(), ["Q1"]),
    ):
        intake = make_intake(journal)
        intake.new_queue_id = lambda: next(ids)
        intake.release_queue_id = released.append
        await intake.submit(SMTP, MAIL, CONTENT)
        assert released == expected
    refusing = make_intake(Journal(), [Recording("a", [], Verdict.reject(NO))])
    refusing.release_queue_id = released.append
    assert await refusing.submit(SMTP, MAIL, CONTENT) == Rejected(NO)
    assert released == ["Q1"]


async def test_build_intake_takes_its_ids_from_a_disk_spool(tmp_path: Path) -> None:
    config = parse_config(CONFIG.format(host="a.test", state=tmp_path, domain="one.test"))
    spool = DiskSpool(tmp_path / "spool")
    intake = build_intake(config, spool=spool, sink=Journal(), users=None)
    assert intake.new_queue_id == spool.new_queue_id
    assert intake.release_queue_id == spool.release_queue_id
    other = build_intake(config, spool=MemorySpool(), sink=Journal(), users=None)
    assert is_queue_id(other.new_queue_id())
    await spool.close()


class Spy(Check):
    def __init__(self) -> None:
        self.seen: list[tuple[object, ...]] = []

    def at_mail(self, submission: Submission, sender: str) -> VerdictResult:
        self.seen.append(("mail", submission, sender))
        return CONTINUE

    def at_rcpt(self, submission: Submission, sender: str, recipient: str) -> VerdictResult:
        self.seen.append(("rcpt", submission, sender, recipient))
        return CONTINUE

    def at_message(
        self, submission: Submission, envelope: MailEnvelope, content: bytes
    ) -> VerdictResult:
        self.seen.append(("message", submission, envelope, content))
        return CONTINUE


async def test_checks_and_header_completion_are_told_the_transaction() -> None:
    spy = Spy()
    journal = Journal()
    intake = make_intake(journal, [spy])
    assert intake.check_mail(SMTP, "s@a.test") is CONTINUE
    assert intake.check_rcpt(SMTP, "s@a.test", "r@b.test") is CONTINUE
    result = await intake.submit(SMTP, MAIL, CONTENT)
    assert spy.seen == [
        ("mail", SMTP, "s@a.test"),
        ("rcpt", SMTP, "s@a.test", "r@b.test"),
        ("message", SMTP, MAIL, CONTENT),
    ]
    assert isinstance(result, Accepted)
    [(_, env, body), _] = journal.events
    trace = body[: -len(CONTENT)]  # the Received field the intake added
    assert b"by mx.test" in trace  # the intake's own hostname
    assert rfc5322_date(1_700_000_000.0).encode() in trace  # the intake's clock
    assert env.received_at == 1_700_000_000.0


def test_spill_files_come_from_the_spool() -> None:
    asked: list[int] = []

    class Spool(Journal):
        def spill(self, head_len: int) -> SpillFile:
            asked.append(head_len)
            return SpillFile("/nonexistent", head_len)

    intake = make_intake(Journal())
    intake.spool = Spool()
    assert intake.spill(4096).reserve >= 4096
    assert asked == [4096]


REQUEST = b"X-Outrider-Unsubscribe: yes\r\n"


async def test_the_unsubscribe_request_never_leaves_and_the_size_follows() -> None:
    journal = Journal()
    result = await make_intake(journal).submit(SMTP, MAIL, REQUEST + CONTENT)
    assert isinstance(result, Accepted)
    [(_, env, body), _] = journal.events
    assert b"X-Outrider-Unsubscribe" not in body and body.endswith(CONTENT)
    assert env.size == len(body)


async def test_the_unsubscribe_step_gets_the_request_and_may_add_its_fields() -> None:
    asked: list[tuple[object, ...]] = []
    added = b"List-Unsubscribe: <mailto:u@a.test>\r\n"

    class Step:
        def apply(
            self, content: Content, envelope: Envelope, request: bool | None, now: float
        ) -> Content:
            asked.append((content, envelope, request, now))
            assert isinstance(content, bytes)
            return added + content

    journal = Journal()
    intake = make_intake(journal)
    intake.unsubscribe = Step()  # type: ignore[assignment]
    trusted = replace(SMTP, auth_user="alice")  # may relay: its request counts
    result = await intake.submit(trusted, MAIL, REQUEST + CONTENT)
    assert isinstance(result, Accepted)
    [(_, env, body), _] = journal.events
    [(content, envelope, request, now)] = asked
    assert isinstance(content, bytes) and b"X-Outrider-Unsubscribe" not in content
    assert (envelope, request, now) == (env, True, 1_700_000_000.0)
    assert body == added + content and env.size == len(body)


async def test_dkim_signs_the_completed_message() -> None:
    signed_at: list[float] = []

    class Signer:
        async def apply(self, content: Content, now: float) -> Content:
            signed_at.append(now)
            assert isinstance(content, bytes)
            return b"DKIM-Signature: v=1\r\n" + content

    journal = Journal()
    intake = make_intake(journal)
    intake.dkim = Signer()  # type: ignore[assignment]
    result = await intake.submit(SMTP, MAIL, CONTENT)
    assert isinstance(result, Accepted)
    [(_, env, body), _] = journal.events
    assert body.startswith(b"DKIM-Signature: v=1\r\nReceived: ") and env.size == len(body)
    assert signed_at == [1_700_000_000.0]


async def test_a_failed_signature_refuses_for_now_and_gives_the_id_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Signer:
        async def apply(self, content: Content, now: float) -> Content:
            raise RuntimeError("no key")

    released: list[str] = []
    journal = Journal()
    intake = make_intake(journal)
    intake.dkim = Signer()  # type: ignore[assignment]
    intake.release_queue_id = released.append
    with caplog.at_level(logging.ERROR, "outrider.intake"):
        assert await intake.submit(SMTP, MAIL, CONTENT) == Rejected(LOCAL_ERROR)
    assert journal.events == [] and released == ["Q1"]
    assert caplog.messages == ["Q1: DKIM signing failed"]


async def test_verp_rewrites_the_envelope_it_stores() -> None:
    class Verp:
        def rewrite(self, envelope: Envelope) -> bool:
            envelope.sender = "bounces+" + envelope.queue_id + "@b.test"
            return True

    journal = Journal()
    intake = make_intake(journal)
    intake.verp = Verp()  # type: ignore[assignment]
    result = await intake.submit(SMTP, MAIL, CONTENT)
    assert isinstance(result, Accepted)
    [(_, env, _), _] = journal.events
    assert env is result.envelope and env.sender == "bounces+Q1@b.test"


async def test_what_the_intake_logs_names_the_message(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "outrider")
    intake = make_intake(Journal())
    unknown = b"X-Virtual-MTA: nowhere\r\n" + CONTENT
    result = await intake.submit(replace(SMTP, vmta_header=True), MAIL, unknown)
    assert isinstance(result, Accepted)
    assert "Q1: unknown X-Virtual-MTA 'nowhere' ignored" in caplog.messages
    size = result.envelope.size
    assert caplog.messages[-1] == f"queued Q1 from=<s@a.test> rcpts=1 size={size} vmta=mta10"
    caplog.clear()
    broken = make_intake(Journal(fail_store=SpoolError("disk on fire")))
    await broken.submit(SMTP, MAIL, CONTENT)
    assert [m for m in caplog.messages if "Q1" in m] == ["spool: cannot store Q1: disk on fire"]
