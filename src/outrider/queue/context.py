"""What every part of the scheduler shares: config, clock, loop, events, operator state."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from outrider.config.model import Config, DomainPolicy
from outrider.events.bus import EventBus
from outrider.queue.control_state import ControlState
from outrider.throttle.local import LocalThrottle

if TYPE_CHECKING:  # only imported with [cluster] redis: a single node loads no Redis code
    from outrider.cluster.throttle import RedisThrottle

log = logging.getLogger("outrider.queue")
QUEUE_KEYS = 2_000_000  # two rate keys per queue: far above any real number of queues


@dataclass(eq=False)
class Context:
    config: Config
    clock: Callable[[], float]
    loop: asyncio.AbstractEventLoop
    bus: EventBus
    control: ControlState
    # Per-queue message and connection rates. Local on purpose: a delivery queue lives
    # in one process, so its rates need no shared state (and no awaits on the hot path).
    throttle: LocalThrottle = field(default_factory=lambda: LocalThrottle(max_keys=QUEUE_KEYS))
    # Set with ``[cluster] redis``: connection leases and message and connection rates
    # shared by every node (the local throttle above is then unused for queues).
    cluster: RedisThrottle | None = None
    # Set with ``[cluster] redis``: told of every change to the cluster-wide operator
    # state (kind, name, on, value), which it publishes to the other nodes.
    share: Callable[[str, str, bool, float], None] | None = None
    stopping: bool = False
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def policy(self, domain: str, vmta: str) -> DomainPolicy:
        """The domain's policy as seen from ``vmta``; a virtual MTA removed by a reload
        falls back to the global tables."""
        known = vmta in self.config.virtual_mtas
        return self.config.policy_for(domain, vmta if known else None)

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = self.loop.create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s failed", task.get_name(), exc_info=task.exception())

    def shared(self, kind: str, name: str, on: bool, value: float = 0.0) -> None:
        """Tell the cluster (if any) that ``kind:name`` changed here."""
        if self.share is not None:
            self.share(kind, name, on, value)

    def save_control(self) -> None:
        try:
            self.control.save(self.config.server.state_dir)
        except OSError as exc:  # the state is still right in memory
            log.error("cannot save %s: %s", self.config.server.state_dir, exc)
