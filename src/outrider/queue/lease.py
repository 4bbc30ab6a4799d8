"""A connection's lease on its queue: the only way a worker touches the schedule.

A worker takes items, waits for the queue's message rate, and reports what the
transport said; the lease turns reports into outcomes (reply classification, response
patterns, the connection window) and hands them to the scheduler. An item the worker
cannot send goes back through :meth:`Lease.put_back`, never straight onto the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from outrider.delivery.transport import DeliveryReport, Route
from outrider.policy.outcome import Outcome, Scope, classify_reply, local_outcome
from outrider.policy.patterns import Match, classify_with_patterns
from outrider.queue.context import Context
from outrider.queue.holds import Holds
from outrider.queue.model import DeliveryQueue, QueuedMessage, WorkItem
from outrider.queue.shaping import Shaper
from outrider.smtp.replies import Reply
from outrider.spool.reader import Body

if TYPE_CHECKING:
    from outrider.cluster.throttle import RedisThrottle

# With a cluster, a connection reserves up to this many message-rate admissions per
# Redis round trip, those that conform within RESERVE_AHEAD seconds; one it does not
# use (the connection ends) is lost to the rate, so both stay small.
MAX_RESERVE = 4
RESERVE_AHEAD = 0.2

# settle(item, outcomes by id(recipient), queue, report or None)
Settle = Callable[[WorkItem, dict[int, Outcome], DeliveryQueue | None, DeliveryReport | None], None]
LoadBody = Callable[[QueuedMessage], Coroutine[Any, Any, Body]]


def fail_item(
    settle: Settle, item: WorkItem, outcome: Outcome, queue: DeliveryQueue | None
) -> None:
    settle(item, {id(r): outcome for r in item.recipients}, queue, None)


def apply_failure(
    settle: Settle, queue: DeliveryQueue, item: WorkItem, outcome: Outcome, now: float
) -> None:
    """The one place a failure's scope is read: how much waiting mail it reaches."""
    affected = [item]
    if outcome.scope is Scope.SITE:
        # The destination as a whole failed: shrink the window, count towards "dead",
        # and every item waiting for it shares the outcome.
        queue.window.on_failure()
        queue.dead.on_failure(now, concurrency=queue.window.limit)
        affected.extend(queue.ready)
        queue.ready.clear()
    elif outcome.scope is Scope.DOMAIN:
        # DNS spoke about one recipient domain; a rolled-up queue's others are unaffected.
        keep = [it for it in queue.ready if it.domain != item.domain]
        affected.extend(it for it in queue.ready if it.domain == item.domain)
        queue.ready.clear()
        queue.ready.extend(keep)
    for it in affected:
        fail_item(settle, it, outcome, queue)


class Lease:
    def __init__(
        self,
        ctx: Context,
        queue: DeliveryQueue,
        holds: Holds,
        shaper: Shaper,
        settle: Settle,
        load_body: LoadBody,
        wake_after: Callable[[DeliveryQueue, float], None],
        kick: Callable[[DeliveryQueue], None],
    ) -> None:
        self.ctx = ctx
        self.queue = queue
        self.holds = holds
        self.shaper = shaper
        self.settle = settle
        self.load_body = load_body
        self.wake_after = wake_after
        self.kick = kick
        self._reserved: deque[float] = deque()  # loop times of reserved shared admissions

    @property
    def closing(self) -> bool:
        return self.ctx.stopping

    @property
    def max_per_connection(self) -> int:
        return self.queue.policy.max_msg_per_connection

    @property
    def idle_timeout(self) -> float:
        return self.queue.policy.connection_idle_timeout

    def route(self, item: WorkItem) -> Route:
        queue = self.queue
        return Route(item.domain, queue.key, queue.vmta, queue.policy, self.observe)

    def observe(self, reply: Reply, phase: str, host: str) -> None:
        self.shaper.react(self.queue, reply, phase, host)

    # -- taking work -------------------------------------------------------------------------
    def take(self) -> WorkItem | None:
        """The next ready item, parking those of paused jobs and domains."""
        queue = self.queue
        while queue.ready and not self.holds.queue_paused(queue):
            item = queue.ready.popleft()
            if not self.holds.park(item):
                return item
        return None

    def has_ready(self) -> bool:
        """Whether an item is waiting now (cheap: the worker asks before it sets up a
        wait to pipeline the next message)."""
        return bool(self.queue.ready)

    def take_now(self) -> WorkItem | None:
        """An item only if one is ready now and the window allows this connection to
        go on: the worker pipelines it behind the message in flight, and must not hold
        that message's report back waiting for new mail."""
        queue = self.queue
        if self.closing or queue.active > queue.window.limit or self._over_share():
            return None
        return self.take()

    def _over_share(self) -> bool:
        """Redis is away and this node holds more of the queue's connections than its share."""
        cluster = self.ctx.cluster
        queue = self.queue
        return cluster is not None and cluster.over_share(
            queue.lease_key,
            queue.window.maximum,
            queue.address_lease_key(self.ctx.config.virtual_mtas),
        )

    def put_back(self, item: WorkItem) -> None:
        """An item taken but not sent: first in line for the next connection."""
        self.queue.ready.appendleft(item)

    async def next(self) -> WorkItem | None:
        """Another item for this connection, waiting up to the idle timeout for one."""
        queue = self.queue
        if queue.active > queue.window.limit:
            return None  # the window shrank (backoff, failures): give this connection up
        if self._over_share():
            return None  # Redis is away and this node has more than its share
        item = self.take()
        timeout = self.idle_timeout
        if item is not None or timeout <= 0 or self.closing or self.holds.queue_paused(queue):
            return item
        waiter: asyncio.Future[WorkItem | None] = self.ctx.loop.create_future()
        queue.idle.append(waiter)
        timer = self.ctx.loop.call_later(timeout, _expire_idle, queue, waiter)
        try:
            return await waiter
        finally:
            timer.cancel()
            if not waiter.done() or waiter.cancelled():
                # Only a cancelled wait leaves the waiter queued (deque.remove's miss
                # would format the future's repr, so never call it needlessly).
                with contextlib.suppress(ValueError):
                    queue.idle.remove(waiter)

    async def pace(self) -> bool:
        """Wait until the message rate allows one more message; False when that is
        longer than the connection may idle (a wake-up reopens one in time)."""
        queue = self.queue
        if self.ctx.cluster is not None:
            return await self._shared_pace(self.ctx.cluster)
        throttle = self.ctx.throttle
        while True:
            now = self.ctx.loop.time()
            wait = throttle.peek_rate_now(queue.msg_key, queue.msg_limit, now)
            if wait > queue.policy.connection_idle_timeout:
                self.wake_after(queue, wait)
                return False
            if wait <= 0 and throttle.rate_now(queue.msg_key, queue.msg_limit, now) <= 0:
                return True
            await asyncio.sleep(max(wait, 0.001))

    async def _shared_pace(self, cluster: RedisThrottle) -> bool:
        """:meth:`pace` against the cluster's rate: admissions are reserved a few at a
        time (one round trip) and used at the times Redis gave them."""
        queue = self.queue
        loop = self.ctx.loop
        while True:
            if self._reserved:
                delay = self._reserved.popleft() - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                return True
            if queue.msg_limit.unlimited:
                return True
            want = min(MAX_RESERVE, 1 + len(queue.ready))
            slots, wait = await cluster.reserve(
                queue.msg_key, queue.msg_limit, time.time(), want, RESERVE_AHEAD
            )
            if slots:
                start = loop.time()
                self._reserved.extend(start + offset for offset in slots)
                continue
            if wait > queue.policy.connection_idle_timeout:
                self.wake_after(queue, wait)
                return False
            await asyncio.sleep(max(wait, 0.001))

    async def body(self, item: WorkItem) -> Body:
        return await self.load_body(item.message)

    # -- results -----------------------------------------------------------------------------
    def connected(self) -> None:
        queue = self.queue
        was_dead = queue.dead.is_dead(self.ctx.clock())
        queue.dead.on_success(self.ctx.clock())
        if was_dead and queue.ready:
            self.kick(queue)  # the probe got through: open the rest of the window

    def fail(self, item: WorkItem, outcome: Outcome) -> None:
        apply_failure(self.settle, self.queue, item, outcome, self.ctx.clock())

    def report(self, item: WorkItem, report: DeliveryReport) -> None:
        if report.failure is not None:
            self.fail(item, report.failure)
            return
        queue = self.queue
        host = report.remote_host
        outcomes: dict[int, Outcome] = {}
        seen: dict[str, list[Match]] = {}
        for r in report.replies:
            outcome = classify_reply(r.reply, scope=Scope.RECIPIENT, remote_mta=host)
            text = outcome.diagnostic  # str(r.reply): the reply formatted once, not twice
            matches = seen.get(text)
            if matches is None:
                matches = seen[text] = self.shaper.react(queue, r.reply, r.phase, host)
            outcomes[id(r.recipient)] = classify_with_patterns(outcome, matches)
        if report.connection_lost:
            queue.window.on_failure()
        else:
            before = queue.window.limit
            queue.window.on_success(busy=queue.active)
            if queue.window.limit > before and queue.ready:
                # New connections are otherwise only opened when mail arrives: without
                # this, a backlog is sent over the initial window however far it grew.
                self.kick(queue)
        self.settle(item, outcomes, queue, report)

    def local_error(self, item: WorkItem, exc: BaseException) -> None:
        outcome = local_outcome(451, "4.3.0", f"Local delivery error: {exc}", scope=Scope.MESSAGE)
        fail_item(self.settle, item, outcome, self.queue)


def _expire_idle(queue: DeliveryQueue, waiter: asyncio.Future[WorkItem | None]) -> None:
    if not waiter.done():
        queue.idle.remove(waiter)
        waiter.set_result(None)
