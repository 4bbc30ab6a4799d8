"""The queue manager: the only owner of the delivery schedule.

It holds every pending message's envelope, groups due recipients by domain into work
items, routes each item to a delivery queue — (destination, virtual MTA), where the
destination is the domain or, with mx-rollup, its set of MX hosts — and runs each
queue within its limits: an adaptive connection window capped by max-smtp-out, a
connection rate and a message rate (GCRA), backoff mode driven by the remote replies
(smtp-pattern-list), dead-destination detection and operator pauses. It applies the
outcomes (delivered, retry later, bounce), persists recipient state to the spool, writes
the accounting log and sends one DSN per message once every recipient is final.

Connections never touch the schedule: they take work items from their queue's ready
deque and hand results back to ``_settle``. Every operation on a message is O(1) or
O(log n) (timers live in the event loop's heap), so a queue with 100,000 messages does
not slow another queue down.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, cast

from outrider.accounting.records import AccountingRecord, RecordType
from outrider.accounting.writer import AccountingLog
from outrider.config.model import Config, DomainPolicy
from outrider.delivery.dns import DnsError, DnsErrorKind, MxResolver
from outrider.delivery.mta_sts import MtaStsResolver
from outrider.delivery.smtp_client import (
    SmtpConnectError,
    SmtpSession,
    SmtpTimeouts,
    TransactionResult,
)
from outrider.delivery.targets import Target, resolve_targets
from outrider.delivery.tls_policy import (
    TlsRequirement,
    TlsVerify,
    mx_refused_reply,
    tls_requirement,
)
from outrider.dsn.builder import FailedRecipient, build_dsn, should_bounce, wants_dsn
from outrider.message.envelope import Envelope, RcptStatus, Recipient
from outrider.policy.backoff import Mode, Transition
from outrider.policy.outcome import (
    Outcome,
    Scope,
    Verdict,
    classify_reply,
    local_outcome,
    status_from_text,
)
from outrider.policy.patterns import Action, Match, classify_with_patterns, match_reply
from outrider.policy.rate import Gcra
from outrider.policy.retry import decide_retry
from outrider.policy.vmta_select import PoolCursor, select_vmta
from outrider.policy.window import ConcurrencyWindow, DeadDestination
from outrider.queue.control_state import ControlState
from outrider.queue.model import DeliveryQueue, Destination, QueuedMessage, WorkItem
from outrider.smtp.replies import Reply
from outrider.spool.base import Spool

log = logging.getLogger("outrider.queue")

# Bodies of fresh mail kept in memory for the first attempt, in total; past this,
# new mail is read back from the spool when it is delivered.
BODY_CACHE_BYTES = 256 * 1024 * 1024
DEFAULT_VMTA = "default"
DEAD_FOR_MAX = 300.0
# Envelope.extra key marking that the sender was told of a delay. It lives in memory:
# after a restart a long-delayed message may warn its sender once more.
DELAY_WARNED = "delay-warned"  # a dead destination is probed again after at most this long


def timeouts_for(policy: DomainPolicy) -> SmtpTimeouts:
    return SmtpTimeouts(
        connect=policy.connect_timeout,
        greeting=policy.smtp_greeting_timeout,
        ehlo=policy.smtp_command_timeout,
        mail=policy.smtp_command_timeout,
        rcpt=policy.smtp_command_timeout,
        data_init=policy.smtp_data_init_timeout,
        data_block=policy.smtp_data_block_timeout,
        data_done=policy.smtp_data_termination_timeout,
        rset=policy.smtp_command_timeout,
    )


def dns_outcome(exc: DnsError) -> Outcome:
    if exc.kind is DnsErrorKind.NULL_MX:
        return local_outcome(556, "5.1.10", f"Domain {exc.domain} does not accept mail (null MX)")
    if exc.kind is DnsErrorKind.NXDOMAIN:
        return local_outcome(550, "5.1.2", f"Domain {exc.domain} does not exist")
    if exc.kind is DnsErrorKind.NO_ADDRESSES:
        return local_outcome(550, "5.4.4", f"Domain {exc.domain} has no mail server address")
    return local_outcome(451, "4.4.3", f"DNS lookup for {exc.domain} failed: {exc.detail}")


def chunks(items: list[Recipient], size: int) -> Iterable[list[Recipient]]:
    size = max(1, size)
    for start in range(0, len(items), size):
        yield items[start : start + size]


_VERIFY_RANK = {"none": 0, "ca": 1, "ca+hostname": 2}


def tls_satisfied(session: SmtpSession, have: TlsRequirement, need: TlsRequirement) -> bool:
    """Whether a session opened under ``have`` may carry mail that needs ``need``."""
    if not need.permits_mx(session.remote_host):
        return False
    if need.mode != "required":
        return True
    if session.tls_version is None:
        return False
    if need.verify == "none":
        return True
    return (
        session.tls_verified
        and _VERIFY_RANK[have.verify] >= _VERIFY_RANK[need.verify]
        and have.ca_file == need.ca_file
    )


def tls_profile(policy: DomainPolicy) -> str:
    """Rollup key suffix that keeps domains with different TLS settings apart ("" for the
    default opportunistic, unverified TLS, so most rolled-up queues keep their name)."""
    if policy.use_starttls and not policy.require_starttls and policy.tls_verify == "none":
        return ""
    mode = "required" if policy.require_starttls else "may" if policy.use_starttls else "none"
    return f"#tls={mode},{policy.tls_verify},{policy.tls_ca_file or ''}"


def rollup_key(hosts: Iterable[str]) -> str:
    return "mx:" + ",".join(sorted(set(hosts)))


class QueueManager:
    def __init__(
        self,
        *,
        config: Config,
        spool: Spool,
        resolver: MxResolver,
        accounting: AccountingLog,
        new_queue_id: Callable[[], str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.spool = spool
        self.resolver = resolver
        self.accounting = accounting
        self.new_queue_id = new_queue_id
        self.clock = clock
        self.messages: dict[str, QueuedMessage] = {}
        self.queues: dict[tuple[str, str], DeliveryQueue] = {}
        self.destinations: dict[str, Destination] = {}
        self.cursors: dict[str, PoolCursor] = {}
        # Queues waiting for a global connection slot: highest queue-priority first, then
        # first come (a heap of (-priority, sequence, queue)).
        self.waiting_for_slot: list[tuple[int, int, DeliveryQueue]] = []
        self._waiting: set[tuple[str, str]] = set()
        self._sequence = 0
        self.parked: defaultdict[str, list[WorkItem]] = defaultdict(list)  # paused jobs
        self.parked_domains: defaultdict[str, list[WorkItem]] = defaultdict(list)
        self.control = ControlState.load(config.server.state_dir)
        self.mta_sts = self._mta_sts_resolver(config)
        self._vmta_names = frozenset(config.virtual_mtas) | frozenset(config.vmta_pools)
        self.total_active = 0
        self.cached_bytes = 0  # bodies held by QueuedMessage.body
        self.stopping = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.get_running_loop()

    # -- intake ------------------------------------------------------------------------------
    def submit(self, envelope: Envelope, body: bytes | None) -> None:
        """A freshly stored message: first attempt now (Exim's immediate delivery)."""
        if body is not None and self.cached_bytes + len(body) > BODY_CACHE_BYTES:
            body = None
        self._choose_vmta(envelope)
        msg = QueuedMessage(envelope, body)
        if body is not None:
            self.cached_bytes += len(body)
        self.messages[envelope.queue_id] = msg
        self._dispatch(msg)

    def restore(self, envelope: Envelope) -> None:
        """A message found by spool recovery: resume its schedule."""
        self._choose_vmta(envelope)
        msg = QueuedMessage(envelope, None)
        self.messages[envelope.queue_id] = msg
        if envelope.is_done:
            self._spawn(self._finalize(msg), f"finalize-{envelope.queue_id}")
        else:
            self._dispatch(msg)

    def _choose_vmta(self, env: Envelope) -> None:
        """Virtual MTA (or pool) for the message: header, listener, sender domain, server."""
        known = self._vmta_names
        if env.vmta in known:
            return
        sender_domain = env.sender.rpartition("@")[2].lower()
        sender_settings = self.config.sender_domains.get(sender_domain)
        header = env.extra.get("x-virtual-mta")
        if header is not None and header.strip() not in known:
            log.warning("%s: unknown X-Virtual-MTA %r ignored", env.queue_id, header)
            header = None
        env.vmta = select_vmta(
            header_value=header,
            listener_allows_header=header is not None,
            listener_default=env.extra.get("listener-vmta"),
            sender_domain_default=sender_settings.virtual_mta if sender_settings else None,
            server_default=self.config.server.default_virtual_mta,
        ).strip()
        if env.vmta not in known:
            env.vmta = DEFAULT_VMTA

    @staticmethod
    def _mta_sts_resolver(config: Config) -> MtaStsResolver | None:
        settings = config.mta_sts
        if not settings.enabled:
            return None
        return MtaStsResolver(
            nameservers=config.dns.nameservers or None,
            https_port=settings.https_port,
            ca_file=settings.ca_file,
            fetch_timeout=settings.fetch_timeout,
            cache_dir=settings.cache_dir,
            dns_timeout=config.dns.timeout,
        )

    def _policy(self, domain: str, vmta: str) -> DomainPolicy:
        """The domain's policy as seen from ``vmta``; a virtual MTA removed by a reload
        falls back to the global tables."""
        known = vmta in self.config.virtual_mtas
        return self.config.policy_for(domain, vmta if known else None)

    def update_config(self, config: Config) -> None:
        if config.mta_sts != self.config.mta_sts or config.dns != self.config.dns:
            self.mta_sts = self._mta_sts_resolver(config)
        self.config = config
        self._vmta_names = frozenset(config.virtual_mtas) | frozenset(config.vmta_pools)
        self.cursors.clear()
        for queue in self.queues.values():
            queue.policy = self._policy(queue.domain, queue.vmta)
            queue.connect_rate.set_rate(queue.policy.max_connect_rate)
            queue.apply_limits()
            self._maybe_connect(queue)

    # -- scheduling --------------------------------------------------------------------------
    def _dispatch(self, msg: QueuedMessage) -> None:
        """Hand every due recipient to its queue; arm a timer for the rest."""
        if self.stopping:
            return
        msg.timer = None
        env = msg.envelope
        if env.job_id and env.job_id in self.control.paused_jobs:
            self.parked[env.job_id].append(WorkItem(msg, [], ""))
            return
        now = self.clock()
        due: dict[str, list[Recipient]] = {}
        earliest = 0.0
        for rcpt in env.recipients:
            if rcpt.status is not RcptStatus.PENDING:
                continue
            if rcpt.next_attempt <= now:
                due.setdefault(rcpt.domain, []).append(rcpt)
            elif earliest == 0.0 or rcpt.next_attempt < earliest:
                earliest = rcpt.next_attempt
        for domain, rcpts in due.items():
            msg.inflight += 1
            self._route(WorkItem(msg, rcpts, domain))
        if not due and earliest:
            self._arm(msg, earliest)

    def _arm(self, msg: QueuedMessage, when: float) -> None:
        if msg.timer is not None:
            msg.timer.cancel()
        delay = max(0.0, when - self.clock())
        msg.timer = self._loop.call_later(delay, self._dispatch, msg)

    def _route(self, item: WorkItem) -> None:
        """Find the item's queue: by domain, or by MX host set when rolled up."""
        policy = self.config.policy_for(item.domain)
        if policy.route is not None or not policy.mx_rollup:
            self._to_queue(item, item.domain)
            return
        self._spawn(self._route_by_mx(item), f"route-{item.domain}")

    async def _route_by_mx(self, item: WorkItem) -> None:
        try:
            hosts = await self.resolver.resolve_mx(item.domain)
        except DnsError as exc:
            self._settle(item, {id(r): dns_outcome(exc) for r in item.recipients})
            return
        if (hosts and hosts[0].implicit) or await self._has_sts_policy(item.domain):
            self._to_queue(item, item.domain)
        else:
            policy = self.config.policy_for(item.domain)
            self._to_queue(item, rollup_key(h.name for h in hosts) + tls_profile(policy))

    async def _has_sts_policy(self, domain: str) -> bool:
        """MTA-STS binds one recipient domain: such a domain never shares a rolled-up queue
        (its connections, failures and dead-destination state) with other domains."""
        policy = self.config.policy_for(domain)
        if self.mta_sts is None or not policy.mta_sts:
            return False
        try:
            sts = await self.mta_sts.policy_for(domain)
        except Exception:  # _tls_requirement logs it again at delivery
            return False
        return sts is not None and sts.mode in ("enforce", "testing")

    def _to_queue(self, item: WorkItem, key: str) -> None:
        vmta = self._concrete_vmta(item.message.envelope.vmta, key)
        if vmta is None:
            outcome = local_outcome(
                451, "4.4.5", "Every source IP is disabled for this destination"
            )
            self._settle(item, {id(r): outcome for r in item.recipients})
            return
        item.vmta = vmta
        queue = self._queue(key, vmta, item.domain)
        size = queue.policy.max_rcpt_per_transaction
        parts = list(chunks(item.recipients, size)) if len(item.recipients) > size else []
        if parts:
            item.message.inflight += len(parts) - 1
            for part in parts:
                self._enqueue(queue, WorkItem(item.message, part, item.domain, vmta))
        else:
            self._enqueue(queue, item)

    def _concrete_vmta(self, name: str, key: str) -> str | None:
        """A pool becomes one of its members (weighted round robin), skipping source IPs
        disabled for this destination; None when none is usable."""
        dest = self._destination(key)
        now = self.clock()
        pool = self.config.vmta_pools.get(name)
        if pool is None:
            return None if dest.disabled.is_disabled(name, now) else name
        cursor = self.cursors.get(name)
        if cursor is None:
            cursor = self.cursors[name] = PoolCursor(pool.members, pool.weights)
        return cursor.next(exclude=dest.disabled.disabled(now).keys())

    def _destination(self, key: str) -> Destination:
        dest = self.destinations.get(key)
        if dest is None:
            dest = self.destinations[key] = Destination(key)
            now = self.clock()
            for vmta, until in self.control.disabled.get(key, {}).items():
                if until > now:
                    dest.disabled.disable(vmta, now, until=until, rule=None, reply=None)
                    self._loop.call_later(until - now + 0.01, self._reenable_source, key, vmta)
        return dest

    def _queue(self, key: str, vmta: str, domain: str) -> DeliveryQueue:
        queue = self.queues.get((key, vmta))
        if queue is None:
            policy = self._policy(domain, vmta)
            retry = policy.retry_after[0] if policy.retry_after else DEAD_FOR_MAX
            queue = DeliveryQueue(
                key=key,
                vmta=vmta,
                domain=domain,
                policy=policy,
                window=ConcurrencyWindow(maximum=max(1, policy.max_smtp_out)),
                dead=DeadDestination(dead_for=min(DEAD_FOR_MAX, retry)),
                msg_rate=Gcra(policy.max_msg_rate),
                connect_rate=Gcra(policy.max_connect_rate),
            )
            self.queues[(key, vmta)] = queue
            self._restore_backoff(queue)
            queue.apply_limits()
        return queue

    def _restore_backoff(self, queue: DeliveryQueue) -> None:
        """A queue that was in backoff before a restart starts in backoff again."""
        since = self.control.backoff.get(queue.name)
        if since is None:
            return
        after = queue.policy.backoff_to_normal_after
        if after is not None and since + after <= self.clock():
            del self.control.backoff[queue.name]
            return
        queue.backoff.enter(since, rule=None, reply=None, reason="restored")
        log.info("%s: backoff mode restored (entered at %.0f)", queue.name, since)
        self._arm_backoff(queue)

    def _enqueue(self, queue: DeliveryQueue, item: WorkItem) -> None:
        if self._park(item):
            return
        if not self._paused(queue):
            while queue.idle:
                waiter = queue.idle.popleft()
                if not waiter.done():
                    waiter.set_result(item)
                    return
        queue.ready.append(item)
        self._maybe_connect(queue)

    def _paused(self, queue: DeliveryQueue) -> bool:
        """The queue as a whole is paused (by its name or destination)."""
        paused = self.control.paused_queues
        return bool(paused) and (queue.name in paused or queue.key in paused)

    def _park(self, item: WorkItem) -> bool:
        """Hold an item of a paused job or a paused recipient domain; True if held.

        A domain pause is per item because under mx-rollup one queue carries several
        domains, and pausing one of them must not stop the others."""
        job = item.message.envelope.job_id
        if job and job in self.control.paused_jobs:
            self.parked[job].append(item)
            return True
        if item.domain in self.control.paused_queues:
            self.parked_domains[item.domain].append(item)
            return True
        return False

    def _maybe_connect(self, queue: DeliveryQueue) -> None:
        """Open another connection if the queue has work and its limits allow one."""
        if not queue.ready or self.stopping or self._paused(queue):
            return
        # Only called when no connection of this queue is idle, so every active one is
        # busy: a ready item justifies another connection, up to the window.
        if queue.active >= queue.window.limit:
            return
        now = self.clock()
        if queue.dead.is_dead(now) and not queue.dead.allow_probe(now):
            self._defer_dead(queue)
            return
        if self.total_active >= self.config.server.max_delivery_concurrency:
            self._wait_for_slot(queue)
            return
        loop_now = self._loop.time()
        # A connection opened now would only sit idle waiting for the message rate.
        pace = queue.msg_rate.peek(loop_now)
        if pace > queue.policy.connection_idle_timeout:
            self._wake_after(queue, pace)
            return
        wait = queue.connect_rate.try_acquire(loop_now)
        if wait > 0:
            self._wake_after(queue, wait)
            return
        queue.active += 1
        self.total_active += 1
        self._spawn(self._connection(queue), f"deliver-{queue.name}")

    def _wait_for_slot(self, queue: DeliveryQueue) -> None:
        """Queue up for a global connection slot: highest queue-priority first, then FIFO."""
        ident = (queue.key, queue.vmta)
        if ident not in self._waiting:
            self._waiting.add(ident)
            self._sequence += 1
            entry = (-queue.policy.queue_priority, self._sequence, queue)
            heapq.heappush(self.waiting_for_slot, entry)

    def _release_slot(self, queue: DeliveryQueue) -> None:
        """A connection of ``queue`` ended: its slot goes to the highest-priority waiting
        queue, the releasing queue competing as one of them (last among equals)."""
        if queue.ready and self.waiting_for_slot:
            self._wait_for_slot(queue)
        while self.waiting_for_slot and self.total_active < (
            self.config.server.max_delivery_concurrency
        ):
            _, _, waiting = heapq.heappop(self.waiting_for_slot)
            self._waiting.discard((waiting.key, waiting.vmta))
            self._maybe_connect(waiting)
        self._maybe_connect(queue)

    def _wake_after(self, queue: DeliveryQueue, delay: float) -> None:
        if queue.wake is None:
            queue.wake = self._loop.call_later(delay, self._wake, queue)

    def _wake(self, queue: DeliveryQueue) -> None:
        queue.wake = None
        self._maybe_connect(queue)

    def _defer_dead(self, queue: DeliveryQueue) -> None:
        outcome = local_outcome(451, "4.4.1", f"Destination {queue.key} is not responding")
        items = list(queue.ready)
        queue.ready.clear()
        for item in items:
            self._settle(item, {id(r): outcome for r in item.recipients}, queue=queue)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = self._loop.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s failed", task.get_name(), exc_info=task.exception())

    # -- one outbound connection -------------------------------------------------------------
    async def _connection(self, queue: DeliveryQueue) -> None:
        try:
            await self._run_connection(queue)
        finally:
            queue.active -= 1
            self.total_active -= 1
            self._release_slot(queue)

    def _take(self, queue: DeliveryQueue) -> WorkItem | None:
        """The next ready item, parking those of paused jobs and domains."""
        while queue.ready and not self._paused(queue):
            item = queue.ready.popleft()
            if not self._park(item):
                return item
        return None

    async def _run_connection(self, queue: DeliveryQueue) -> None:
        item = self._take(queue)
        if item is None:
            return
        policy = queue.policy
        try:
            targets = await resolve_targets(
                item.domain, policy.route, self.resolver, mx_port=policy.smtp_port
            )
        except DnsError as exc:
            self._fail_queue(queue, item, dns_outcome(exc), site=False)
            return
        if policy.bounce_upon_no_mx and targets and targets[0].implicit:
            outcome = local_outcome(550, "5.4.4", f"Domain {item.domain} has no MX record")
            self._fail_queue(queue, item, outcome, site=False)
            return
        tls = await self._tls_requirement(queue, item.domain)
        remaining = list(targets)
        session, failure = await self._open_session(queue, remaining, tls)
        if session is None:
            self._fail_queue(queue, item, failure, site=True)
            return
        queue.dead.on_success(self.clock())
        tls_checked = {item.domain}
        sent = 0
        try:
            while item is not None:
                if not await self._pace(queue):
                    # The next message is too far off to hold the connection open for.
                    queue.ready.appendleft(item)
                    item = None
                    break
                body = await self._body(item.message)
                result = await session.send(item.message.envelope, item.recipients, body)
                if (
                    policy.smtp_421_means_mx_unavailable
                    and result.connection_lost
                    and any(r.reply.code == 421 for r in result.results)
                    and remaining
                ):
                    # The MX said it is unavailable: the same item goes to the next MX.
                    log.info("%s: 421 from %s; trying the next MX", queue.name, session.remote_host)
                    await session.close()
                    session, failure = await self._open_session(queue, remaining, tls)
                    if session is None:
                        self._fail_queue(queue, item, failure, site=True)
                        return
                    continue
                current, item = item, None  # settled from here on
                self._apply_result(queue, current, result, session)
                sent += 1
                if not session.usable or self.stopping:
                    break
                if policy.max_msg_per_connection and sent >= policy.max_msg_per_connection:
                    break
                item = await self._next_item(queue, policy.connection_idle_timeout)
                if item is not None and item.domain not in tls_checked:
                    # A rolled-up queue mixes domains: this session was set up for another
                    # domain's TLS policy and may not meet this one's (MTA-STS, required TLS).
                    need = await self._tls_requirement(queue, item.domain)
                    if not tls_satisfied(session, tls, need):
                        queue.ready.appendleft(item)  # a fresh connection starts with it
                        item = None
                        break
                    tls_checked.add(item.domain)
        except Exception as exc:
            if item is not None:
                log.exception("delivery on %s failed", queue.name)
                outcome = local_outcome(451, "4.3.0", f"Local delivery error: {exc}")
                self._settle(item, {id(r): outcome for r in item.recipients}, queue=queue)
            raise
        finally:
            if session is not None:
                await session.close()

    async def _pace(self, queue: DeliveryQueue) -> bool:
        """Wait until the queue's message rate allows one more message; False when that
        is longer than the connection may idle (the caller closes it and a wake-up
        reopens one in time)."""
        while True:
            now = self._loop.time()
            wait = queue.msg_rate.peek(now)
            if wait > queue.policy.connection_idle_timeout:
                self._wake_after(queue, wait)
                return False
            if wait <= 0 and queue.msg_rate.try_acquire(now) <= 0:
                return True
            await asyncio.sleep(max(wait, 0.001))

    async def _next_item(self, queue: DeliveryQueue, idle_timeout: float) -> WorkItem | None:
        if queue.active > queue.window.limit:
            return None  # the window shrank (backoff, failures): give this connection up
        item = self._take(queue)
        if item is not None or idle_timeout <= 0 or self.stopping or self._paused(queue):
            return item
        waiter: asyncio.Future[WorkItem | None] = self._loop.create_future()
        queue.idle.append(waiter)
        timer = self._loop.call_later(idle_timeout, self._expire_idle, queue, waiter)
        try:
            return await waiter
        finally:
            timer.cancel()
            if not waiter.done() or waiter.cancelled():
                # Only a cancelled wait leaves the waiter queued (deque.remove's miss
                # would format the future's repr, so never call it needlessly).
                with contextlib.suppress(ValueError):
                    queue.idle.remove(waiter)

    @staticmethod
    def _expire_idle(queue: DeliveryQueue, waiter: asyncio.Future[WorkItem | None]) -> None:
        if not waiter.done():
            queue.idle.remove(waiter)
            waiter.set_result(None)

    async def _tls_requirement(self, queue: DeliveryQueue, domain: str) -> TlsRequirement:
        """The domain's TLS policy, tightened by its MTA-STS policy when it has one."""
        policy = self._policy(domain, queue.vmta)
        sts = None
        if self.mta_sts is not None and policy.mta_sts and policy.route is None:
            try:
                sts = await self.mta_sts.policy_for(domain)
            except Exception:  # a broken policy host must not stop delivery
                log.exception("MTA-STS lookup for %s failed", domain)
        return tls_requirement(
            use_starttls=policy.use_starttls,
            require_starttls=policy.require_starttls,
            tls_verify=cast(TlsVerify, policy.tls_verify),  # validated by the config loader
            tls_ca_file=policy.tls_ca_file,
            sts=sts,
        )

    async def _open_session(
        self, queue: DeliveryQueue, remaining: list[Target], tls: TlsRequirement
    ) -> tuple[SmtpSession | None, Outcome]:
        """Connect to the first target that answers; consumes ``remaining`` as it goes."""
        failure = local_outcome(451, "4.4.1", "No mail server could be reached")
        timeouts = timeouts_for(queue.policy)
        while remaining:
            target = remaining.pop(0)
            if not tls.permits_mx(target.host):
                reply = mx_refused_reply(target.host)
                failure = classify_reply(reply, scope=Scope.SITE)
                continue
            try:
                session = await self._connect(queue, target, timeouts, tls)
            except SmtpConnectError as exc:
                log.info("%s: connect %s failed: %s", queue.name, target.describe(), exc)
                if exc.reply is not None:
                    self._react(queue, exc.reply, "greeting", target.host)
                    failure = classify_reply(exc.reply, scope=Scope.SITE, remote_mta=target.host)
                    if failure.verdict is not Verdict.TRANSIENT:
                        # A 5xx greeting is not a verdict on the message: try the next host,
                        # and if none is left, defer (Postfix's smtp_skip_5xx_greeting).
                        failure = local_outcome(
                            451, "4.4.1", f"{target.describe()} refused: {exc.reply}"
                        )
                else:
                    failure = local_outcome(
                        451, "4.4.1", f"Connection to {target.describe()} failed: {exc}"
                    )
                continue
            return session, failure
        return None, failure

    async def _connect(
        self, queue: DeliveryQueue, target: Target, timeouts: SmtpTimeouts, tls: TlsRequirement
    ) -> SmtpSession:
        """Connect from the queue's virtual MTA under the TLS requirement; after a TLS
        failure, step down as the requirement allows (verified → unverified → clear for
        opportunistic TLS; never for required TLS, which defers)."""
        vmta = self.config.virtual_mtas.get(queue.vmta)
        source = vmta.source_ip if vmta is not None else None
        helo = vmta.ehlo_name if vmta is not None else self.config.server.hostname
        requirement: TlsRequirement | None = tls
        while True:
            assert requirement is not None
            try:
                return await SmtpSession.connect(
                    target.address,
                    target.port,
                    helo_name=helo,
                    timeouts=timeouts,
                    source_address=source,
                    use_starttls=requirement.mode != "none",
                    server_hostname=target.host,
                    tls=requirement,
                )
            except SmtpConnectError as exc:
                if not exc.tls_failure:
                    raise
                requirement = requirement.fallback()
                if requirement is None:
                    raise
                log.warning(
                    "TLS with %s failed (%s); retrying with %s TLS",
                    target.describe(),
                    exc,
                    requirement.mode,
                )

    async def _body(self, msg: QueuedMessage) -> bytes:
        if msg.body is None:
            body = await self.spool.load_body(msg.envelope.queue_id)
            if msg.body is not None:  # another destination's connection loaded it meanwhile
                return msg.body
            msg.body = body
            self.cached_bytes += len(body)
        return msg.body

    def _fail_queue(
        self, queue: DeliveryQueue, item: WorkItem, outcome: Outcome, *, site: bool
    ) -> None:
        """A failure that applies to every item waiting in this queue."""
        if site:
            queue.window.on_failure()
            queue.dead.on_failure(self.clock(), concurrency=queue.window.limit)
        items = [item, *queue.ready]
        queue.ready.clear()
        log.info("%s: %s (%d messages)", queue.name, outcome.diagnostic, len(items))
        for it in items:
            self._settle(it, {id(r): outcome for r in it.recipients}, queue=queue)

    def _apply_result(
        self,
        queue: DeliveryQueue,
        item: WorkItem,
        result: TransactionResult,
        session: SmtpSession,
    ) -> None:
        host = session.remote_host
        outcomes: dict[int, Outcome] = {}
        seen: dict[str, list[Match]] = {}
        for r in result.results:
            text = str(r.reply)
            if result.data_reply is not None and r.reply is result.data_reply:
                phase = "data-end"
            elif result.mail_reply is not None and r.reply is result.mail_reply:
                phase = "mail"
            else:
                phase = "rcpt"
            matches = seen.get(text)
            if matches is None:
                matches = seen[text] = self._react(queue, r.reply, phase, host)
            outcome = classify_reply(r.reply, scope=Scope.RECIPIENT, remote_mta=host)
            outcomes[id(r.recipient)] = classify_with_patterns(outcome, matches)
        if result.connection_lost:
            queue.window.on_failure()
        else:
            queue.window.on_success(busy=queue.active)
        self._settle(
            item,
            outcomes,
            queue=queue,
            source_ip=session.local_address,
            destination_ip=session.peer_address,
            peer_dsn=session.extensions.dsn,
        )

    # -- reacting to replies: backoff, source IPs ----------------------------------------
    def _react(self, queue: DeliveryQueue, reply: Reply, phase: str, host: str) -> list[Match]:
        """Match a remote reply against the queue's pattern list and act on it."""
        list_name = queue.policy.smtp_pattern_list
        if not list_name or reply.code < 400:
            return []
        rules = self.config.pattern_lists.get(list_name, ())
        matches = match_reply(rules, str(reply), phase)
        now = self.clock()
        for match in matches:
            if match.action is Action.BACKOFF:
                self._record_transition(
                    queue, queue.backoff.enter(now, rule=match.rule, reply=match.reply), host
                )
            elif match.action is Action.NORMAL:
                self._record_transition(
                    queue,
                    queue.backoff.leave(now, reason="pattern", rule=match.rule, reply=match.reply),
                    host,
                )
            elif match.action is Action.DISABLE_SOURCE_IP:
                self._disable_source(queue, match, host, now)
        return matches

    def _record_transition(
        self, queue: DeliveryQueue, transition: Transition | None, host: str = ""
    ) -> None:
        if transition is None:
            return
        queue.apply_limits()
        new = "backoff" if transition.to_mode is Mode.BACKOFF else "normal"
        log.warning(
            "%s: %s mode (%s%s)",
            queue.name,
            new,
            transition.reason,
            f": {transition.reply}" if transition.reply else "",
        )
        self._queue_record(
            queue.name, queue.vmta, new, transition.reply or "", host, transition.rule or ""
        )
        if transition.to_mode is Mode.BACKOFF:
            self.control.backoff[queue.name] = transition.at
        else:
            self.control.backoff.pop(queue.name, None)
        self._save_control()
        if queue.backoff_timer is not None:
            queue.backoff_timer.cancel()
            queue.backoff_timer = None
        self._arm_backoff(queue)
        self._maybe_connect(queue)

    def _arm_backoff(self, queue: DeliveryQueue) -> None:
        deadline = queue.backoff.next_deadline(queue.policy.backoff_to_normal_after)
        if deadline is None:
            return
        delay = max(0.0, deadline - self.clock())
        queue.backoff_timer = self._loop.call_later(delay, self._backoff_tick, queue)

    def _backoff_tick(self, queue: DeliveryQueue) -> None:
        queue.backoff_timer = None
        transition = queue.backoff.tick(
            self.clock(), to_normal_after=queue.policy.backoff_to_normal_after
        )
        if transition is None:
            self._arm_backoff(queue)  # refreshed meanwhile: wait for the new deadline
        else:
            self._record_transition(queue, transition)

    def _disable_source(self, queue: DeliveryQueue, match: Match, host: str, now: float) -> None:
        dest = self._destination(queue.key)
        until = now + queue.policy.reenable_source_ip_after
        record = dest.disabled.disable(
            queue.vmta, now, until=until, rule=match.rule, reply=match.reply
        )
        if record is None:
            return
        log.warning("%s: source %s disabled until %.0f", queue.key, queue.vmta, until)
        self._queue_record(
            queue.name, queue.vmta, "source-ip-disabled", match.reply, host, match.rule
        )
        self.control.disabled.setdefault(queue.key, {})[queue.vmta] = until
        self._save_control()
        self._loop.call_later(until - now + 0.01, self._reenable_source, queue.key, queue.vmta)
        # Mail waiting in this queue moves to the pool's other members.
        items = list(queue.ready)
        queue.ready.clear()
        for item in items:
            self._to_queue(item, queue.key)

    def _reenable_source(self, key: str, vmta: str) -> None:
        dest = self._destination(key)
        now = self.clock()
        until = dest.disabled.disabled(now).get(vmta)
        if until is not None:  # extended by later matches: check again then
            self._loop.call_later(until - now + 0.01, self._reenable_source, key, vmta)
            return
        dest.disabled.expire(now)
        sources = self.control.disabled.get(key, {})
        if sources.pop(vmta, None) is not None:
            self._save_control()
        log.info("%s: source %s enabled again", key, vmta)
        self._queue_record(f"{key}/{vmta}", vmta, "source-ip-enabled", "", "", "")

    def _save_control(self) -> None:
        try:
            self.control.save(self.config.server.state_dir)
        except OSError as exc:  # the state is still right in memory
            log.error("cannot save %s: %s", self.config.server.state_dir, exc)

    def _queue_record(
        self, queue_name: str, vmta: str, action: str, reply: str, host: str, rule: str
    ) -> None:
        now = self.clock()
        self.accounting.write(
            AccountingRecord(
                type=RecordType.QUEUE,
                time_logged=now,
                time_queued=now,
                orig="",
                rcpt="",
                orcpt="",
                dsn_action=action,
                dsn_status="",
                dsn_diag=reply,
                dsn_mta=host,
                dlv_source_ip="",
                dlv_destination_ip="",
                queue=queue_name,
                vmta=vmta,
                job_id="",
                env_id="",
                msg_id="",
                size=0,
                rule=rule,
            )
        )

    # -- outcomes ----------------------------------------------------------------------------
    def _settle(
        self,
        item: WorkItem,
        outcomes: dict[int, Outcome],
        *,
        queue: DeliveryQueue | None = None,
        source_ip: str = "",
        destination_ip: str = "",
        peer_dsn: bool = False,
    ) -> None:
        msg = item.message
        env = msg.envelope
        now = self.clock()
        policy = queue.policy if queue is not None else self.config.policy_for(item.domain)
        retry_after = queue.retry_after if queue is not None else policy.retry_after
        records: list[AccountingRecord] = []
        delayed: list[Recipient] = []
        delivered = False
        for rcpt in item.recipients:
            outcome = outcomes.get(id(rcpt)) or local_outcome(
                451, "4.3.0", "No result for recipient"
            )
            rcpt.attempts += 1
            rcpt.last_reply = outcome.diagnostic
            rcpt.last_mta = outcome.remote_mta
            rtype: RecordType
            if outcome.verdict is Verdict.DELIVERED:
                rcpt.status = RcptStatus.DELIVERED
                rtype, action = RecordType.DELIVERED, "relayed"
                delivered = True
                if not peer_dsn and rcpt.notify is not None and wants_dsn(rcpt, "delivered"):
                    msg.relayed.append(rcpt)
            elif outcome.verdict is Verdict.PERMANENT:
                rcpt.status = RcptStatus.BOUNCED
                rtype, action = RecordType.BOUNCED, "failed"
            else:
                decision = decide_retry(
                    retry_after=retry_after,
                    bounce_after=policy.bounce_after,
                    attempts=rcpt.attempts,
                    received_at=env.received_at,
                    now=now,
                )
                if decision.expired:
                    rcpt.status = RcptStatus.BOUNCED
                    rcpt.last_reply = (
                        f"{outcome.diagnostic} (expired after {rcpt.attempts} attempts)"
                    )
                    rtype, action = RecordType.BOUNCED, "failed"
                else:
                    rcpt.next_attempt = decision.next_attempt
                    rtype, action = RecordType.TRANSIENT, "delayed"
                    if self._owes_delay_warning(env, rcpt, policy, now):
                        delayed.append(rcpt)
            records.append(
                AccountingRecord(
                    type=rtype,
                    time_logged=now,
                    time_queued=env.received_at,
                    orig=env.sender,
                    rcpt=rcpt.address,
                    orcpt=rcpt.orcpt or "",
                    dsn_action=action,
                    dsn_status=outcome.status,
                    dsn_diag=rcpt.last_reply,
                    dsn_mta=outcome.remote_mta,
                    dlv_source_ip=source_ip,
                    dlv_destination_ip=destination_ip,
                    queue=queue.name if queue is not None else item.domain,
                    vmta=item.vmta or env.vmta,
                    job_id=env.job_id,
                    env_id=env.envid or "",
                    msg_id=env.msg_id,
                    size=env.size,
                )
            )
            if queue is not None:
                if rtype is RecordType.DELIVERED:
                    queue.delivered += 1
                elif rtype is RecordType.BOUNCED:
                    queue.failed += 1
                else:
                    queue.deferred += 1
        self.accounting.write_many(records)
        if delayed:
            env.extra[DELAY_WARNED] = "1"
            until = env.received_at + policy.bounce_after
            self._spawn(
                self._send_dsn(env, delayed, "delayed", will_retry_until=until),
                f"delay-dsn-{env.queue_id}",
            )
        if delivered and queue is not None:
            self._record_transition(
                queue,
                queue.backoff.on_delivery(
                    now, to_normal_after_delivery=policy.backoff_to_normal_after_delivery
                ),
            )
        msg.inflight -= 1
        last = msg.inflight == 0
        if last:
            self._drop_body(msg)  # later attempts reload it; keeps memory bounded
        self._spawn(self._persist(msg, item.recipients, last), f"persist-{env.queue_id}")

    @staticmethod
    def _owes_delay_warning(
        env: Envelope, rcpt: Recipient, policy: DomainPolicy, now: float
    ) -> bool:
        """One "delayed" DSN per message, once it has waited delay-warning-after."""
        after = policy.delay_warning_after
        return (
            after is not None
            and now - env.received_at >= after
            and DELAY_WARNED not in env.extra
            and should_bounce(env)
            and wants_dsn(rcpt, "delayed")
        )

    def _drop_body(self, msg: QueuedMessage) -> None:
        if msg.body is not None:
            self.cached_bytes -= len(msg.body)
            msg.body = None

    async def _persist(self, msg: QueuedMessage, changed: list[Recipient], last: bool) -> None:
        """Make the new recipient states durable; the item that settled last reschedules."""
        env = msg.envelope
        if last and env.is_done:
            await self._finalize(msg)
            return
        await self.spool.record(env, changed)
        if last and not self.stopping:
            self._dispatch(msg)

    async def _finalize(self, msg: QueuedMessage) -> None:
        """Every recipient is final: send the DSNs (if any), then drop the spool file."""
        env = msg.envelope
        if self.messages.pop(env.queue_id, None) is None:
            return
        failed = [
            r for r in env.recipients if r.status is RcptStatus.BOUNCED and wants_dsn(r, "failed")
        ]
        if should_bounce(env):
            if failed:
                await self._send_dsn(env, failed, "failed")
            if msg.relayed:
                await self._send_dsn(env, msg.relayed, "relayed")
        await self.spool.remove(env.queue_id)

    async def _send_dsn(
        self,
        env: Envelope,
        recipients: list[Recipient],
        action: str,
        *,
        will_retry_until: float | None = None,
    ) -> None:
        try:
            original = await self.spool.load_body(env.queue_id)
        except Exception:  # the notice still goes out, with what is known
            log.exception("cannot load %s for its DSN; returning headers only", env.queue_id)
            original = b""
        now = self.clock()
        dsn_id = self.new_queue_id()
        default_status = {"relayed": "2.0.0", "delayed": "4.0.0"}.get(action, "5.0.0")
        data = build_dsn(
            env,
            [
                FailedRecipient(
                    recipient=r,
                    status=status_from_text(r.last_reply, default_status),
                    diagnostic=r.last_reply,
                    remote_mta=r.last_mta,
                    will_retry_until=will_retry_until,
                )
                for r in recipients
            ],
            original,
            reporting_mta=self.config.server.hostname,
            now=now,
            action=action,
            queue_id_of_dsn=dsn_id,
        )
        dsn_env = Envelope(
            queue_id=dsn_id,
            sender="",
            recipients=[Recipient(env.sender)],
            received_at=now,
            size=len(data),
            # The notice needs SMTPUTF8 only when its own recipient does; UTF-8 in the
            # report parts is 8-bit body content (RFC 6533 message/global-*).
            smtputf8=not env.sender.isascii(),
            body_8bit=not data.isascii(),
        )
        await self.spool.store(dsn_env, data)
        log.info(
            "%s: %s DSN %s to <%s> for %d recipient(s)",
            env.queue_id,
            action,
            dsn_id,
            env.sender,
            len(recipients),
        )
        self.submit(dsn_env, data)

    # -- control (the internal API the admin surfaces use) -----------------------------------
    def pause_queue(self, name: str) -> None:
        """Pause a queue ("key/vmta"), a destination (every virtual MTA), or one recipient
        domain (its mail is held even when it shares a rolled-up queue with others)."""
        self.control.paused_queues.add(name)
        self.control.save(self.config.server.state_dir)
        log.info("paused queue %s", name)

    def resume_queue(self, name: str) -> bool:
        if name not in self.control.paused_queues:
            return False
        self.control.paused_queues.discard(name)
        self.control.save(self.config.server.state_dir)
        log.info("resumed queue %s", name)
        for item in self.parked_domains.pop(name, []):
            self._route(item)
        for queue in self.queues.values():
            self._maybe_connect(queue)
        return True

    def pause_job(self, job_id: str) -> None:
        self.control.paused_jobs.add(job_id)
        self.control.save(self.config.server.state_dir)
        log.info("paused job %s", job_id)

    def resume_job(self, job_id: str) -> bool:
        if job_id not in self.control.paused_jobs:
            return False
        self.control.paused_jobs.discard(job_id)
        self.control.save(self.config.server.state_dir)
        log.info("resumed job %s", job_id)
        for item in self.parked.pop(job_id, []):
            if item.recipients:
                self._route(item)
            else:  # parked before dispatch: the whole message waits
                self._dispatch(item.message)
        return True

    def set_mode(self, name: str, mode: str) -> int:
        """Put matching queues into backoff or back to normal by hand; returns how many."""
        now = self.clock()
        count = 0
        for queue in self.queues.values():
            if name not in (queue.name, queue.key, queue.domain):
                continue
            if mode == "backoff":
                transition = queue.backoff.enter(now, rule=None, reply=None, reason="manual")
            else:
                transition = queue.backoff.leave(now, reason="manual")
            self._record_transition(queue, transition)
            count += 1
        return count

    def status(self) -> dict[str, Any]:
        now = self.clock()
        return {
            "messages": len(self.messages),
            "connections": self.total_active,
            "paused_queues": sorted(self.control.paused_queues),
            "paused_jobs": sorted(self.control.paused_jobs),
            "held": {
                **{f"job:{job}": len(items) for job, items in self.parked.items() if items},
                **{f"domain:{d}": len(items) for d, items in self.parked_domains.items() if items},
            },
            "queues": [
                {
                    "name": q.name,
                    "destination": q.key,
                    "vmta": q.vmta,
                    "domain": q.domain,
                    "mode": q.mode.value,
                    "paused": self._paused(q),
                    "ready": len(q.ready),
                    "connections": q.active,
                    "window": q.window.limit,
                    "dead": q.dead.is_dead(now),
                    "delivered": q.delivered,
                    "failed": q.failed,
                    "deferred": q.deferred,
                    "disabled_sources": sorted(self._destination(q.key).disabled.disabled(now)),
                }
                for q in self.queues.values()
            ],
        }

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def pending_messages(self) -> int:
        return len(self.messages)

    async def stop(self, timeout: float) -> None:
        """Finish in-flight deliveries (bounded), then cancel what is left."""
        self.stopping = True
        for msg in self.messages.values():
            if msg.timer is not None:
                msg.timer.cancel()
                msg.timer = None
        for queue in self.queues.values():
            for handle in (queue.wake, queue.backoff_timer):
                if handle is not None:
                    handle.cancel()
            while queue.idle:
                waiter = queue.idle.popleft()
                if not waiter.done():
                    waiter.set_result(None)
        deadline = self._loop.time() + timeout
        while self._tasks:
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                break
            await asyncio.wait(set(self._tasks), timeout=remaining)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5)
        self.accounting.flush()
