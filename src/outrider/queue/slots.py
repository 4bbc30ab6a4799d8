"""Connection slots: when a queue may open another connection, and the global limit.

A queue opens a connection when it has ready work and its window, dead-destination
state, message rate and connection rate allow; a server-wide max-delivery-concurrency
is shared by priority (queue-priority, then first come). A connection is a worker
running against a :class:`~outrider.queue.lease.Lease`; this module starts them and
gives their slot to the next waiting queue when they end.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from outrider.queue.context import Context
from outrider.queue.holds import Holds
from outrider.queue.model import DeliveryQueue, WorkItem

if TYPE_CHECKING:
    from outrider.cluster.throttle import RedisThrottle

# Starts one connection's worker for the queue; returns when the connection ended.
StartWorker = Callable[[DeliveryQueue], Coroutine[Any, Any, None]]

# A queue refused a shared connection lease asks again this often (seconds): leases
# are given back when connections end, which no node is told about.
LEASE_POLL = 0.2


class Slots:
    def __init__(
        self,
        ctx: Context,
        holds: Holds,
        start_worker: StartWorker,
        fail_dead: Callable[[DeliveryQueue, WorkItem], None],
    ) -> None:
        self.ctx = ctx
        self.holds = holds
        self.start_worker = start_worker
        self.fail_dead = fail_dead
        self.total_active = 0
        # Queues waiting for a global connection slot: highest queue-priority first, then
        # first come (a heap of (-priority, sequence, queue)).
        self.waiting: list[tuple[int, int, DeliveryQueue]] = []
        self._waiting_ids: set[tuple[str, str]] = set()
        self._sequence = 0

    def enqueue(self, queue: DeliveryQueue, item: WorkItem) -> None:
        """A new item for ``queue``: to an idle connection, else ready (maybe connect)."""
        if self.holds.park(item):
            return
        if not self.holds.queue_paused(queue):
            while queue.idle:
                waiter = queue.idle.popleft()
                if not waiter.done():
                    waiter.set_result(item)
                    return
        queue.ready.append(item)
        self.maybe_connect(queue)

    def maybe_connect(self, queue: DeliveryQueue) -> None:
        """Open another connection if the queue has work and its limits allow one."""
        if not queue.ready or self.ctx.stopping or self.holds.queue_paused(queue):
            return
        # Only called when no connection of this queue is idle, so every active one is
        # busy: a ready item justifies another connection, up to the window.
        if queue.active >= queue.window.limit:
            return
        now = self.ctx.clock()
        if queue.dead.is_dead(now) and not queue.dead.allow_probe(now):
            # Dead, or a probe is out. While the probe's connection runs, mail waits for
            # its verdict (a failure defers it all; a success carries on); deferring it
            # now would also take the probe's own item before its connection ran.
            if queue.active == 0:
                self._defer_dead(queue)
            return
        if self.total_active >= self.ctx.config.server.max_delivery_concurrency:
            self._wait_for_slot(queue)
            return
        cluster = self.ctx.cluster
        if cluster is not None:  # the lease and the connect rate are asked of Redis
            queue.active += 1
            self.total_active += 1
            self.ctx.spawn(self._shared_connection(queue, cluster), f"deliver-{queue.name}")
            return
        loop_now = self.ctx.loop.time()
        throttle = self.ctx.throttle
        # A connection opened now would only sit idle waiting for the message rate.
        pace = throttle.peek_rate_now(queue.msg_key, queue.msg_limit, loop_now)
        if pace > queue.policy.connection_idle_timeout:
            self.wake_after(queue, pace)
            return
        wait = throttle.rate_now(queue.connect_key, queue.connect_limit, loop_now)
        if wait > 0:
            self.wake_after(queue, wait)
            return
        queue.active += 1
        self.total_active += 1
        self.ctx.spawn(self._connection(queue), f"deliver-{queue.name}")

    async def _shared_connection(self, queue: DeliveryQueue, cluster: RedisThrottle) -> None:
        """A connection under the cluster's limits: lease one of the queue's
        ``max-smtp-out`` and one of its source address's (the same limit, shared by every
        virtual MTA sending from that address to the destination), with one connect-rate
        admission, all in one round trip; refused, ask again later. The leases are given
        back when the connection ends."""
        address = queue.address_lease_key(self.ctx.config.virtual_mtas)
        code, wait = await cluster.lease(
            queue.lease_key,
            queue.window.maximum,
            queue.connect_key,
            queue.connect_limit,
            time.time(),
            also=address,
        )
        if code != 0:
            queue.active -= 1
            self.total_active -= 1
            self.wake_after(queue, wait if code == 2 and wait > 0 else LEASE_POLL)
            self._hand_on()
            return
        try:
            await self.start_worker(queue)
        finally:
            queue.active -= 1
            self.total_active -= 1
            await cluster.release(queue.lease_key, also=address)
            self._release(queue)

    async def _connection(self, queue: DeliveryQueue) -> None:
        try:
            await self.start_worker(queue)
        finally:
            queue.active -= 1
            self.total_active -= 1
            self._release(queue)

    def _defer_dead(self, queue: DeliveryQueue) -> None:
        items = list(queue.ready)
        queue.ready.clear()
        for item in items:
            self.fail_dead(queue, item)

    def _wait_for_slot(self, queue: DeliveryQueue) -> None:
        ident = (queue.key, queue.vmta)
        if ident not in self._waiting_ids:
            self._waiting_ids.add(ident)
            self._sequence += 1
            entry = (-queue.policy.queue_priority, self._sequence, queue)
            heapq.heappush(self.waiting, entry)

    def _release(self, queue: DeliveryQueue) -> None:
        """A connection of ``queue`` ended: its slot goes to the highest-priority waiting
        queue, the releasing queue competing as one of them (last among equals)."""
        if queue.ready and self.waiting:
            self._wait_for_slot(queue)
        self._hand_on()
        self.maybe_connect(queue)

    def _hand_on(self) -> None:
        """Free global slots go to the waiting queues, highest priority first."""
        limit = self.ctx.config.server.max_delivery_concurrency
        while self.waiting and self.total_active < limit:
            _, _, waiting = heapq.heappop(self.waiting)
            self._waiting_ids.discard((waiting.key, waiting.vmta))
            self.maybe_connect(waiting)

    def wake_after(self, queue: DeliveryQueue, delay: float) -> None:
        if queue.wake is None and not self.ctx.stopping:
            queue.wake = self.ctx.loop.call_later(delay, self._wake, queue)

    def _wake(self, queue: DeliveryQueue) -> None:
        queue.wake = None
        self.maybe_connect(queue)
