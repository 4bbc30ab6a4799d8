"""A connection's lease on its queue, on its own: what a worker may take and when,
how long it waits for more mail, how the message rate paces it (local and shared),
and how its reports become outcomes, window changes and wake-ups.

No scheduler and no transport: the lease is built on a plain DeliveryQueue, and the
scheduler's callbacks (settle, wake_after, kick) only record their calls.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from outrider.config.loader import parse_config
from outrider.delivery.transport import DeliveryReport, RecipientReply
from outrider.events.bus import EventBus
from outrider.message.envelope import Envelope, Recipient
from outrider.policy.outcome import Outcome, Scope, Verdict, local_outcome
from outrider.policy.patterns import Action, Match
from outrider.policy.window import ConcurrencyWindow, DeadDestination
from outrider.queue import lease as lease_module
from outrider.queue.context import Context
from outrider.queue.control_state import ControlState
from outrider.queue.holds import Holds
from outrider.queue.lease import MAX_RESERVE, RESERVE_AHEAD, Lease
from outrider.queue.model import DeliveryQueue, QueuedMessage, WorkItem
from outrider.queue.shaping import Shaper
from outrider.smtp.replies import Reply
from outrider.spool.reader import Body
from outrider.throttle.rate import RateLimit

OK = Reply(250, "2.0.0", "ok")
LATER = Reply(451, "4.7.1", "try later")
GONE = Reply(550, "5.1.1", "no such user")


class RecordingShaper(Shaper):
    """The shaper's reaction to a reply, scripted: ``matches[text]`` is what the queue's
    pattern list says about a reply text; every call is recorded."""

    def __init__(self, ctx: Context, matches: dict[str, list[Match]]) -> None:
        super().__init__(ctx, lambda key: None, lambda item, vmta: None, lambda q: None)  # type: ignore[arg-type,return-value]
        self.matches = matches
        self.reacted: list[tuple[str, str, str]] = []
        self.reacted_on: list[DeliveryQueue] = []

    def react(self, queue: DeliveryQueue, reply: Reply, phase: str, host: str) -> list[Match]:
        self.reacted.append((str(reply), phase, host))
        self.reacted_on.append(queue)
        return self.matches.get(str(reply), [])


@dataclass
class FakeCluster:
    """The cluster throttle's two calls a lease makes, scripted."""

    grants: list[tuple[list[float], float]] = field(default_factory=list)
    reserved: list[tuple[str, RateLimit, int, float]] = field(default_factory=list)
    clocks: list[float] = field(default_factory=list)
    over: bool = False
    asked: list[tuple[str, int | None, str | None]] = field(default_factory=list)

    async def reserve(
        self, key: str, limit: RateLimit, now: float, want: int = 1, ahead: float = 0.0
    ) -> tuple[list[float], float]:
        self.reserved.append((key, limit, want, ahead))
        self.clocks.append(now)
        return self.grants.pop(0)

    def over_share(self, key: str, limit: int | None, also: str | None = None) -> bool:
        self.asked.append((key, limit, also))
        return self.over


@dataclass
class Rig:
    lease: Lease
    queue: DeliveryQueue
    ctx: Context
    shaper: RecordingShaper
    settled: list[tuple[WorkItem, dict[int, Outcome], DeliveryQueue | None, Any]] = field(
        default_factory=list
    )
    woken: list[tuple[DeliveryQueue, float]] = field(default_factory=list)
    kicked: list[DeliveryQueue] = field(default_factory=list)
    now: list[float] = field(default_factory=lambda: [1000.0])

    def outcomes_of(self, item: WorkItem) -> list[Outcome]:
        return [o for it, outs, _, _ in self.settled if it is item for o in outs.values()]

    def settled_items(self) -> list[WorkItem]:
        return [it for it, _, _, _ in self.settled]


CONFIG = """
[server]
hostname = "mta.test"
state-dir = "{state}"
[dns]
nameservers = ["127.0.0.1:9"]
[[listener]]
address = "127.0.0.1:0"
[virtual-mta.out1]
smtp-source-host = "127.0.0.2"
"""


def rig(
    tmp_path: Path,
    *,
    idle: float = 5.0,
    maximum: int = 20,
    vmta: str = "default",
    msg_limit: RateLimit | None = None,
    cluster: FakeCluster | None = None,
    matches: dict[str, list[Match]] | None = None,
    max_msg: int = 0,
) -> Rig:
    config = parse_config(CONFIG.format(state=tmp_path / "state"))
    loop = asyncio.get_running_loop()
    control = ControlState()
    now = [1000.0]
    ctx = Context(config, lambda: now[0], loop, EventBus(loop), control)
    ctx.cluster = cluster  # type: ignore[assignment]
    policy = dataclasses.replace(
        config.policy_for("a.test"),
        connection_idle_timeout=idle,
        max_msg_per_connection=max_msg,
    )
    queue = DeliveryQueue(
        key="a.test",
        vmta=vmta,
        domain="a.test",
        policy=policy,
        window=ConcurrencyWindow(maximum=maximum),
        dead=DeadDestination(dead_for=60.0),
    )
    if msg_limit is not None:
        queue.msg_limit = msg_limit
    shaper = RecordingShaper(ctx, matches or {})
    r: Rig = Rig(None, queue, ctx, shaper, now=now)  # type: ignore[arg-type]

    def settle(
        item: WorkItem, outcomes: dict[int, Outcome], q: DeliveryQueue | None, report: Any
    ) -> None:
        r.settled.append((item, outcomes, q, report))

    async def load_body(msg: QueuedMessage) -> Body:
        return msg.body  # type: ignore[return-value]

    r.lease = Lease(
        ctx,
        queue,
        Holds(control),
        shaper,
        settle,
        load_body,
        lambda q, wait: r.woken.append((q, wait)),
        r.kicked.append,
    )
    return r


def item(queue_id: str = "Q1", *rcpts: str, domain: str = "a.test", body: bytes = b"x") -> WorkItem:
    recipients = [Recipient(a) for a in (rcpts or (f"u@{domain}",))]
    env = Envelope(queue_id, "s@x.test", recipients, 0.0)
    return WorkItem(QueuedMessage(env, body), recipients, domain)


# -- taking work -----------------------------------------------------------------------------
async def test_take_hands_out_ready_items_in_order_then_none(tmp_path: Path) -> None:
    r = rig(tmp_path)
    first, second = item("Q1"), item("Q2")
    r.queue.ready.extend([first, second])
    assert r.lease.has_ready()
    assert r.lease.take() is first
    assert r.lease.take() is second
    assert r.lease.take() is None
    assert not r.lease.has_ready()


async def test_take_parks_held_messages_and_hands_out_the_next(tmp_path: Path) -> None:
    r = rig(tmp_path)
    held, free = item("HELD"), item("FREE")
    r.ctx.control.held_messages.add("HELD")
    r.queue.ready.extend([held, free])
    assert r.lease.take() is free
    assert r.lease.holds.messages["HELD"] == [held]
    assert not r.queue.ready


async def test_take_gives_nothing_from_a_paused_queue_and_leaves_it_waiting(
    tmp_path: Path,
) -> None:
    r = rig(tmp_path)
    waiting = item()
    r.queue.ready.append(waiting)
    r.ctx.control.paused_queues.add("a.test")
    assert r.lease.take() is None
    assert list(r.queue.ready) == [waiting]


async def test_take_now_allows_up_to_the_window_and_not_past_it(tmp_path: Path) -> None:
    r = rig(tmp_path)
    a, b = item("Q1"), item("Q2")
    r.queue.ready.extend([a, b])
    r.queue.active = r.queue.window.limit  # this connection is one of the window
    assert r.lease.take_now() is a
    r.queue.active = r.queue.window.limit + 1  # the window shrank under it
    assert r.lease.take_now() is None
    assert list(r.queue.ready) == [b]


async def test_take_now_gives_nothing_while_stopping(tmp_path: Path) -> None:
    r = rig(tmp_path)
    r.queue.ready.append(item())
    r.ctx.stopping = True
    assert r.lease.closing
    assert r.lease.take_now() is None
    assert len(r.queue.ready) == 1


async def test_put_back_makes_the_item_first_in_line(tmp_path: Path) -> None:
    r = rig(tmp_path)
    later, taken = item("LATER"), item("TAKEN")
    r.queue.ready.append(later)
    r.lease.put_back(taken)
    assert list(r.queue.ready) == [taken, later]
    assert r.lease.take() is taken


async def test_next_returns_a_ready_item_at_once(tmp_path: Path) -> None:
    r = rig(tmp_path)
    ready = item()
    r.queue.ready.append(ready)
    r.queue.active = r.queue.window.limit
    assert await r.lease.next() is ready


async def test_next_gives_the_connection_up_when_the_window_shrank(tmp_path: Path) -> None:
    r = rig(tmp_path)
    r.queue.ready.append(item())
    r.queue.active = r.queue.window.limit + 1
    assert await r.lease.next() is None
    assert len(r.queue.ready) == 1


@pytest.mark.parametrize("why", ["no idle time", "stopping", "paused"])
async def test_next_does_not_wait_when_it_may_not(tmp_path: Path, why: str) -> None:
    r = rig(tmp_path, idle=0.0 if why == "no idle time" else 5.0)
    if why == "stopping":
        r.ctx.stopping = True
    if why == "paused":
        r.ctx.control.paused_queues.add("a.test/default")
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await asyncio.wait_for(r.lease.next(), 1.0) is None
    assert loop.time() - start < 0.5
    assert not r.queue.idle


async def test_next_waits_for_new_mail_handed_to_its_waiter(tmp_path: Path) -> None:
    r = rig(tmp_path)
    task = asyncio.ensure_future(r.lease.next())
    await asyncio.sleep(0)
    assert len(r.queue.idle) == 1
    waiter = r.queue.idle.popleft()  # as the scheduler hands new mail to a waiting worker
    new = item()
    waiter.set_result(new)
    assert await task is new
    assert not r.queue.idle


async def test_next_gives_up_after_the_idle_timeout(tmp_path: Path) -> None:
    r = rig(tmp_path, idle=0.05)
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await asyncio.wait_for(r.lease.next(), 2.0) is None
    assert loop.time() - start >= 0.04
    assert not r.queue.idle


async def test_a_cancelled_wait_leaves_no_waiter_behind(tmp_path: Path) -> None:
    r = rig(tmp_path)
    task = asyncio.ensure_future(r.lease.next())
    await asyncio.sleep(0)
    assert len(r.queue.idle) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not r.queue.idle


async def test_next_ends_the_connection_when_the_node_is_over_its_cluster_share(
    tmp_path: Path,
) -> None:
    cluster = FakeCluster(over=True)
    r = rig(tmp_path, cluster=cluster, vmta="out1", maximum=7)
    r.queue.ready.append(item())
    assert await r.lease.next() is None
    assert cluster.asked == [("conn a.test/out1", 7, "addr a.test/127.0.0.2")]
    assert len(r.queue.ready) == 1
    cluster.over = False
    assert await r.lease.next() is not None


async def test_take_now_pipelines_nothing_while_the_node_is_over_its_cluster_share(
    tmp_path: Path,
) -> None:
    # Under a backlog a connection pipelines every message through take_now and never
    # asks next(): the share must hold there too, or the extra connection never ends.
    cluster = FakeCluster(over=True)
    r = rig(tmp_path, cluster=cluster, vmta="out1", maximum=7)
    r.queue.ready.append(item())
    assert r.lease.take_now() is None
    assert cluster.asked == [("conn a.test/out1", 7, "addr a.test/127.0.0.2")]
    assert len(r.queue.ready) == 1
    cluster.over = False
    assert r.lease.take_now() is not None


# -- pacing on the local throttle --------------------------------------------------------------
async def test_pace_without_a_message_rate_never_waits(tmp_path: Path) -> None:
    r = rig(tmp_path)
    for _ in range(50):
        assert await asyncio.wait_for(r.lease.pace(), 0.5)
    assert r.woken == []


async def test_pace_waits_out_a_short_rate_interval(tmp_path: Path) -> None:
    r = rig(tmp_path, msg_limit=RateLimit(0.05))
    loop = asyncio.get_running_loop()
    assert await r.lease.pace()
    start = loop.time()
    assert await r.lease.pace()
    assert loop.time() - start >= 0.04
    assert r.woken == []


async def test_pace_longer_than_the_idle_timeout_schedules_a_wake_up(tmp_path: Path) -> None:
    r = rig(tmp_path, idle=1.0, msg_limit=RateLimit(30.0))
    assert await r.lease.pace()
    assert not await asyncio.wait_for(r.lease.pace(), 0.5)
    [(queue, wait)] = r.woken
    assert queue is r.queue
    assert 29.0 < wait <= 30.0


async def test_pace_admits_nothing_on_a_zero_rate(tmp_path: Path) -> None:
    r = rig(tmp_path, idle=1.0, msg_limit=RateLimit(math.inf))
    assert not await asyncio.wait_for(r.lease.pace(), 0.5)
    assert r.woken == [(r.queue, math.inf)]


# -- pacing on the cluster's rate --------------------------------------------------------------
async def test_shared_pace_unlimited_asks_redis_nothing(tmp_path: Path) -> None:
    cluster = FakeCluster()
    r = rig(tmp_path, cluster=cluster)
    assert await r.lease.pace()
    assert cluster.reserved == []


async def test_shared_pace_uses_reserved_admissions_at_their_times(tmp_path: Path) -> None:
    cluster = FakeCluster(grants=[([0.0, 0.05], 0.0)])
    r = rig(tmp_path, cluster=cluster, msg_limit=RateLimit(0.05))
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await r.lease.pace()
    assert loop.time() - start < 0.04  # the first admission is for now
    assert await r.lease.pace()
    assert loop.time() - start >= 0.04  # the second waits for its time
    assert len(cluster.reserved) == 1  # one round trip for both


async def test_shared_pace_reserves_for_the_waiting_mail_up_to_the_maximum(
    tmp_path: Path,
) -> None:
    limit = RateLimit(0.01)
    cluster = FakeCluster(grants=[([0.0], 0.0), ([0.0], 0.0), ([0.0], 0.0)])
    r = rig(tmp_path, cluster=cluster, msg_limit=limit)
    assert await r.lease.pace()
    r.queue.ready.extend([item("Q1"), item("Q2")])
    assert await r.lease.pace()
    r.queue.ready.extend(item(f"M{i}") for i in range(10))
    assert await r.lease.pace()
    key = r.queue.msg_key
    assert cluster.reserved == [
        (key, limit, 1, RESERVE_AHEAD),
        (key, limit, 3, RESERVE_AHEAD),
        (key, limit, MAX_RESERVE, RESERVE_AHEAD),
    ]
    # Redis compares admissions of every node: they are stamped with the wall clock
    assert all(abs(t - time.time()) < 5.0 for t in cluster.clocks)


async def test_shared_pace_waits_for_redis_then_asks_again(tmp_path: Path) -> None:
    cluster = FakeCluster(grants=[([], 0.05), ([0.0], 0.0)])
    r = rig(tmp_path, cluster=cluster, msg_limit=RateLimit(1.0))
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await r.lease.pace()
    assert loop.time() - start >= 0.04
    assert len(cluster.reserved) == 2
    assert r.woken == []


async def test_shared_pace_longer_than_the_idle_timeout_schedules_a_wake_up(
    tmp_path: Path,
) -> None:
    cluster = FakeCluster(grants=[([], 12.5)])
    r = rig(tmp_path, idle=1.0, cluster=cluster, msg_limit=RateLimit(10.0))
    assert not await asyncio.wait_for(r.lease.pace(), 0.5)
    assert r.woken == [(r.queue, 12.5)]


# -- results ---------------------------------------------------------------------------------
def replies(it: WorkItem, *answers: Reply) -> list[RecipientReply]:
    return [RecipientReply(rcpt, a, "rcpt") for rcpt, a in zip(it.recipients, answers, strict=True)]


async def test_report_classifies_each_recipients_reply(tmp_path: Path) -> None:
    r = rig(tmp_path)
    it = item("Q1", "a@a.test", "b@a.test", "c@a.test")
    report = DeliveryReport(replies(it, OK, LATER, GONE), remote_host="mx.a.test")
    r.lease.report(it, report)
    [(settled, outcomes, queue, got)] = r.settled
    assert settled is it and queue is r.queue and got is report
    by_rcpt = [outcomes[id(rcpt)] for rcpt in it.recipients]
    assert [o.verdict for o in by_rcpt] == [Verdict.DELIVERED, Verdict.TRANSIENT, Verdict.PERMANENT]
    assert {o.scope for o in by_rcpt} == {Scope.RECIPIENT}
    assert {o.remote_mta for o in by_rcpt} == {"mx.a.test"}
    assert by_rcpt[2].status == "5.1.1"


async def test_report_applies_the_pattern_list_once_per_distinct_reply(tmp_path: Path) -> None:
    bounce = Match(Action.BOUNCE, "try later", str(LATER))
    r = rig(tmp_path, matches={str(LATER): [bounce]})
    it = item("Q1", "a@a.test", "b@a.test", "c@a.test")
    r.lease.report(it, DeliveryReport(replies(it, LATER, LATER, OK), remote_host="mx"))
    assert r.shaper.reacted == [(str(LATER), "rcpt", "mx"), (str(OK), "rcpt", "mx")]
    outcomes = r.outcomes_of(it)
    # "bounce" makes the temporary failure permanent, for both recipients that got it
    assert [o.verdict for o in outcomes] == [
        Verdict.PERMANENT,
        Verdict.PERMANENT,
        Verdict.DELIVERED,
    ]


async def test_a_successful_report_grows_the_window_and_opens_connections(tmp_path: Path) -> None:
    r = rig(tmp_path)
    r.queue.ready.append(item("WAITING"))
    r.queue.active = 5
    before = r.queue.window.limit
    sent = item()
    for _ in range(before):
        r.lease.report(sent, DeliveryReport(replies(sent, OK)))
    assert r.queue.window.limit == before + 1
    assert r.kicked == [r.queue]


async def test_a_grown_window_with_nothing_waiting_opens_nothing(tmp_path: Path) -> None:
    r = rig(tmp_path)
    r.queue.active = 5
    before = r.queue.window.limit
    sent = item()
    for _ in range(before):
        r.lease.report(sent, DeliveryReport(replies(sent, OK)))
    assert r.queue.window.limit == before + 1
    assert r.kicked == []


async def test_a_report_that_does_not_grow_the_window_opens_nothing(tmp_path: Path) -> None:
    r = rig(tmp_path)
    r.queue.ready.append(item("WAITING"))
    r.queue.active = 5
    sent = item()
    r.lease.report(sent, DeliveryReport(replies(sent, OK)))  # 1/5 of a step
    assert r.queue.window.limit == 5
    assert r.kicked == []


async def test_a_lost_connection_shrinks_the_window(tmp_path: Path) -> None:
    r = rig(tmp_path)
    r.queue.ready.append(item("WAITING"))
    sent = item()
    r.lease.report(sent, DeliveryReport(replies(sent, OK), connection_lost=True))
    assert r.queue.window.limit == 4
    assert r.kicked == []
    assert r.settled_items() == [sent]  # its replies still count


async def test_a_report_with_a_failure_fails_the_batch_by_its_scope(tmp_path: Path) -> None:
    r = rig(tmp_path)
    waiting = item("WAITING")
    r.queue.ready.append(waiting)
    failure = local_outcome(421, "4.4.2", "next MX unreachable", scope=Scope.SITE)
    sent = item()
    r.lease.report(sent, DeliveryReport(failure=failure))
    assert r.settled_items() == [sent, waiting]
    assert all(report is None for _, _, _, report in r.settled)
    assert r.outcomes_of(sent) == [failure]
    assert r.shaper.reacted == []


async def test_a_site_failure_reaches_every_waiting_item(tmp_path: Path) -> None:
    r = rig(tmp_path)
    others = [item("Q2"), item("Q3", domain="b.test")]
    r.queue.ready.extend(others)
    failed = item("Q1", "a@a.test", "b@a.test")
    outcome = local_outcome(421, "4.4.1", "connection refused")
    r.lease.fail(failed, outcome)
    assert r.settled_items() == [failed, *others]
    assert r.outcomes_of(failed) == [outcome, outcome]
    assert not r.queue.ready
    assert r.queue.window.limit == 4
    assert all(q is r.queue for _, _, q, _ in r.settled)
    # one failure of a window of 4 (after it shrank) is a quarter of a failed cohort
    assert r.queue.dead.failed_cohorts == 0.25
    assert not r.queue.dead.is_dead(r.now[0])


async def test_a_domain_failure_reaches_only_that_domains_waiting_items(tmp_path: Path) -> None:
    r = rig(tmp_path)
    same, other = item("Q2"), item("Q3", domain="b.test")
    r.queue.ready.extend([other, same])
    outcome = local_outcome(550, "5.1.2", "no mail server", scope=Scope.DOMAIN)
    failed = item("Q1")
    r.lease.fail(failed, outcome)
    assert r.settled_items() == [failed, same]
    assert list(r.queue.ready) == [other]
    assert r.queue.window.limit == 5  # the destination itself answered


@pytest.mark.parametrize("scope", [Scope.RECIPIENT, Scope.MESSAGE])
async def test_a_narrow_failure_reaches_only_its_item(tmp_path: Path, scope: Scope) -> None:
    r = rig(tmp_path)
    waiting = item("Q2")
    r.queue.ready.append(waiting)
    failed = item("Q1")
    r.lease.fail(failed, local_outcome(451, "4.3.0", "x", scope=scope))
    assert r.settled_items() == [failed]
    assert list(r.queue.ready) == [waiting]
    assert r.queue.window.limit == 5
    assert not r.queue.dead.is_dead(r.now[0])


async def test_a_local_error_defers_the_item_and_names_the_error(tmp_path: Path) -> None:
    r = rig(tmp_path)
    waiting = item("Q2")
    r.queue.ready.append(waiting)
    failed = item("Q1", "a@a.test", "b@a.test")
    r.lease.local_error(failed, OSError("disk on fire"))
    assert r.settled_items() == [failed]
    outcomes = r.outcomes_of(failed)
    assert len(outcomes) == 2
    assert {o.verdict for o in outcomes} == {Verdict.TRANSIENT}
    assert {o.scope for o in outcomes} == {Scope.MESSAGE}
    assert {o.status for o in outcomes} == {"4.3.0"}
    assert outcomes[0].diagnostic.startswith("451 4.3.0 ")
    assert "disk on fire" in outcomes[0].diagnostic
    assert r.settled[0][2] is r.queue
    assert list(r.queue.ready) == [waiting]


async def test_a_connection_to_a_dead_destination_reopens_the_window(tmp_path: Path) -> None:
    r = rig(tmp_path)
    r.queue.dead.on_failure(r.now[0])  # one cohort: dead
    assert r.queue.dead.is_dead(r.now[0])
    r.queue.ready.append(item())
    r.lease.connected()
    assert not r.queue.dead.is_dead(r.now[0])
    assert r.kicked == [r.queue]


async def test_a_connection_to_a_dead_destination_with_nothing_waiting_opens_nothing(
    tmp_path: Path,
) -> None:
    r = rig(tmp_path)
    r.queue.dead.on_failure(r.now[0])
    r.lease.connected()
    assert not r.queue.dead.is_dead(r.now[0])
    assert r.kicked == []


async def test_a_connection_to_a_live_destination_opens_nothing_more(tmp_path: Path) -> None:
    r = rig(tmp_path)
    r.queue.dead.on_failure(r.now[0], concurrency=4)  # a quarter cohort: still alive
    r.queue.ready.append(item())
    r.lease.connected()
    assert r.queue.dead.failed_cohorts == 0.0
    assert r.kicked == []


# -- what the worker reads -------------------------------------------------------------------
async def test_the_route_and_limits_come_from_the_queue(tmp_path: Path) -> None:
    r = rig(tmp_path, idle=7.5, max_msg=3, vmta="out1")
    it = item(domain="b.test")
    route = r.lease.route(it)
    assert (route.domain, route.destination, route.vmta) == ("b.test", "a.test", "out1")
    assert route.policy is r.queue.policy
    assert r.lease.idle_timeout == 7.5
    assert r.lease.max_per_connection == 3
    route.observe(LATER, "mail", "mx1")
    assert r.shaper.reacted == [(str(LATER), "mail", "mx1")]
    assert r.shaper.reacted_on == [r.queue]


async def test_body_is_loaded_for_the_items_message(tmp_path: Path) -> None:
    r = rig(tmp_path)
    assert await r.lease.body(item(body=b"the body")) == b"the body"


async def test_an_expired_waiter_that_was_already_answered_is_left_alone(
    tmp_path: Path,
) -> None:
    r = rig(tmp_path)
    waiter: asyncio.Future[WorkItem | None] = asyncio.get_running_loop().create_future()
    answer = item()
    waiter.set_result(answer)  # new mail came just before the idle timer fired
    lease_module._expire_idle(r.queue, waiter)
    assert waiter.result() is answer


async def test_a_window_not_in_use_does_not_grow(tmp_path: Path) -> None:
    r = rig(tmp_path)
    r.queue.ready.append(item("WAITING"))
    r.queue.active = 0  # successes of a window that is not even full say nothing of more
    sent = item()
    for _ in range(20):
        r.lease.report(sent, DeliveryReport(replies(sent, OK)))
    assert r.queue.window.limit == 5
    assert r.kicked == []


async def test_shared_pace_asks_again_at_once_when_redis_says_now(tmp_path: Path) -> None:
    cluster = FakeCluster(grants=[([], 0.0), ([0.0], 0.0)])
    r = rig(tmp_path, cluster=cluster, msg_limit=RateLimit(1.0))
    assert await asyncio.wait_for(r.lease.pace(), 0.5)
    assert len(cluster.reserved) == 2


async def test_shared_pace_waits_as_long_as_the_idle_timeout(tmp_path: Path) -> None:
    # A wait exactly as long as the connection may idle is still waited out here.
    cluster = FakeCluster(grants=[([], 0.05), ([0.0], 0.0)])
    r = rig(tmp_path, idle=0.05, cluster=cluster, msg_limit=RateLimit(1.0))
    assert await asyncio.wait_for(r.lease.pace(), 1.0)
    assert r.woken == []
