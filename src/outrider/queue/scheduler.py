"""The scheduler: the only owner of the delivery schedule.

It holds every pending message's envelope and decides when each recipient is tried:
due recipients are grouped by domain into work items, routed to a delivery queue
(:mod:`~outrider.queue.router`), and delivered by workers holding a lease on that queue
(:mod:`~outrider.queue.slots`, :mod:`~outrider.queue.lease`). Outcomes come back to
:meth:`Scheduler.settle`, which applies them (:mod:`~outrider.queue.settle`), publishes
events and has the :mod:`~outrider.queue.finisher` make them durable.

It does not talk SMTP (transports do), write the accounting log or build DSNs (event
subscribers do). Every operation on a message is O(1) or O(log n) (retry timers live in
buckets, :mod:`~outrider.queue.timers`, behind one loop timer), so a queue with
1,000,000 messages does not slow another down. Per message it keeps only the envelope
and a small :class:`~outrider.queue.model.QueuedMessage` (see docs/scale.md).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator

from outrider.config.model import Config
from outrider.delivery.transport import DeliveryReport, Transport, TransportSelector
from outrider.dsn.notices import (
    REMOVED_WITH_DSN,
    REMOVED_WITHOUT_DSN,
    final_notices,
    notice_id,
)
from outrider.events.bus import EventBus
from outrider.events.types import Delivered, MessageQueued
from outrider.intake.vmta import VmtaTable, envelope_vmta
from outrider.message.envelope import Envelope, RcptStatus, Recipient
from outrider.policy.bounce_category import BounceClassifier, RulesFileError
from outrider.policy.outcome import Outcome, local_outcome
from outrider.queue.context import Context
from outrider.queue.control_state import ControlState
from outrider.queue.delivery_mode import (
    IMMEDIATE,
    DeliveryMode,
    LoadReading,
    delivery_mode,
    next_queue_run,
)
from outrider.queue.finisher import Finisher
from outrider.queue.holds import Holds
from outrider.queue.lease import Lease, apply_failure, fail_item
from outrider.queue.model import DeliveryQueue, Destination, QueuedMessage, WorkItem
from outrider.queue.router import Router
from outrider.queue.settle import Attempt, message_info, settle
from outrider.queue.shaping import Shaper
from outrider.queue.slots import Slots
from outrider.queue.timers import RetryTimers
from outrider.queue.worker import run_worker
from outrider.spool.base import IN_MEMORY_LIMIT, Spool
from outrider.spool.reader import Body
from outrider.suppression import enforce
from outrider.suppression.store import SuppressionStore, scope_of_sender

log = logging.getLogger("outrider.queue")

# Bodies of fresh mail kept in memory for the first attempt, in total; past this,
# new mail is read back from the spool when it is delivered.
BODY_CACHE_BYTES = 256 * 1024 * 1024


def bounce_classifier(config: Config, previous: BounceClassifier | None = None) -> BounceClassifier:
    """The bounce categories' rules for ``config`` (its rules file, then the shipped rules).
    The loader has checked the file; one that broke since keeps the previous rules."""
    path = config.bounce_categories.rules_file
    try:
        return BounceClassifier.from_file(path)
    except (OSError, RulesFileError) as exc:
        log.error("bounce-categories rules-file: %s; the previous rules stay in force", exc)
        return previous or BounceClassifier.with_extra()


class Scheduler:
    def __init__(
        self,
        *,
        config: Config,
        spool: Spool,
        transports: TransportSelector | Transport,
        bus: EventBus | None = None,
        clock: Callable[[], float] = time.time,
        load: LoadReading | None = None,
        suppression: SuppressionStore | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        control = ControlState.load(config.server.state_dir)
        self.ctx = Context(config, clock, loop, bus or EventBus(loop), control)
        self.spool = spool
        if callable(transports):
            select = transports
        else:
            only = transports
            select = lambda domain, policy: only  # noqa: E731
        self.select_transport: TransportSelector = select
        self.messages: dict[str, QueuedMessage] = {}
        self.timers = RetryTimers(loop, lambda: self.ctx.clock(), self._dispatch)
        self._vmtas = VmtaTable.from_config(config)
        self.cached_bytes = 0  # bodies held by QueuedMessage.body
        # Octets of every scheduled message (``show status``), kept as they come and go:
        # summing the envelopes would unpack every waiting message.
        self.queued_bytes = 0
        self._owing: list[QueuedMessage] = []  # restored with notices, until recovery_done
        self._recovering = True
        self.holds = Holds(control)
        self.router = Router(
            self.ctx,
            select,
            enqueue=self._enqueue,
            fail=self._fail,
            on_new_queue=self._new_queue,
            on_new_destination=self._new_destination,
        )
        self.slots = Slots(self.ctx, self.holds, self._work, self._fail_dead)
        self.shaper = Shaper(
            self.ctx,
            self.router.destination,
            self.router.to_queue,
            self._kick,
            lambda: self.queues.values(),
        )
        self.finisher = Finisher(self.ctx, spool, self._dispatch, self._forget)
        self.load = load or LoadReading()
        self.suppression = suppression
        self.bounce_categories = bounce_classifier(config)

    @property
    def config(self) -> Config:
        return self.ctx.config

    @property
    def bus(self) -> EventBus:
        return self.ctx.bus

    @property
    def queues(self) -> dict[tuple[str, str], DeliveryQueue]:
        return self.router.queues

    # -- intake ------------------------------------------------------------------------------
    def submit(self, envelope: Envelope, body: bytes | None) -> None:
        """A freshly stored message: first attempt now (Exim's immediate delivery).
        A queue id already scheduled is ignored (a receiver's frame arriving after the
        message was adopted from the spool)."""
        if envelope.queue_id in self.messages:
            log.debug("%s is scheduled already; hand-off ignored", envelope.queue_id)
            return
        if body is not None and self.cached_bytes + len(body) > BODY_CACHE_BYTES:
            body = None
        self._ensure_vmta(envelope)
        msg = QueuedMessage(envelope, body)
        if body is not None:
            self.cached_bytes += len(body)
        self.messages[envelope.queue_id] = msg
        self.queued_bytes += envelope.size
        self._hold_for_queue_run(envelope)
        self.ctx.bus.publish(
            MessageQueued(
                self.ctx.clock(),
                message_info(envelope),
                len(envelope.recipients),
                envelope.vmta,
                envelope.recipients,
                pool=self._pool_of(envelope),
            )
        )
        if self.suppression is not None and self._suppress(msg):
            return
        self._dispatch(msg)

    def _suppress(self, msg: QueuedMessage) -> bool:
        """Settle the recipients on the suppression list (global or the sender domain's)
        as bounces at once: no attempt, no DSN, category ``suppressed``. Only new mail is
        checked (restored mail was checked when it arrived). True when nothing is left to
        deliver. An empty list costs one cached count; a broken file is logged and mail
        goes out (failing open: the list is a courtesy, the mail was accepted)."""
        store = self.suppression
        env = msg.envelope
        try:
            if store is None or store.is_empty():
                return False
            pending = [r for r in env.recipients if r.status is RcptStatus.PENDING]
            found = store.check([r.address for r in pending], scope_of_sender(env.sender))
        except sqlite3.Error as exc:
            log.error("%s: suppression list not checked: %s", env.queue_id, exc)
            return False
        if not found:
            return False
        by_domain: dict[str, list[Recipient]] = {}
        for rcpt in pending:
            if rcpt.address in found:
                by_domain.setdefault(rcpt.domain, []).append(rcpt)
        changed: list[Recipient] = []
        now = self.ctx.clock()
        for domain, rcpts in by_domain.items():
            policy = self.ctx.config.policy_for(domain)
            attempt = Attempt(
                now=now,
                retry_after=(),
                bounce_after=policy.bounce_after,
                delay_warning_after=None,
                queue=domain,
                vmta=env.vmta,
                pool=self._pool_of(env),
            )
            outcomes = {
                id(r): local_outcome(
                    550, enforce.STATUS, enforce.reply_text(r.address, found[r.address])
                )
                for r in rcpts
            }
            result = settle(env, rcpts, outcomes, attempt)
            for event in result.events:
                event.category = enforce.CATEGORY
            for rcpt in rcpts:
                rcpt.attempts = 0  # never attempted
            self.ctx.bus.publish_many(result.events)
            changed.extend(rcpts)
        done = env.is_done
        if done:
            self._drop_body(msg)
            env.notices += "".join(k for k in final_notices(env) if k not in env.notices)
        self.finisher.persist(msg, changed, done)
        return done

    def delivery_mode(self) -> DeliveryMode:
        """Whether new mail is delivered on arrival now (``show status`` says it)."""
        server = self.config.server
        if not (server.queue_only or server.queue_remote_only or server.queue_only_load):
            return IMMEDIATE
        return delivery_mode(
            queue_only=server.queue_only,
            queue_only_load=server.queue_only_load,
            queue_remote_only=server.queue_remote_only,
            load=self.load.current(),
        )

    def _hold_for_queue_run(self, envelope: Envelope) -> None:
        mode = self.delivery_mode()
        if mode is IMMEDIATE:
            return
        run = next_queue_run(self.ctx.clock(), self.config.server.queue_run_interval)
        local = self.config.local_domains
        for rcpt in envelope.recipients:
            if not (mode.local_now if rcpt.domain in local else mode.remote_now):
                rcpt.next_attempt = max(rcpt.next_attempt, run)

    def restore(self, envelope: Envelope) -> None:
        """A message found by spool recovery: resume its schedule. Notices it still owes
        wait for :meth:`recovery_done`, which knows every recovered queue id. One already
        scheduled (fresh mail handed off while recovery runs) is left alone."""
        if envelope.queue_id in self.messages:
            return
        self._ensure_vmta(envelope)
        msg = QueuedMessage(envelope, None)
        self.messages[envelope.queue_id] = msg
        self.queued_bytes += envelope.size
        if envelope.notices:
            if self._recovering:
                self._owing.append(msg)
            else:
                self.finisher.announce(msg)
        elif envelope.is_done:
            self.finisher.persist(msg, [], last=True)  # its removal was cut short
        if not envelope.is_done:
            self._dispatch(msg)

    def _ensure_vmta(self, env: Envelope) -> None:
        """The intake chose the virtual MTA; a spool file from before the intake did,
        or a choice a reload removed, is chosen again by the same rules."""
        if env.vmta not in self._vmtas.known:
            env.vmta = envelope_vmta(self._vmtas, env)

    def recovery_done(self) -> None:
        """Every spooled message is restored: settle the notices owed before the restart.
        A notice whose DSN is in the spool already (stored just before a crash) is
        cleared instead of being built again."""
        self._recovering = False
        owing, self._owing = self._owing, []
        for msg in owing:
            env = msg.envelope
            stored = [k for k in env.notices if notice_id(env.queue_id, k) in self.messages]
            for kind in stored:
                env.notices = env.notices.replace(kind, "")
            if stored or (env.is_done and not env.notices):
                self.finisher.persist(msg, [], last=env.is_done)
            self.finisher.announce(msg)

    async def notice_stored(self, queue_id: str, kind: str) -> None:
        """The notifier stored the DSN of ``kind`` for ``queue_id``: clear the notice
        durably (raises if that fails; the notifier then tries again later)."""
        msg = self.messages.get(queue_id)
        if msg is not None:
            await self.finisher.clear_notice(msg, kind)

    def notice_failed(self, queue_id: str, kind: str) -> None:
        msg = self.messages.get(queue_id)
        if msg is not None:
            self.finisher.notice_failed(msg, kind)

    def envelope(self, queue_id: str) -> Envelope | None:
        msg = self.messages.get(queue_id)
        return msg.envelope if msg is not None else None

    def update_config(self, config: Config) -> None:
        self.ctx.config = config
        self._vmtas = VmtaTable.from_config(config)
        self.bounce_categories = bounce_classifier(config, self.bounce_categories)
        for transport in {id(t): t for t in self.router.transports.values()}.values():
            transport.update_config(config)
        self.router.update_config()
        for queue in self.router.queues.values():
            self.slots.maybe_connect(queue)

    # -- scheduling --------------------------------------------------------------------------
    def _dispatch(self, msg: QueuedMessage) -> None:
        """Hand every due recipient to its queue; arm a timer for the rest."""
        if self.ctx.stopping:
            return
        self.timers.cancel(msg)
        env = msg.envelope
        if self.holds.message_held(env.queue_id):
            self.holds.messages[env.queue_id].append(WorkItem(msg, [], ""))
            return
        if self.holds.job_paused(env.job_id):
            self.holds.jobs[env.job_id].append(WorkItem(msg, [], ""))
            return
        now = self.ctx.clock()
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
            self.router.route(WorkItem(msg, rcpts, domain))
        if not due and earliest:
            self._arm(msg, earliest)

    def _arm(self, msg: QueuedMessage, when: float) -> None:
        self.timers.arm(msg, when)
        # Waiting for its retry time, with nothing of it in anyone's hands: held packed
        # until it is due (a third of the memory; docs/scale.md, "Memory").
        if (
            msg.inflight == 0
            and not msg.announced
            and not msg.removing
            and not msg.envelope.notices
        ):
            msg.pack()

    def _enqueue(self, queue: DeliveryQueue, item: WorkItem) -> None:
        self.slots.enqueue(queue, item)

    def _kick(self, queue: DeliveryQueue) -> None:
        self.slots.maybe_connect(queue)

    def _new_queue(self, queue: DeliveryQueue) -> None:
        self.shaper.restore_backoff(queue)

    def _new_destination(self, dest: Destination) -> None:
        self.shaper.restore_disabled(dest)

    def reroute(self, item: WorkItem) -> None:
        """Route an item again (released by an operator hold)."""
        if item.recipients:
            self.router.route(item)
        else:  # held before dispatch: the whole message waits
            self._dispatch(item.message)

    async def _work(self, queue: DeliveryQueue) -> None:
        lease = Lease(
            self.ctx,
            queue,
            self.holds,
            self.shaper,
            self.settle,
            self._body,
            self.slots.wake_after,
            self.slots.maybe_connect,
        )
        await run_worker(lease, self.router.transport_of(queue))

    async def _body(self, msg: QueuedMessage) -> Body:
        if msg.body is None:
            if msg.envelope.size > IN_MEMORY_LIMIT:  # streamed from the spool, never held
                return await self.spool.open_body(msg.envelope.queue_id)
            body = await self.spool.load_body(msg.envelope.queue_id)
            if msg.body is not None:  # another destination's connection loaded it meanwhile
                return msg.body
            msg.body = body
            self.cached_bytes += len(body)
        return msg.body

    def _fail(self, item: WorkItem, outcome: Outcome, queue: DeliveryQueue | None) -> None:
        """An item that never reached a queue's connection (routing, DNS, no source)."""
        if queue is None:
            fail_item(self.settle, item, outcome, None)
        else:
            apply_failure(self.settle, queue, item, outcome, self.ctx.clock())

    def _fail_dead(self, queue: DeliveryQueue, item: WorkItem) -> None:
        outcome = local_outcome(451, "4.4.1", f"Destination {queue.key} is not responding")
        fail_item(self.settle, item, outcome, queue)

    # -- outcomes ----------------------------------------------------------------------------
    def settle(
        self,
        item: WorkItem,
        outcomes: dict[int, Outcome],
        queue: DeliveryQueue | None,
        report: DeliveryReport | None,
    ) -> None:
        msg = item.message
        env = msg.envelope
        policy = queue.policy if queue is not None else self.ctx.config.policy_for(item.domain)
        attempt = Attempt(
            now=self.ctx.clock(),
            retry_after=queue.retry_after if queue is not None else policy.retry_after,
            bounce_after=policy.bounce_after,
            delay_warning_after=policy.delay_warning_after,
            queue=queue.name if queue is not None else item.domain,
            vmta=item.vmta or env.vmta,
            source_ip=report.source_ip if report is not None else "",
            destination_ip=report.destination_ip if report is not None else "",
            peer_dsn=report.peer_dsn if report is not None else False,
            esmtp=report.esmtp if report is not None else "",
            pool=self._pool_of(env),
            categories=self.bounce_categories,
        )
        result = settle(env, item.recipients, outcomes, attempt)
        self.ctx.bus.publish_many(result.events)
        if queue is not None:
            queue.delivered += result.delivered
            queue.failed += result.bounced
            queue.deferred += result.deferred
            if result.deferred or result.bounced:
                failed = [e for e in result.events if not isinstance(e, Delivered)]
                queue.last_error = failed[-1].diagnostic
            if result.delivered:
                self.shaper.on_delivery(queue)
        msg.inflight -= 1
        last = msg.inflight == 0
        if last:
            self._drop_body(msg)  # later attempts reload it; keeps memory bounded
            if env.is_done:
                env.notices += "".join(k for k in final_notices(env) if k not in env.notices)
        self.finisher.persist(msg, item.recipients, last)

    # -- operator actions (the console) ------------------------------------------------------
    def retry_now(self, messages: Iterable[QueuedMessage]) -> None:
        """Dispatch messages whose recipients the operator made due. One waiting for
        its timer goes at once; one with items out is dispatched again by the last of
        them to settle (dispatching it now would route those items twice)."""
        for msg in messages:
            if self.timers.armed(msg) and msg.inflight == 0 and not msg.removing:
                self._dispatch(msg)
        for queue in self.queues.values():
            if queue.ready:
                self.slots.maybe_connect(queue)

    def remove(
        self,
        msg: QueuedMessage,
        removals: dict[str, list[Recipient]],
        *,
        emptied: bool,
        bounce: bool,
    ) -> None:
        """Make recipients the operator deleted final: bounced with 5.0.0, published
        (one accounting record each) and persisted by the finisher. The caller took them
        out of every work item first (``emptied``: an item was left empty and dropped).
        Without ``bounce`` their recorded reply keeps them out of the failure notice."""
        env = msg.envelope
        now = self.ctx.clock()
        reply = REMOVED_WITH_DSN if bounce else REMOVED_WITHOUT_DSN
        outcome = local_outcome(550, "5.0.0", reply.removeprefix("550 5.0.0 "))
        changed: list[Recipient] = []
        for queue_name, rcpts in removals.items():
            policy = self.ctx.config.policy_for(rcpts[0].domain)
            attempt = Attempt(
                now=now,
                retry_after=(),
                bounce_after=policy.bounce_after,
                delay_warning_after=None,
                queue=queue_name,
                vmta=queue_name.rpartition("/")[2] or env.vmta,
                pool=self._pool_of(env),
            )
            result = settle(env, rcpts, {id(r): outcome for r in rcpts}, attempt)
            self.ctx.bus.publish_many(result.events)
            changed.extend(rcpts)
        last = msg.inflight == 0 and (env.is_done or emptied)
        if last:
            self.timers.cancel(msg)
            if env.is_done:
                self._drop_body(msg)
                env.notices += "".join(k for k in final_notices(env) if k not in env.notices)
        self.finisher.persist(msg, changed, last)

    def _pool_of(self, env: Envelope) -> str:
        """The virtual-MTA pool the message was assigned (vmtaPool), "" for a virtual MTA
        assigned directly: every record of the message names it, whatever decided it."""
        return env.vmta if env.vmta in self.ctx.config.vmta_pools else ""

    def _drop_body(self, msg: QueuedMessage) -> None:
        if msg.body is not None:
            self.cached_bytes -= len(msg.body)
            msg.body = None

    def _forget(self, msg: QueuedMessage) -> None:
        env = msg.envelope
        queue_id = env.queue_id
        if self.messages.pop(queue_id, None) is not None:
            self.queued_bytes -= env.size
        if queue_id in self.ctx.control.held_messages:  # a hold ends with its message
            self.ctx.control.held_messages.discard(queue_id)
            self.holds.release_message(queue_id)
            self.ctx.save_control()
        self.timers.cancel(msg)

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def pending_messages(self) -> int:
        return len(self.messages)

    def snapshot_entries(self) -> tuple[int, Iterator[Envelope]]:
        """How many messages are queued, and their envelopes, for the schedule snapshot
        written at a clean stop (spool/snapshot.py). The messages are listed now; each
        envelope is built when the writer reaches it (a packed one unpacked for it alone
        and let go), so a million are never held as objects all together."""
        messages = list(self.messages.values())
        return len(messages), (msg.view() for msg in messages)

    async def stop(self, timeout: float) -> bool:
        """Finish in-flight deliveries (bounded), then cancel what is left. True when
        nothing had to be cancelled: every settled state was handed to the spool."""
        ctx = self.ctx
        ctx.stopping = True
        self.timers.stop()
        for queue in self.router.queues.values():
            for handle in (queue.wake, queue.backoff_timer):
                if handle is not None:
                    handle.cancel()
            while queue.idle:
                waiter = queue.idle.popleft()
                if not waiter.done():
                    waiter.set_result(None)
        deadline = ctx.loop.time() + timeout
        while ctx.tasks:
            remaining = deadline - ctx.loop.time()
            if remaining <= 0:
                break
            await asyncio.wait(set(ctx.tasks), timeout=remaining)
        clean = all(task.done() for task in ctx.tasks)
        for task in list(ctx.tasks):
            task.cancel()
        if ctx.tasks:
            await asyncio.wait(set(ctx.tasks), timeout=5)
        ctx.bus.flush()
        return clean
