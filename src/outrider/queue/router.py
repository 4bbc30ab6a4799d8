"""Routing work items to delivery queues: destination, virtual MTA, chunking.

A queue is a (destination, virtual MTA) pair. The transport names the destination
(SMTP's mx-rollup makes every domain of one provider share one); a pool of virtual
MTAs becomes one member per item (weighted round robin, skipping source IPs disabled
for that destination).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from outrider.delivery.transport import Transport, TransportSelector
from outrider.message.envelope import Recipient
from outrider.policy.outcome import Outcome, local_outcome
from outrider.policy.vmta_select import PoolCursor
from outrider.policy.window import ConcurrencyWindow, DeadDestination
from outrider.queue.context import Context
from outrider.queue.model import DeliveryQueue, Destination, WorkItem

DEAD_FOR_MAX = 300.0  # a dead destination is probed again after at most this long
NO_SOURCE = local_outcome(451, "4.4.5", "Every source IP is disabled for this destination")

# settle(item, outcome, queue): every recipient of the item gets the outcome.
FailItem = Callable[[WorkItem, Outcome, "DeliveryQueue | None"], None]


def chunks(items: list[Recipient], size: int) -> Iterable[list[Recipient]]:
    size = max(1, size)
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Router:
    def __init__(
        self,
        ctx: Context,
        select_transport: TransportSelector,
        enqueue: Callable[[DeliveryQueue, WorkItem], None],
        fail: FailItem,
        on_new_queue: Callable[[DeliveryQueue], None],
        on_new_destination: Callable[[Destination], None],
    ) -> None:
        self.ctx = ctx
        self.select_transport = select_transport
        self.enqueue = enqueue
        self.fail = fail
        self.on_new_queue = on_new_queue
        self.on_new_destination = on_new_destination
        self.queues: dict[tuple[str, str], DeliveryQueue] = {}
        self.destinations: dict[str, Destination] = {}
        self.cursors: dict[str, PoolCursor] = {}
        self.transports: dict[tuple[str, str], Transport] = {}  # queue -> its transport

    def route(self, item: WorkItem) -> None:
        """Find the item's queue; no task unless the transport must look something up."""
        policy = self.ctx.config.policy_for(item.domain)
        transport = self.select_transport(item.domain, policy)
        found = transport.destination(item.domain, policy)
        if isinstance(found, str):
            self.to_queue(item, found, transport)
        elif isinstance(found, Outcome):
            self.fail(item, found, None)
        else:
            self.ctx.spawn(self._route_later(item, found, transport), f"route-{item.domain}")

    async def _route_later(
        self, item: WorkItem, pending: Awaitable[str | Outcome], transport: Transport
    ) -> None:
        found = await pending
        if isinstance(found, Outcome):
            self.fail(item, found, None)
        else:
            self.to_queue(item, found, transport)

    def to_queue(self, item: WorkItem, key: str, transport: Transport | None = None) -> None:
        vmta = self._concrete_vmta(item.message.envelope.vmta, key)
        if vmta is None:
            self.fail(item, NO_SOURCE, None)
            return
        item.vmta = vmta
        queue = self.queue(key, vmta, item.domain)
        msg = item.message
        if key == item.domain and vmta == (msg.envelope.vmta or "default"):
            msg.forget_route(item.domain)  # the queue the console assumes (inventory.queue_of)
        else:
            msg.note_route(item.domain, queue.name)
        if transport is not None:
            self.transports.setdefault((key, vmta), transport)
        size = queue.policy.max_rcpt_per_transaction
        if len(item.recipients) <= size:
            self.enqueue(queue, item)
            return
        parts = list(chunks(item.recipients, size))
        item.message.inflight += len(parts) - 1
        for part in parts:
            self.enqueue(queue, WorkItem(item.message, part, item.domain, vmta))

    def transport_of(self, queue: DeliveryQueue) -> Transport:
        transport = self.transports.get((queue.key, queue.vmta))
        if transport is None:
            transport = self.select_transport(queue.domain, queue.policy)
            self.transports[(queue.key, queue.vmta)] = transport
        return transport

    def _concrete_vmta(self, name: str, key: str) -> str | None:
        dest = self.destination(key)
        now = self.ctx.clock()
        pool = self.ctx.config.vmta_pools.get(name)
        if pool is None:
            off = dest.disabled.is_disabled(name, now) or self.operator_disabled(name)
            return None if off else name
        cursor = self.cursors.get(name)
        if cursor is None:
            cursor = self.cursors[name] = PoolCursor(pool.members, pool.weights)
        exclude = {*dest.disabled.disabled(now), *filter(self.operator_disabled, pool.members)}
        return cursor.next(exclude=exclude)

    def operator_disabled(self, vmta: str) -> bool:
        """The virtual MTA's source IP was disabled by the operator (for every destination)."""
        ips = self.ctx.control.disabled_ips
        if not ips:
            return False
        settings = self.ctx.config.virtual_mtas.get(vmta)
        return settings is not None and settings.source_ip in ips

    def destination(self, key: str) -> Destination:
        dest = self.destinations.get(key)
        if dest is None:
            dest = self.destinations[key] = Destination(key)
            self.on_new_destination(dest)
        return dest

    def queue(self, key: str, vmta: str, domain: str) -> DeliveryQueue:
        queue = self.queues.get((key, vmta))
        if queue is None:
            policy = self.ctx.policy(domain, vmta)
            retry = policy.retry_after[0] if policy.retry_after else DEAD_FOR_MAX
            queue = DeliveryQueue(
                key=key,
                vmta=vmta,
                domain=domain,
                policy=policy,
                window=ConcurrencyWindow(maximum=max(1, policy.max_smtp_out)),
                dead=DeadDestination(dead_for=min(DEAD_FOR_MAX, retry)),
            )
            self.queues[(key, vmta)] = queue
            self.on_new_queue(queue)
            queue.apply_limits()
        return queue

    def update_config(self) -> None:
        self.cursors.clear()
        self.transports.clear()
        for queue in self.queues.values():
            queue.policy = self.ctx.policy(queue.domain, queue.vmta)
            queue.apply_limits()
