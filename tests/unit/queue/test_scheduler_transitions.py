"""Scheduler state transitions on a fake clock, with a scripted transport: no sockets.

The event loop's clock is replaced by the test's, so timers (retries, backoff, spool
retries) fire exactly when the test moves time forward.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from outrider.accounting.records import FIELDS
from outrider.accounting.subscriber import AccountingSubscriber, row_of
from outrider.config.loader import parse_config
from outrider.dsn.notifier import DsnNotifier
from outrider.events.types import (
    Bounced,
    Deferred,
    Delivered,
    Event,
    MessageDone,
    NoticeDue,
    QueueEvent,
)
from outrider.intake.build import build_notice_intake
from outrider.intake.sink import HeldSink
from outrider.message.envelope import Envelope, Notify, RcptStatus, Recipient
from outrider.policy.outcome import Scope, local_outcome
from outrider.queue.delivery_mode import LoadReading
from outrider.queue.finisher import RETRY_AFTER_ERROR
from outrider.queue.operator import Operator
from outrider.queue.scheduler import Scheduler
from outrider.smtp.replies import Reply
from tests.support.fake_transport import FakeTransport
from tests.support.memory_spool import MemorySpool

T0 = 1_000_000.0  # small enough that the loop clock resolution (1 ns) is not lost
LATER = Reply(451, "4.3.0", "try again later")
THROTTLED = Reply(451, "4.7.28", "rate limited, slow down")
NO_USER = Reply(550, "5.1.1", "no such user")
BODY = b"Subject: test\r\nMessage-ID: <m@x.test>\r\n\r\nhello\r\n"

CONFIG = """
[server]
hostname = "mta.outrider.test"
state-dir = "{state}"
{server}
[dns]
nameservers = ["127.0.0.1:9"]
[[listener]]
address = "127.0.0.1:0"
[domain."*"]
retry-after = ["60s"]
bounce-after = "{bounce}"
delay-warning-after = "{delay}"
max-smtp-out = {out}
smtp-pattern-list = "throttle"
backoff-to-normal-after = "30s"
[smtp-pattern-list.throttle]
rules = [{{ reply = "4\\\\.7\\\\.28", action = "mode=backoff" }}]
{tables}
"""


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


async def idle() -> None:
    """Run everything that is ready now (tasks, call_soon, due timers)."""
    for _ in range(60):
        await asyncio.sleep(0)


@dataclass
class Harness:
    scheduler: Scheduler
    transport: FakeTransport
    spool: MemorySpool
    clock: FakeClock
    events: list[Event] = field(default_factory=list)

    def handle(self, events: Sequence[Event]) -> None:
        self.events.extend(events)

    def of(self, kind: type) -> list[Event]:
        return [e for e in self.events if isinstance(e, kind)]

    def submit(self, *rcpts: Recipient | str, sender: str = "s@x.test", job: str = "") -> Envelope:
        recipients = [Recipient(r) if isinstance(r, str) else r for r in rcpts]
        env = Envelope(f"Q{len(self.spool.bodies):04d}", sender, recipients, self.clock.now)
        env.job_id = job
        self.spool.bodies[env.queue_id] = BODY
        self.spool.saved[env.queue_id] = Envelope(env.queue_id, sender, [], env.received_at)
        self.scheduler.submit(env, BODY)
        return env

    async def advance(self, seconds: float) -> None:
        self.clock.now += seconds
        await idle()


@pytest.fixture
async def make(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[object]:
    harnesses: list[Harness] = []

    async def build(
        *,
        bounce: str = "1d",
        delay: str = "never",
        out: int = 5,
        spool: MemorySpool | None = None,
        transport: FakeTransport | None = None,
        notifier: bool = True,
        server: str = "",
        tables: str = "",
        load: float = 0.0,
    ) -> Harness:
        clock = FakeClock()
        loop = asyncio.get_running_loop()
        monkeypatch.setattr(loop, "time", clock)
        config = parse_config(
            CONFIG.format(
                state=tmp_path / "state",
                bounce=bounce,
                delay=delay,
                out=out,
                server=server,
                tables=tables,
            )
        )
        spool = spool or MemorySpool()
        transport = transport or FakeTransport()
        scheduler = Scheduler(
            config=config,
            spool=spool,
            transports=transport,
            clock=clock,
            load=LoadReading(read=lambda: load, clock=clock),
        )
        h = Harness(scheduler, transport, spool, clock)
        scheduler.bus.subscribe(h)
        if notifier:
            held = HeldSink()
            intake = build_notice_intake(config, spool=spool, sink=held)
            intake.clock = clock
            scheduler.bus.subscribe(
                DsnNotifier(
                    spool, intake, held, scheduler, policy_for=config.policy_for, clock=clock
                )
            )
        harnesses.append(h)
        return h

    yield build
    for h in harnesses:
        await h.scheduler.stop(0.1)


async def test_delivery_publishes_events_and_removes_the_message(make) -> None:
    h: Harness = await make()
    env = h.submit("a@a.test", "b@a.test")
    await idle()
    assert [s.recipients for s in h.transport.sent] == [["a@a.test", "b@a.test"]]
    assert [e.recipient for e in h.of(Delivered)] == ["a@a.test", "b@a.test"]  # type: ignore[attr-defined]
    assert h.spool.removed == [env.queue_id]
    assert [e.queue_id for e in h.of(MessageDone)] == [env.queue_id]  # type: ignore[attr-defined]
    assert h.scheduler.pending_messages == 0
    rows = [row_of(e) for e in h.events]
    assert [r[0] for r in rows if r is not None] == ["d", "d"]


async def test_deferral_persists_the_state_and_retries_when_due(make) -> None:
    h: Harness = await make()
    h.transport.replies["a@a.test"] = LATER
    env = h.submit("a@a.test")
    await idle()
    [deferred] = h.of(Deferred)
    assert deferred.next_attempt == T0 + 60  # type: ignore[attr-defined]
    saved = h.spool.saved[env.queue_id].recipients[0]
    assert (saved.attempts, saved.next_attempt, saved.last_reply) == (1, T0 + 60, str(LATER))
    h.transport.replies.clear()
    await h.advance(59)
    assert len(h.transport.sent) == 1  # not due yet
    await h.advance(1)
    assert len(h.transport.sent) == 2
    assert h.of(Delivered)[0].recipient == "a@a.test"  # type: ignore[attr-defined]
    assert h.spool.removed == [env.queue_id]


async def test_expiry_bounces_and_sends_exactly_one_dsn(make) -> None:
    h: Harness = await make(bounce="100s")
    h.transport.replies["a@a.test"] = LATER
    env = h.submit("a@a.test")
    await idle()
    for _ in range(3):
        await h.advance(60)
    [bounced] = h.of(Bounced)
    assert bounced.expired  # type: ignore[attr-defined]
    assert "expired after 3 attempts" in bounced.diagnostic  # type: ignore[attr-defined]
    assert [e.kind for e in h.of(NoticeDue)] == ["F"]  # type: ignore[attr-defined]
    dsns = [s for s in h.transport.sent if s.sender == ""]
    assert [(d.queue_id, d.recipients) for d in dsns] == [(f"{env.queue_id}-F", ["s@x.test"])]
    assert b"Action: failed" in dsns[0].body
    assert env.queue_id in h.spool.removed
    await h.advance(600)
    assert len([s for s in h.transport.sent if s.sender == ""]) == 1


async def test_backoff_mode_entered_on_a_pattern_and_left_after_the_timeout(make) -> None:
    h: Harness = await make()
    h.transport.replies["slow@a.test"] = THROTTLED
    h.submit("slow@a.test")
    await idle()
    [queue] = h.scheduler.queues.values()
    assert queue.mode.value == "backoff"
    assert [e.action for e in h.of(QueueEvent)] == ["backoff"]  # type: ignore[attr-defined]
    assert h.scheduler.ctx.control.backoff == {queue.name: T0}
    await h.advance(30)
    assert queue.mode.value == "normal"
    assert [e.action for e in h.of(QueueEvent)] == ["backoff", "normal"]  # type: ignore[attr-defined]
    assert h.scheduler.ctx.control.backoff == {}


async def test_pause_and_resume_of_a_job_and_a_domain(make) -> None:
    h: Harness = await make()
    operator = Operator(h.scheduler)
    operator.pause_job("spring")
    operator.pause_queue("b.test")
    h.submit("a@a.test", job="spring")
    h.submit("b@b.test")
    h.submit("c@c.test")
    await idle()
    assert [s.recipients for s in h.transport.sent] == [["c@c.test"]]
    assert operator.status()["held"] == {"job:spring": 1, "domain:b.test": 1}
    assert operator.resume_job("spring")
    assert operator.resume_queue("b.test")
    await idle()
    assert sorted(r for s in h.transport.sent for r in s.recipients) == [
        "a@a.test",
        "b@b.test",
        "c@c.test",
    ]
    assert not operator.resume_job("spring")  # not paused any more


async def test_dns_verdict_on_one_domain_spares_the_others_on_a_rolled_up_queue(make) -> None:
    """Fix: NXDOMAIN for one domain used to fail every item waiting in the shared queue."""
    transport = FakeTransport(destinations={"gone.test": "mx:shared", "ok.test": "mx:shared"})
    transport.open_failures["gone.test"] = local_outcome(
        550, "5.1.2", "Domain gone.test does not exist", scope=Scope.DOMAIN
    )
    h: Harness = await make(out=1, transport=transport, notifier=False)
    gone = h.submit("a@gone.test")
    ok = h.submit("b@ok.test")
    gone2 = h.submit("c@gone.test")
    await idle()
    assert len(h.scheduler.queues) == 1  # one rolled-up queue carried all three
    assert {e.recipient for e in h.of(Bounced)} == {"a@gone.test", "c@gone.test"}  # type: ignore[attr-defined]
    assert [s.recipients for s in transport.sent] == [["b@ok.test"]]
    assert ok.recipients[0].status is RcptStatus.DELIVERED
    assert gone.recipients[0].status is gone2.recipients[0].status is RcptStatus.BOUNCED


async def test_site_failure_defers_everything_waiting_for_the_destination(make) -> None:
    transport = FakeTransport(destinations={"a.test": "mx:shared", "b.test": "mx:shared"})
    transport.open_failures["a.test"] = local_outcome(451, "4.4.1", "Connection refused")
    h: Harness = await make(out=1, transport=transport, notifier=False)
    h.submit("x@a.test")
    h.submit("y@b.test")
    await idle()
    assert {e.recipient for e in h.of(Deferred)} == {"x@a.test", "y@b.test"}  # type: ignore[attr-defined]
    assert transport.sent == []  # b.test was not tried on its own: the site is down


async def test_window_shrinks_on_lost_connections_and_grows_back(make) -> None:
    transport = FakeTransport(lose=True)
    h: Harness = await make(out=20, transport=transport, notifier=False)
    for i in range(4):
        h.submit(f"r{i}@a.test")
    await idle()
    [queue] = h.scheduler.queues.values()
    shrunk = queue.window.limit
    assert shrunk < 5
    transport.lose = False
    for i in range(40):
        h.submit(f"s{i}@a.test")
    await idle()
    assert queue.window.limit > shrunk


async def test_shutdown_cancels_timers_and_schedules_nothing_more(make) -> None:
    h: Harness = await make()
    h.transport.replies["a@a.test"] = LATER
    env = h.submit("a@a.test")
    await idle()
    await h.scheduler.stop(1.0)
    h.transport.replies.clear()
    await h.advance(120)
    assert len(h.transport.sent) == 1
    assert h.scheduler.messages[env.queue_id].due == 0.0
    h.submit("b@a.test")
    await idle()
    assert len(h.transport.sent) == 1


async def test_a_failed_state_record_keeps_the_message_and_is_retried(make) -> None:
    h: Harness = await make()
    h.spool.fail_record = 1
    h.transport.replies["a@a.test"] = LATER
    env = h.submit("a@a.test")
    await idle()
    assert env.queue_id in h.scheduler.messages
    assert h.spool.saved[env.queue_id].recipients == []  # nothing durable yet
    await h.advance(RETRY_AFTER_ERROR)
    assert h.spool.saved[env.queue_id].recipients[0].attempts == 1
    h.transport.replies.clear()
    await h.advance(60)
    assert h.spool.removed == [env.queue_id]


async def test_a_failed_dsn_store_keeps_the_message_until_the_notice_is_stored(make) -> None:
    h: Harness = await make()
    h.spool.fail_store = 1
    h.transport.replies["a@a.test"] = NO_USER
    env = h.submit("a@a.test")
    await idle()
    assert env.queue_id in h.scheduler.messages  # not dropped: the notice is still owed
    assert h.spool.saved[env.queue_id].notices == "F"
    assert h.spool.saved[env.queue_id].recipients[0].status is RcptStatus.BOUNCED
    assert not [s for s in h.transport.sent if s.sender == ""]
    await h.advance(RETRY_AFTER_ERROR)
    assert [s.queue_id for s in h.transport.sent if s.sender == ""] == [f"{env.queue_id}-F"]
    assert env.queue_id in h.spool.removed
    assert h.scheduler.pending_messages == 0


async def test_recovery_finds_a_stored_dsn_and_does_not_build_a_second(make) -> None:
    spool = MemorySpool()
    original = Envelope("ORIG", "s@x.test", [Recipient("a@a.test")], T0)
    original.recipients[0].status = RcptStatus.BOUNCED
    original.recipients[0].last_reply = str(NO_USER)
    original.notices = "F"  # owed, and the crash came after the DSN was stored
    dsn = Envelope("ORIG-F", "", [Recipient("s@x.test")], T0)
    for env in (original, dsn):
        spool.saved[env.queue_id] = env
        spool.bodies[env.queue_id] = BODY
    h: Harness = await make(spool=spool)
    for env in spool.recover():
        h.scheduler.restore(env)
    h.scheduler.recovery_done()
    await idle()
    assert [(s.queue_id, s.recipients) for s in h.transport.sent] == [("ORIG-F", ["s@x.test"])]
    assert h.of(NoticeDue) == []
    assert set(spool.removed) == {"ORIG", "ORIG-F"}


async def test_recovery_sends_a_notice_that_was_owed_but_not_stored(make) -> None:
    spool = MemorySpool()
    original = Envelope("ORIG", "s@x.test", [Recipient("a@a.test")], T0)
    original.recipients[0].status = RcptStatus.BOUNCED
    original.notices = "F"
    spool.saved["ORIG"] = original
    spool.bodies["ORIG"] = BODY
    h: Harness = await make(spool=spool)
    for env in spool.recover():
        h.scheduler.restore(env)
    h.scheduler.recovery_done()
    await idle()
    assert [s.queue_id for s in h.transport.sent] == ["ORIG-F"]
    assert "ORIG" in spool.removed


async def test_delay_warning_is_persisted_and_never_repeated_after_a_restart(make) -> None:
    h: Harness = await make(delay="30s")
    h.transport.replies["a@a.test"] = LATER
    env = h.submit("a@a.test")
    await idle()
    assert h.of(NoticeDue) == []  # too young for a warning
    await h.advance(60)
    assert [s.queue_id for s in h.transport.sent if s.sender == ""] == [f"{env.queue_id}-D"]
    saved = h.spool.saved[env.queue_id]
    assert saved.delay_warned and saved.notices == ""
    # Restart from what is on "disk": the warning is not sent again.
    await h.scheduler.stop(0.1)
    h2: Harness = await make(delay="30s", spool=h.spool, transport=h.transport)
    h2.clock.now = h.clock.now
    for restored in h.spool.recover():
        if restored.queue_id == env.queue_id:
            h2.scheduler.restore(restored)
    h2.scheduler.recovery_done()
    await h2.advance(120)
    assert len([s for s in h.transport.sent if s.sender == ""]) == 1
    assert h2.of(NoticeDue) == []


async def test_relayed_notice_owed_to_notify_success_is_persisted_and_sent(make) -> None:
    h: Harness = await make()
    rcpt = Recipient("a@a.test", notify=Notify.SUCCESS)
    env = h.submit(rcpt)
    await idle()
    assert [s.queue_id for s in h.transport.sent if s.sender == ""] == [f"{env.queue_id}-S"]
    assert env.queue_id in h.spool.removed


def test_accounting_subscriber_writes_rows(tmp_path: Path) -> None:
    from outrider.accounting.writer import AccountingLog
    from outrider.events.types import MessageInfo

    log = AccountingLog(tmp_path)
    info = MessageInfo("Q1", "s@x.test", time.time(), "job", "", "<m@x>", 10)
    AccountingSubscriber(log).handle(
        [
            Delivered(time.time(), info, "a@a.test", "", "2.0.0", "250 ok", "mx", "a.test", "v"),
            QueueEvent(time.time(), "a.test/v", "v", "backoff", "451", "mx", "rule"),
            NoticeDue(time.time(), "Q1", "F"),
        ]
    )
    log.close()
    text = next(tmp_path.iterdir()).read_text()
    assert text.count("\n") == 3  # header + two rows; the notice is not logged


async def test_a_transport_that_raises_on_open_does_not_strand_the_message(make) -> None:
    class Broken(FakeTransport):
        async def open(self, route):  # type: ignore[no-untyped-def]
            raise RuntimeError("transport bug")

    transport = Broken()
    h: Harness = await make(transport=transport, notifier=False)
    env = h.submit("a@a.test")
    await idle()
    [deferred] = h.of(Deferred)
    assert deferred.status == "4.3.0"  # type: ignore[attr-defined]
    assert h.scheduler.messages[env.queue_id].due != 0.0  # retried later


async def test_a_dead_destination_comes_back_when_many_retries_fall_due_at_once(make) -> None:
    """Regression: the retries due in one loop turn deferred the probe's own item before
    its connection ran, so a dead destination with a large backlog was never probed."""
    transport = FakeTransport()
    transport.open_failures["a.test"] = local_outcome(451, "4.4.1", "Connection refused")
    h: Harness = await make(transport=transport, notifier=False)
    envs = [h.submit(f"r{i}@a.test") for i in range(50)]
    await idle()
    [queue] = h.scheduler.queues.values()
    for _ in range(10):  # each failed cohort counts 1/window: a few rounds to be dead
        if queue.dead.is_dead(h.clock.now):
            break
        await h.advance(60)
    assert queue.dead.is_dead(h.clock.now)
    transport.open_failures.clear()  # the destination is back
    await h.advance(60)
    await idle()
    assert sorted(r for s in transport.sent for r in s.recipients) == sorted(
        e.recipients[0].address for e in envs
    )
    assert not queue.dead.is_dead(h.clock.now)


async def test_an_idn_domain_is_paused_whatever_its_spelling(make) -> None:
    h: Harness = await make()
    operator = Operator(h.scheduler)
    operator.pause_queue("Straße.test")
    h.submit("a@xn--strae-oqa.test")
    h.submit("c@c.test")
    await idle()
    assert [s.recipients for s in h.transport.sent] == [["c@c.test"]]
    assert operator.status()["held"] == {"domain:xn--strae-oqa.test": 1}
    assert operator.resume_queue("xn--strae-oqa.test")
    await idle()
    assert len(h.transport.sent) == 2


async def test_queue_only_holds_new_mail_for_the_next_queue_run(make) -> None:
    h: Harness = await make(server='queue-only = true\nqueue-run-interval = "5m"')
    assert h.scheduler.delivery_mode().reason == "queue-only is set"
    env = h.submit("a@a.test")
    await idle()
    assert h.transport.sent == []
    assert env.recipients[0].next_attempt == 1_000_200.0  # the next 5-minute tick
    await h.advance(199)
    assert h.transport.sent == []
    await h.advance(1)
    assert [s.recipients for s in h.transport.sent] == [["a@a.test"]]


async def test_queue_only_load_switches_on_the_load_average(make) -> None:
    busy: Harness = await make(server="queue-only-load = 2.5", load=3.0)
    busy.submit("a@a.test")
    await idle()
    assert busy.transport.sent == []
    assert busy.scheduler.delivery_mode().name == "queue-only"
    calm: Harness = await make(server="queue-only-load = 2.5", load=1.0)
    calm.submit("a@a.test")
    await idle()
    assert len(calm.transport.sent) == 1


async def test_queue_remote_only_delivers_local_mail_at_once(make) -> None:
    local = '[local-domain."l.test"]\nmailboxes = ["a"]'
    h: Harness = await make(server="queue-remote-only = true", tables=local)
    env = h.submit("a@l.test", "b@r.test")
    await idle()
    assert [s.recipients for s in h.transport.sent] == [["a@l.test"]]
    assert env.recipients[1].next_attempt == 1_000_200.0
    await h.advance(200)
    assert [s.recipients for s in h.transport.sent] == [["a@l.test"], ["b@r.test"]]


async def test_an_expired_temporary_failure_is_reported_as_expired(make) -> None:
    """Mailbox full (452 4.2.2) until bounce-after: the bounce, its row and its DSN say
    4.4.7 (RFC 3463 "delivery time expired"), Action failed, the last reply kept."""
    h: Harness = await make(bounce="100s")
    h.transport.replies["a@a.test"] = Reply(452, "4.2.2", "mailbox full")
    h.submit("a@a.test")
    await idle()
    [deferred] = h.of(Deferred)
    assert deferred.status == "4.2.2"  # type: ignore[attr-defined]
    for _ in range(3):
        await h.advance(60)
    [bounced] = h.of(Bounced)
    assert bounced.status == "4.4.7"  # type: ignore[attr-defined]
    assert bounced.category == "message-expired"  # type: ignore[attr-defined]
    assert bounced.diagnostic.startswith("452 4.2.2 mailbox full (expired after")  # type: ignore[attr-defined]
    row = dict(zip(FIELDS, row_of(bounced) or (), strict=True))
    assert (row["type"], row["dsnStatus"], row["bounceCat"]) == ("b", "4.4.7", "message-expired")
    [dsn] = [s for s in h.transport.sent if s.sender == ""]
    assert b"Status: 4.4.7" in dsn.body and b"Action: failed" in dsn.body
    assert b"Diagnostic-Code: smtp; 452 4.2.2 mailbox full" in dsn.body


async def test_bounces_and_deferrals_carry_their_bounce_category(make) -> None:
    """The category is on the event and in the accounting row's bounceCat; a delivery has
    none. Text rules first (the quota text), the enhanced code otherwise."""
    h: Harness = await make(bounce="100s")
    h.transport.replies["gone@a.test"] = NO_USER
    h.transport.replies["full@a.test"] = Reply(452, "4.2.2", "mailbox full")
    h.transport.replies["odd@a.test"] = Reply(550, "5.7.1", "zzz")
    h.submit("ok@a.test", "gone@a.test", "full@a.test", "odd@a.test")
    await idle()
    got = {e.recipient: (type(e).__name__, e.category) for e in h.events if hasattr(e, "category")}  # type: ignore[attr-defined]
    assert got == {
        "ok@a.test": ("Delivered", ""),
        "gone@a.test": ("Bounced", "bad-mailbox"),
        "full@a.test": ("Deferred", "quota-issues"),
        "odd@a.test": ("Bounced", "policy-related"),
    }
    rows = {r[4]: r for r in map(row_of, h.events) if r is not None and r[0] in "dbt"}
    cat = FIELDS.index("bounceCat")
    assert {rcpt: r[cat] for rcpt, r in rows.items()} == {
        "ok@a.test": "",
        "gone@a.test": "bad-mailbox",
        "full@a.test": "quota-issues",
        "odd@a.test": "policy-related",
    }
    for _ in range(3):
        await h.advance(60)
    [expired] = [e for e in h.of(Bounced) if e.recipient == "full@a.test"]  # type: ignore[attr-defined]
    assert expired.expired and expired.category == "message-expired"  # type: ignore[attr-defined]


async def test_reload_rebuilds_the_bounce_rules(make, tmp_path: Path) -> None:
    rules = tmp_path / "bounce-rules.txt"
    rules.write_text("/no such user/ inactive-mailbox\n")
    h: Harness = await make(tables=f'[bounce-categories]\nrules-file = "{rules}"\n')
    h.transport.replies["a@a.test"] = NO_USER
    h.submit("a@a.test")
    await idle()
    rules.write_text("/no such user/ quota-issues\n")
    h.scheduler.update_config(h.scheduler.config)  # a reload re-reads the file
    h.transport.replies["b@a.test"] = NO_USER
    h.submit("b@a.test")
    await idle()
    assert [e.category for e in h.of(Bounced)] == ["inactive-mailbox", "quota-issues"]  # type: ignore[attr-defined]
    rules.write_text("/broken/ nonsense\n")  # broken since the config was checked
    h.scheduler.update_config(h.scheduler.config)
    h.transport.replies["c@a.test"] = NO_USER
    h.submit("c@a.test")
    await idle()
    assert h.of(Bounced)[-1].category == "quota-issues"  # type: ignore[attr-defined]
