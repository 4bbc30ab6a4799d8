"""What the scheduler promises around an attempt: the events it publishes on intake,
the bodies it keeps in memory, the counters and report details it records, mail for a
dead destination, recovery of a half-removed message, and a bounded shutdown.

Uses the harness of test_scheduler_transitions (fake clock, scripted transport).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from outrider.config.loader import parse_config
from outrider.delivery.transport import DeliveryReport, Opened, Route
from outrider.events.types import Bounced, Deferred, Delivered, MessageDone, MessageQueued
from outrider.message.envelope import Envelope, Notify, RcptStatus, Recipient
from outrider.policy.outcome import local_outcome
from outrider.queue import scheduler as scheduler_module
from outrider.queue.control import handle_request
from outrider.queue.operator import Operator
from outrider.queue.scheduler import Scheduler
from outrider.spool.base import IN_MEMORY_LIMIT
from tests.support.fake_transport import FakeConnection, FakeTransport
from tests.support.memory_spool import MemorySpool
from tests.unit.queue.test_scheduler_transitions import (
    BODY,
    LATER,
    NO_USER,
    T0,
    THROTTLED,
    Harness,
    idle,
    make,
)

__all__ = ["make"]  # the fixture, shared with test_scheduler_transitions

POOL = """
[virtual-mta.a]
smtp-source-host = "127.0.0.10"
[virtual-mta.b]
smtp-source-host = "127.0.0.11"
[virtual-mta-pool.both]
virtual-mtas = ["a", "b"]
"""


def _envelope(h: Harness, *rcpts: str, vmta: str = "") -> Envelope:
    env = Envelope(f"Q{len(h.spool.bodies):04d}", "s@x.test", [Recipient(r) for r in rcpts], T0)
    env.vmta = vmta
    h.spool.bodies[env.queue_id] = BODY
    h.spool.saved[env.queue_id] = Envelope(env.queue_id, env.sender, [], T0)
    return env


async def test_message_queued_describes_the_message_its_recipients_and_its_pool(make) -> None:
    h: Harness = await make(tables=POOL)
    h.clock.now = T0 + 5
    env = _envelope(h, "a@a.test", "b@b.test", vmta="both")
    h.scheduler.submit(env, BODY)
    plain = h.submit("c@c.test")
    h.scheduler.bus.flush()
    queued = h.of(MessageQueued)
    assert [
        (e.at, e.message.queue_id, e.recipients, e.vmta, list(e.rcpts), e.pool)  # type: ignore[attr-defined]
        for e in queued
    ] == [
        (T0 + 5, env.queue_id, 2, "both", env.recipients, "both"),
        (T0 + 5, plain.queue_id, 1, "default", plain.recipients, ""),
    ]
    await idle()
    # the pool's name is carried to the delivery's event too, a plain vmta has none
    pools = {e.recipient: e.pool for e in h.of(Delivered)}  # type: ignore[attr-defined]
    assert pools == {"a@a.test": "both", "b@b.test": "both", "c@c.test": ""}


async def test_a_second_hand_off_of_a_scheduled_message_is_ignored(make) -> None:
    h: Harness = await make()
    h.transport.replies["a@a.test"] = LATER
    env = h.submit("a@a.test")
    await idle()
    h.scheduler.submit(env, BODY)
    await idle()
    assert len(h.of(MessageQueued)) == 1
    assert len(h.transport.sent) == 1


async def test_fresh_bodies_are_cached_up_to_the_limit_and_released_when_done(
    make, monkeypatch: pytest.MonkeyPatch
) -> None:
    h: Harness = await make(notifier=False)
    monkeypatch.setattr(scheduler_module, "BODY_CACHE_BYTES", 2 * len(BODY))
    h.transport.replies["a@a.test"] = h.transport.replies["b@a.test"] = LATER
    first = h.submit("a@a.test")
    second = h.submit("b@a.test")  # exactly at the limit: still cached
    third = h.submit("c@a.test")  # past it: read back from the spool when delivered
    msgs = h.scheduler.messages
    assert msgs[first.queue_id].body == BODY and msgs[second.queue_id].body == BODY
    assert msgs[third.queue_id].body is None
    assert h.scheduler.cached_bytes == 2 * len(BODY)
    await idle()
    # every attempt is over: the bodies are dropped (later attempts reload them)
    assert h.scheduler.cached_bytes == 0
    assert msgs[first.queue_id].body is None
    assert [s.body for s in h.transport.sent] == [BODY, BODY, BODY]


async def test_a_retry_reloads_the_body_and_a_large_one_is_streamed_uncached(make) -> None:
    h: Harness = await make(notifier=False)
    h.transport.replies["a@a.test"] = h.transport.replies["big@a.test"] = LATER
    small = h.submit("a@a.test")
    big = Envelope("BIG", "s@x.test", [Recipient("big@a.test")], T0, size=IN_MEMORY_LIMIT + 1)
    h.spool.bodies["BIG"] = b"streamed"
    h.spool.saved["BIG"] = Envelope("BIG", "s@x.test", [], T0)
    h.scheduler.restore(big)
    await idle()
    assert h.scheduler.cached_bytes == 0
    h.spool.bodies[small.queue_id] = b"from the spool"
    await h.advance(60)
    assert sorted(s.body for s in h.transport.sent[-2:]) == [b"from the spool", b"streamed"]
    assert h.scheduler.messages["BIG"].body is None  # streamed, never held
    assert h.scheduler.cached_bytes == 0  # the reloaded body is dropped after the attempt


async def test_queue_counters_and_last_error_follow_the_outcomes(make) -> None:
    h: Harness = await make(notifier=False)
    h.transport.replies["later@a.test"] = LATER
    h.submit("ok1@a.test", "ok2@a.test")
    await idle()
    [queue] = h.scheduler.queues.values()
    h.submit("later@a.test")
    await idle()
    assert (queue.delivered, queue.failed, queue.deferred) == (2, 0, 1)
    assert queue.last_error == str(LATER)
    h.transport.replies["gone@a.test"] = NO_USER
    h.submit("ok3@a.test", "gone@a.test")
    await idle()
    assert (queue.delivered, queue.failed, queue.deferred) == (3, 1, 1)
    assert queue.last_error == str(NO_USER)
    h.transport.replies["gone2@a.test"] = NO_USER
    h.submit("gone2@a.test")
    await idle()
    assert (queue.delivered, queue.failed, queue.deferred) == (3, 2, 1)


class Reporting(FakeTransport):
    """Reports the addresses, EHLO keywords and DSN duty a real connection would."""

    async def open(self, route: Route) -> Opened:
        opened = await super().open(route)
        assert opened.connection is not None
        return Opened(ReportingConnection(self, route))


class ReportingConnection(FakeConnection):
    async def deliver(self, envelope, recipients, body):  # type: ignore[no-untyped-def]
        report = await super().deliver(envelope, recipients, body)
        report.source_ip, report.destination_ip = "127.0.0.10", "127.0.0.99"
        report.esmtp, report.peer_dsn = "PIPELINING DSN", True
        return report


async def test_the_delivery_report_details_reach_the_events(make) -> None:
    transport = Reporting()
    h: Harness = await make(transport=transport)
    h.transport.replies["later@a.test"] = LATER
    env = h.submit(Recipient("a@a.test", notify=Notify.SUCCESS), "later@a.test")
    await idle()
    [delivered] = h.of(Delivered)
    [deferred] = h.of(Deferred)
    for event in (delivered, deferred):
        got = (event.source_ip, event.destination_ip, event.esmtp, event.queue, event.vmta)  # type: ignore[attr-defined]
        assert got == ("127.0.0.10", "127.0.0.99", "PIPELINING DSN", "a.test/default", "default")
    # the peer took over DSN duty: no success notice is owed
    assert not env.recipients[0].relayed_owed
    assert [s for s in transport.sent if s.sender == ""] == []


async def test_a_routing_failure_settles_under_the_domain_and_its_policy(make) -> None:
    transport = FakeTransport()
    transport.destinations["nx.test"] = local_outcome(451, "4.4.3", "DNS lookup failed")
    h: Harness = await make(transport=transport, notifier=False)
    env = h.submit("a@nx.test")
    await idle()
    [deferred] = h.of(Deferred)
    assert (deferred.queue, deferred.vmta, deferred.status) == ("nx.test", "default", "4.4.3")  # type: ignore[attr-defined]
    assert deferred.source_ip == deferred.destination_ip == deferred.esmtp == ""  # type: ignore[attr-defined]
    assert env.recipients[0].next_attempt == T0 + 60  # the domain's retry-after
    assert transport.sent == []


async def test_mail_for_a_dead_destination_is_deferred_without_a_connection(make) -> None:
    transport = FakeTransport()
    transport.open_failures["a.test"] = local_outcome(451, "4.4.1", "Connection refused")
    h: Harness = await make(transport=transport, notifier=False)
    for i in range(20):
        h.submit(f"r{i}@a.test")
    await idle()
    [queue] = h.scheduler.queues.values()
    for _ in range(10):
        if queue.dead.is_dead(h.clock.now):
            break
        await h.advance(60)
    assert queue.dead.is_dead(h.clock.now)
    await h.advance(1)  # inside the probe interval: no connection may be tried
    opened, before = transport.opened, len(h.of(Deferred))
    env = h.submit("new@a.test")
    await idle()
    [deferred] = h.of(Deferred)[before:]
    assert deferred.recipient == "new@a.test"  # type: ignore[attr-defined]
    assert (deferred.status, deferred.queue) == ("4.4.1", queue.name)  # type: ignore[attr-defined]
    assert deferred.diagnostic == f"451 4.4.1 Destination {queue.key} is not responding"  # type: ignore[attr-defined]
    assert env.recipients[0].next_attempt == h.clock.now + 60
    assert transport.opened == opened
    assert h.spool.saved[env.queue_id].recipients[0].attempts == 1


async def test_a_restored_message_whose_removal_was_cut_short_is_removed(make) -> None:
    spool = MemorySpool()
    done = Envelope("DONE", "s@x.test", [Recipient("a@a.test")], T0)
    done.recipients[0].status = RcptStatus.DELIVERED
    spool.saved["DONE"] = done
    spool.bodies["DONE"] = BODY
    h: Harness = await make(spool=spool)
    h.scheduler.restore(next(spool.recover()))
    h.scheduler.recovery_done()
    await idle()
    assert spool.removed == ["DONE"]
    assert h.transport.sent == []
    assert [e.queue_id for e in h.of(MessageDone)] == ["DONE"]  # type: ignore[attr-defined]
    assert h.scheduler.pending_messages == 0


async def test_a_notice_owed_after_recovery_is_sent_at_once(make) -> None:
    h: Harness = await make()
    h.scheduler.recovery_done()
    late = Envelope("LATE", "s@x.test", [Recipient("a@a.test")], T0)
    late.recipients[0].status = RcptStatus.BOUNCED
    late.recipients[0].last_reply = str(NO_USER)
    late.notices = "F"
    h.spool.saved["LATE"] = late
    h.spool.bodies["LATE"] = BODY
    h.scheduler.restore(late)
    await idle()
    assert [s.queue_id for s in h.transport.sent] == ["LATE-F"]
    assert "LATE" in h.spool.removed


async def test_envelope_lookup(make) -> None:
    h: Harness = await make()
    h.transport.replies["a@a.test"] = LATER
    env = h.submit("a@a.test")
    assert h.scheduler.envelope(env.queue_id) is env
    assert h.scheduler.envelope("NOPE") is None


def _config(tmp_path: Path) -> object:
    return parse_config(
        f'[server]\nhostname = "mta.test"\nstate-dir = "{tmp_path}/state"\n'
        '[dns]\nnameservers = ["127.0.0.1:9"]\n[[listener]]\naddress = "127.0.0.1:0"\n'
    )


class Slow(FakeTransport):
    """Each delivery takes ``delay`` seconds of real time."""

    delay: float = 0.0

    async def open(self, route: Route) -> Opened:
        await super().open(route)
        return Opened(SlowConnection(self, route))


class SlowConnection(FakeConnection):
    async def deliver(self, envelope, recipients, body) -> DeliveryReport:  # type: ignore[no-untyped-def]
        await asyncio.sleep(self.transport.delay)  # type: ignore[attr-defined]
        return await super().deliver(envelope, recipients, body)


async def test_stop_lets_a_delivery_finish_within_the_timeout(tmp_path: Path) -> None:
    transport = Slow()
    transport.delay = 0.1
    scheduler = Scheduler(config=_config(tmp_path), spool=MemorySpool(), transports=transport)  # type: ignore[arg-type]
    env = Envelope("Q1", "s@x.test", [Recipient("a@a.test")], time.time())
    scheduler.submit(env, BODY)
    await asyncio.sleep(0.01)
    assert await scheduler.stop(1.0) is True  # clean: a schedule snapshot may be written
    assert env.recipients[0].status is RcptStatus.DELIVERED
    assert [s.recipients for s in transport.sent] == [["a@a.test"]]


async def test_stop_cancels_a_delivery_that_outlasts_the_timeout(tmp_path: Path) -> None:
    transport = Slow()
    transport.delay = 3600
    scheduler = Scheduler(config=_config(tmp_path), spool=MemorySpool(), transports=transport)  # type: ignore[arg-type]
    seen: list[object] = []
    scheduler.bus.subscribe(type("Sub", (), {"handle": lambda self, ev: seen.extend(ev)})())
    env = Envelope("Q1", "s@x.test", [Recipient("a@a.test")], time.time())
    scheduler.submit(env, BODY)
    await asyncio.sleep(0.01)
    started = time.monotonic()
    assert await asyncio.wait_for(scheduler.stop(0.2), 10) is False  # no snapshot then
    assert 0.15 < time.monotonic() - started < 5
    assert scheduler.ctx.tasks == set() or all(t.done() for t in scheduler.ctx.tasks)
    assert env.recipients[0].status is RcptStatus.PENDING
    assert any(isinstance(e, MessageQueued) for e in seen)  # the bus was flushed
    assert not any(isinstance(e, Bounced) for e in seen)


async def test_an_operator_deletion_is_recorded_under_the_queue_and_its_vmta(make) -> None:
    h: Harness = await make(notifier=False)
    h.transport.replies["a@a.test"] = h.transport.replies["b@a.test"] = LATER
    env = h.submit("a@a.test", "b@a.test")
    await idle()
    await h.advance(10)
    reply = await handle_request(Operator(h.scheduler), {"cmd": "delete", "rcpt": "a@a.test"})
    assert reply["deleted"] == 1
    await idle()
    [bounced] = h.of(Bounced)
    got = (bounced.at, bounced.queue, bounced.vmta, bounced.status)  # type: ignore[attr-defined]
    assert got == (T0 + 10, "a.test/default", "default", "5.0.0")
    assert h.spool.recorded[-1] == ["a@a.test"]  # the deleted recipient's state only
    assert env.recipients[1].status is RcptStatus.PENDING


async def test_a_message_for_two_domains_sends_each_recipient_once(make) -> None:
    """Each domain's item is one attempt in flight; only the last to settle reschedules."""
    h: Harness = await make(notifier=False)
    h.transport.replies["b@b.test"] = LATER
    env = h.submit("a@a.test", "b@b.test")
    await idle()
    assert sorted(r for s in h.transport.sent for r in s.recipients) == ["a@a.test", "b@b.test"]
    msg = h.scheduler.messages[env.queue_id]
    assert msg.inflight == 0 and msg.due == T0 + 60
    h.transport.replies.clear()
    await h.advance(60)
    assert [s.recipients for s in h.transport.sent[2:]] == [["b@b.test"]]
    assert h.spool.removed == [env.queue_id]


async def test_a_transport_selector_picks_the_transport_per_domain(make) -> None:
    class Reloadable(FakeTransport):
        reloads = 0

        def update_config(self, config: object) -> None:  # type: ignore[override]
            self.reloads += 1

    local, remote = Reloadable(), Reloadable()
    h: Harness = await make(notifier=False)  # its config, spool and clock; a selector below
    scheduler = Scheduler(
        config=h.scheduler.config,
        spool=h.spool,
        transports=lambda domain, policy: local if domain == "l.test" else remote,
        clock=h.clock,
    )
    try:
        for i, rcpt in enumerate(("a@l.test", "b@r.test")):
            env = Envelope(f"S{i}", "s@x.test", [Recipient(rcpt)], T0)
            h.spool.bodies[env.queue_id] = BODY
            scheduler.submit(env, BODY)
        await idle()
        assert [s.recipients for s in local.sent] == [["a@l.test"]]
        assert [s.recipients for s in remote.sent] == [["b@r.test"]]
        scheduler.update_config(scheduler.config)  # a reload reaches every transport once
        assert (local.reloads, remote.reloads) == (1, 1)
    finally:
        await scheduler.stop(0.1)


async def test_retry_leaves_a_message_with_an_attempt_out_to_that_attempt(make) -> None:
    """Dispatching it now would route its recipients twice; the attempt out reschedules."""
    h: Harness = await make(notifier=False)
    h.transport.replies["a@a.test"] = LATER
    env = h.submit("a@a.test")
    await idle()
    msg = h.scheduler.messages[env.queue_id]
    h.transport.replies.clear()
    msg.envelope.recipients[0].next_attempt = h.clock.now  # the operator made it due
    msg.inflight = 1  # as if an item of it were still being delivered
    h.scheduler.retry_now([msg])
    await idle()
    assert len(h.transport.sent) == 1
    msg.inflight, msg.removing = 0, True  # being removed: nothing to retry
    h.scheduler.retry_now([msg])
    await idle()
    assert len(h.transport.sent) == 1
    msg.removing = False
    h.scheduler.retry_now([msg])
    await idle()
    assert len(h.transport.sent) == 2


async def test_a_hold_ends_with_its_message(make) -> None:
    h: Harness = await make(notifier=False)
    h.transport.replies["a@a.test"] = LATER
    env = h.submit("a@a.test")
    await idle()
    operator = Operator(h.scheduler)
    await handle_request(operator, {"cmd": "hold", "id": env.queue_id})
    assert h.scheduler.ctx.control.held_messages == {env.queue_id}
    await h.advance(60)  # due: parked by the hold
    assert operator.status()["held"] != {}
    await handle_request(operator, {"cmd": "delete", "id": env.queue_id})
    await idle()
    assert h.spool.removed == [env.queue_id]
    assert h.scheduler.ctx.control.held_messages == set()
    assert operator.status()["held"] == {}


async def test_recovery_clears_a_stored_notice_of_a_message_still_pending(make) -> None:
    spool = MemorySpool()
    original = Envelope("ORIG", "s@x.test", [Recipient("a@a.test"), Recipient("b@a.test")], T0)
    original.recipients[0].status = RcptStatus.BOUNCED
    original.recipients[0].last_reply = str(NO_USER)
    original.recipients[1].next_attempt = T0 + 30
    original.notices = "F"  # owed, and its DSN was stored just before the crash
    dsn = Envelope("ORIG-F", "", [Recipient("s@x.test")], T0)
    for env in (original, dsn):
        spool.saved[env.queue_id] = env
        spool.bodies[env.queue_id] = BODY
    h: Harness = await make(spool=spool)
    for env in spool.recover():
        h.scheduler.restore(env)
    h.scheduler.recovery_done()
    await idle()
    assert spool.saved["ORIG"].notices == ""
    assert spool.recorded[0] == []  # the notice cleared, no recipient changed
    assert [s.queue_id for s in h.transport.sent] == ["ORIG-F"]


async def test_a_final_notice_is_added_to_a_delay_notice_still_owed(make) -> None:
    """Without a notifier the delay warning stays owed; the failure notice joins it."""
    h: Harness = await make(delay="30s", notifier=False)
    h.transport.replies["a@a.test"] = LATER
    env = h.submit("a@a.test")
    await idle()
    await h.advance(60)  # deferred again, past delay-warning-after: "D" owed
    assert h.spool.saved[env.queue_id].notices == "D"
    h.transport.replies["a@a.test"] = NO_USER
    await h.advance(60)
    assert h.spool.saved[env.queue_id].notices == "DF"


async def test_an_operator_bounce_adds_the_failure_notice_to_a_delay_notice_owed(make) -> None:
    h: Harness = await make(delay="30s", notifier=False)
    h.transport.replies["a@a.test"] = LATER
    env = h.submit("a@a.test")
    await idle()
    await h.advance(60)
    await handle_request(
        Operator(h.scheduler), {"cmd": "delete", "id": env.queue_id, "bounce": True}
    )
    await idle()
    assert h.spool.saved[env.queue_id].notices == "DF"


async def test_a_deferral_in_backoff_mode_waits_the_backoff_retry_time(make) -> None:
    h: Harness = await make(notifier=False)
    h.transport.replies["slow@a.test"] = THROTTLED
    env = h.submit("slow@a.test")
    await idle()
    [queue] = h.scheduler.queues.values()
    assert queue.mode.value == "backoff"
    assert env.recipients[0].next_attempt == T0 + 3600  # backoff-retry-after, not 60s


async def test_a_message_rate_slower_than_the_idle_timeout_reconnects_in_time(make) -> None:
    h: Harness = await make(notifier=False, tables='[domain."a.test"]\nmax-msg-rate = "1/10m"')
    h.submit("a@a.test")
    h.submit("b@a.test")
    await idle()
    assert [s.recipients for s in h.transport.sent] == [["a@a.test"]]
    for _ in range(12):
        await h.advance(60)
    assert [s.recipients for s in h.transport.sent] == [["a@a.test"], ["b@a.test"]]


async def test_snapshot_entries_are_the_envelopes_of_every_queued_message(make) -> None:
    h: Harness = await make(notifier=False)
    h.transport.replies["a@a.test"] = h.transport.replies["b@b.test"] = LATER
    first = h.submit("a@a.test")
    second = h.submit("b@b.test")
    await idle()
    count, entries = h.scheduler.snapshot_entries()
    assert count == 2
    assert list(entries) == [first, second]
    # read for the snapshot, not unpacked for good: the waiting messages stay packed
    assert all(h.scheduler.messages[e.queue_id].packed for e in (first, second))
