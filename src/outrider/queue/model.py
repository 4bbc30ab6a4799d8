"""The scheduler's in-memory data: messages, work items and delivery queues."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from outrider.config.model import DomainPolicy, VirtualMta
from outrider.message.envelope import Envelope, Recipient
from outrider.message.packed import job_id as packed_job_id
from outrider.message.packed import pack, unpack
from outrider.policy.backoff import BackoffState, DisabledSources, Mode, effective_limits
from outrider.policy.window import ConcurrencyWindow, DeadDestination
from outrider.throttle.rate import RateLimit

UNLIMITED = RateLimit(0.0)


@dataclass(eq=False, slots=True)
class QueuedMessage:
    """What the scheduler keeps per message; there may be millions, so slots and no
    per-message containers unless a message needs them.

    A message waiting for its retry time holds its envelope packed (:meth:`pack`, see
    :mod:`outrider.message.packed`): :attr:`envelope` unpacks it for good, for whoever
    acts on the message; :meth:`view` only reads it (console look-ups over the whole
    queue must not unpack a million messages and keep them so)."""

    _env: Envelope | bytes  # built as QueuedMessage(envelope, body)
    body: bytes | None  # kept for the first attempt of fresh mail; reloaded later
    inflight: int = 0  # work items handed out and not yet settled
    # When its retry timer fires (epoch seconds; 0.0: no timer). The timers live in
    # the scheduler's RetryTimers (queue/timers.py), not one loop timer each.
    due: float = 0.0
    announced: str = ""  # notice kinds handed to the notifier and not yet settled
    removing: bool = False  # final: its removal from the spool is under way
    # Recipient domain -> the name of the delivery queue it was last routed to, so the
    # console can count mail waiting for its retry in the queue it waits for. Only
    # routes other than "domain/vmta" are noted (most messages note none); one
    # (domain, queue) pair for a single such domain, a dict past that.
    routes: tuple[str, str] | dict[str, str] | None = None

    @property
    def envelope(self) -> Envelope:
        env = self._env
        if type(env) is bytes:
            env = self._env = unpack(env)
        return env  # type: ignore[return-value]

    def view(self) -> Envelope:
        """The envelope to read, never to change: a packed one is unpacked for the
        caller alone (changes to it would be lost) and stays packed."""
        env = self._env
        return unpack(env) if type(env) is bytes else env  # type: ignore[return-value]

    @property
    def job_id(self) -> str:
        env = self._env
        return packed_job_id(env) if type(env) is bytes else env.job_id  # type: ignore[union-attr]

    @property
    def packed(self) -> bool:
        return type(self._env) is bytes

    def pack(self) -> None:
        """Hold the envelope packed until someone needs it. Only for a message nobody
        else holds parts of (no work item, no notice under way): whoever kept one of
        its Recipient objects would change a copy that is no longer the message's."""
        env = self._env
        if type(env) is not bytes:
            self._env = pack(env)  # type: ignore[arg-type]

    def routed_to(self, domain: str) -> str | None:
        routes = self.routes
        if routes is None:
            return None
        if isinstance(routes, tuple):
            return routes[1] if routes[0] == domain else None
        return routes.get(domain)

    def note_route(self, domain: str, queue: str) -> None:
        routes = self.routes
        if routes is None or (isinstance(routes, tuple) and routes[0] == domain):
            self.routes = (domain, queue)
        elif isinstance(routes, tuple):
            self.routes = {routes[0]: routes[1], domain: queue}
        else:
            routes[domain] = queue

    def forget_route(self, domain: str) -> None:
        routes = self.routes
        if isinstance(routes, tuple):
            if routes[0] == domain:
                self.routes = None
        elif routes is not None:
            routes.pop(domain, None)


@dataclass(eq=False)
class WorkItem:
    """Recipients of one message for one domain, sent in one SMTP transaction."""

    message: QueuedMessage
    recipients: list[Recipient]
    domain: str
    vmta: str = ""  # the concrete virtual MTA chosen for this item


@dataclass(eq=False)
class DeliveryQueue:
    """One (destination, virtual MTA) pair: the unit of traffic shaping.

    The destination is the recipient domain, or with mx-rollup the set of MX hosts, so
    every domain hosted by one provider shares one queue and its limits.
    """

    key: str  # destination: a domain, or "mx:host1,host2" under mx-rollup
    vmta: str
    domain: str  # the domain whose policy governs the queue (the first one routed here)
    policy: DomainPolicy
    window: ConcurrencyWindow
    dead: DeadDestination
    # Rate limits in force (they change with backoff mode and reloads); the rate state
    # lives in the scheduler's throttle under ``msg_key`` and ``connect_key``.
    msg_limit: RateLimit = UNLIMITED
    connect_limit: RateLimit = UNLIMITED
    backoff: BackoffState = field(default_factory=BackoffState)
    ready: deque[WorkItem] = field(default_factory=deque)
    idle: deque[asyncio.Future[WorkItem | None]] = field(default_factory=deque)
    active: int = 0
    wake: asyncio.TimerHandle | None = None  # a pending retry of "may we connect now?"
    backoff_timer: asyncio.TimerHandle | None = None
    delivered: int = 0
    failed: int = 0
    deferred: int = 0
    last_error: str = ""  # the last failure reply (deferral or bounce) seen on the queue
    # "key/vmta", made once: every message routed here keeps a reference to it.
    name: str = field(init=False, default="")

    def __post_init__(self) -> None:
        self.name = f"{self.key}/{self.vmta}"

    @property
    def msg_key(self) -> str:
        return f"msg {self.key}/{self.vmta}"

    @property
    def lease_key(self) -> str:
        """The shared ``max-smtp-out`` of a cluster: leases of this queue on every node."""
        return f"conn {self.key}/{self.vmta}"

    @property
    def connect_key(self) -> str:
        return f"connect {self.key}/{self.vmta}"

    def address_lease_key(self, virtual_mtas: Mapping[str, VirtualMta]) -> str | None:
        """The shared ``max-smtp-out`` per source address of a cluster: leases of every
        virtual MTA (whatever its name, on every node) that sends from this queue's
        source IP to this destination. None when the virtual MTA has no source IP."""
        settings = virtual_mtas.get(self.vmta)
        if settings is None or not settings.source_ip:
            return None
        return f"addr {self.key}/{settings.source_ip}"

    @property
    def mode(self) -> Mode:
        return self.backoff.mode

    def apply_limits(self) -> None:
        """Put the rate and connection limits of the current mode in force."""
        limits = effective_limits(self.policy, self.backoff.mode)
        self.msg_limit = RateLimit.of(limits.max_msg_rate)
        self.connect_limit = RateLimit.of(self.policy.max_connect_rate)
        self.window.set_maximum(limits.max_smtp_out)

    @property
    def retry_after(self) -> tuple[float, ...]:
        return tuple(effective_limits(self.policy, self.backoff.mode).retry_after)


@dataclass(eq=False)
class Destination:
    """Per-destination state shared by its queues of every virtual MTA."""

    key: str
    disabled: DisabledSources = field(default_factory=DisabledSources)
