"""The queue manager: the only owner of the delivery schedule.

It holds every pending message's envelope, groups due recipients by destination
into work items, runs a bounded set of outbound connections per destination
(reusing each for as many messages as are ready), applies the outcomes (delivered,
retry later, bounce), persists recipient state to the spool, writes the accounting
log, and sends one DSN per message once every recipient is final.

Connections never touch the schedule: they take work items from their
destination's ready queue and hand results back to ``_apply``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from outrider.accounting.records import AccountingRecord, RecordType
from outrider.accounting.writer import AccountingLog
from outrider.config.model import Config, DomainPolicy
from outrider.delivery.dns import DnsError, DnsErrorKind, MxResolver
from outrider.delivery.smtp_client import (
    SmtpConnectError,
    SmtpSession,
    SmtpTimeouts,
    TransactionResult,
)
from outrider.delivery.targets import Target, resolve_targets
from outrider.dsn.builder import FailedRecipient, build_dsn, should_bounce, wants_dsn
from outrider.message.envelope import Envelope, RcptStatus, Recipient
from outrider.policy.outcome import (
    Outcome,
    Scope,
    Verdict,
    classify_reply,
    local_outcome,
    status_from_text,
)
from outrider.policy.retry import decide_retry
from outrider.spool.base import Spool

log = logging.getLogger("outrider.queue")

# Bodies of fresh mail kept in memory for the first attempt, in total; past this,
# new mail is read back from the spool when it is delivered.
BODY_CACHE_BYTES = 256 * 1024 * 1024


@dataclass(eq=False)
class QueuedMessage:
    envelope: Envelope
    body: bytes | None  # kept for the first attempt of fresh mail; reloaded later
    inflight: int = 0  # work items handed to destinations and not yet settled
    timer: asyncio.TimerHandle | None = None
    # Delivered with NOTIFY=SUCCESS to a peer without DSN: owed a "relayed" notice
    # (RFC 3461 5.2.2). Kept in memory only: a crash before the end loses the notice.
    relayed: list[Recipient] = field(default_factory=list)


@dataclass(eq=False)
class WorkItem:
    message: QueuedMessage
    recipients: list[Recipient]
    domain: str


@dataclass(eq=False)
class Destination:
    name: str
    policy: DomainPolicy
    ready: deque[WorkItem] = field(default_factory=deque)
    idle: deque[asyncio.Future[WorkItem | None]] = field(default_factory=deque)
    active: int = 0


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
        self.destinations: dict[str, Destination] = {}
        self.waiting_for_slot: deque[Destination] = deque()
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
        msg = QueuedMessage(envelope, body)
        if body is not None:
            self.cached_bytes += len(body)
        self.messages[envelope.queue_id] = msg
        self._dispatch(msg)

    def restore(self, envelope: Envelope) -> None:
        """A message found by spool recovery: resume its schedule."""
        msg = QueuedMessage(envelope, None)
        self.messages[envelope.queue_id] = msg
        if envelope.is_done:
            self._spawn(self._finalize(msg), f"finalize-{envelope.queue_id}")
        else:
            self._dispatch(msg)

    def update_config(self, config: Config) -> None:
        self.config = config
        for dest in self.destinations.values():
            dest.policy = config.policy_for(dest.name)

    # -- scheduling --------------------------------------------------------------------------
    def _dispatch(self, msg: QueuedMessage) -> None:
        """Hand every due recipient to its destination; arm a timer for the rest."""
        if self.stopping:
            return
        msg.timer = None
        now = self.clock()
        due: dict[str, list[Recipient]] = {}
        earliest = 0.0
        for rcpt in msg.envelope.recipients:
            if rcpt.status is not RcptStatus.PENDING:
                continue
            if rcpt.next_attempt <= now:
                due.setdefault(rcpt.domain, []).append(rcpt)
            elif earliest == 0.0 or rcpt.next_attempt < earliest:
                earliest = rcpt.next_attempt
        for domain, rcpts in due.items():
            msg.inflight += 1
            self._enqueue(WorkItem(msg, rcpts, domain))
        if not due and earliest:
            self._arm(msg, earliest)

    def _arm(self, msg: QueuedMessage, when: float) -> None:
        if msg.timer is not None:
            msg.timer.cancel()
        delay = max(0.0, when - self.clock())
        msg.timer = self._loop.call_later(delay, self._dispatch, msg)

    def _destination(self, domain: str) -> Destination:
        dest = self.destinations.get(domain)
        if dest is None:
            dest = Destination(domain, self.config.policy_for(domain))
            self.destinations[domain] = dest
        return dest

    def _enqueue(self, item: WorkItem) -> None:
        dest = self._destination(item.domain)
        while dest.idle:
            waiter = dest.idle.popleft()
            if not waiter.done():
                waiter.set_result(item)
                return
        dest.ready.append(item)
        self._maybe_connect(dest)

    def _maybe_connect(self, dest: Destination) -> None:
        if not dest.ready or self.stopping:
            return
        # Only called when no connection of this destination is idle, so every active
        # one is busy: a ready item justifies another connection, up to max-smtp-out.
        if dest.active >= max(1, dest.policy.max_smtp_out):
            return
        if self.total_active >= self.config.server.max_delivery_concurrency:
            if dest not in self.waiting_for_slot:
                self.waiting_for_slot.append(dest)
            return
        dest.active += 1
        self.total_active += 1
        self._spawn(self._connection(dest), f"deliver-{dest.name}")

    def _spawn(self, coro: object, name: str) -> None:
        task: asyncio.Task[None] = self._loop.create_task(coro, name=name)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s failed", task.get_name(), exc_info=task.exception())

    # -- one outbound connection -------------------------------------------------------------
    async def _connection(self, dest: Destination) -> None:
        try:
            await self._run_connection(dest)
        finally:
            dest.active -= 1
            self.total_active -= 1
            self._maybe_connect(dest)
            while self.waiting_for_slot and self.total_active < (
                self.config.server.max_delivery_concurrency
            ):
                self._maybe_connect(self.waiting_for_slot.popleft())

    async def _run_connection(self, dest: Destination) -> None:
        if not dest.ready:
            return
        item: WorkItem | None = dest.ready.popleft()
        assert item is not None
        policy = dest.policy
        try:
            targets = await resolve_targets(
                dest.name, policy.route, self.resolver, mx_port=policy.smtp_port
            )
        except DnsError as exc:
            self._fail_destination(dest, item, dns_outcome(exc))
            return
        session, failure = await self._open_session(targets, policy)
        if session is None:
            self._fail_destination(dest, item, failure)
            return
        sent = 0
        try:
            while item is not None:
                body = await self._body(item.message)
                result = await session.send(item.message.envelope, item.recipients, body)
                current, item = item, None  # settled from here on
                self._apply_result(current, result, session)
                sent += 1
                if not session.usable or self.stopping:
                    break
                if policy.max_msg_per_connection and sent >= policy.max_msg_per_connection:
                    break
                item = await self._next_item(dest, policy.connection_idle_timeout)
        except Exception as exc:
            if item is not None:
                log.exception("delivery to %s failed", dest.name)
                self._settle(
                    item,
                    {
                        id(r): local_outcome(451, "4.3.0", f"Local delivery error: {exc}")
                        for r in item.recipients
                    },
                )
            raise
        finally:
            await session.close()

    async def _next_item(self, dest: Destination, idle_timeout: float) -> WorkItem | None:
        if dest.ready:
            return dest.ready.popleft()
        if idle_timeout <= 0 or self.stopping:
            return None
        waiter: asyncio.Future[WorkItem | None] = self._loop.create_future()
        dest.idle.append(waiter)
        try:
            return await asyncio.wait_for(waiter, idle_timeout)
        except TimeoutError:
            return None
        finally:
            with contextlib.suppress(ValueError):
                dest.idle.remove(waiter)

    async def _open_session(
        self, targets: list[Target], policy: DomainPolicy
    ) -> tuple[SmtpSession | None, Outcome]:
        failure = local_outcome(451, "4.4.1", "No mail server could be reached")
        timeouts = timeouts_for(policy)
        for target in targets:
            try:
                session = await self._connect(target, policy, timeouts)
            except SmtpConnectError as exc:
                log.info("connect %s:%d failed: %s", target.describe(), target.port, exc)
                if exc.reply is not None:
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
        self, target: Target, policy: DomainPolicy, timeouts: SmtpTimeouts
    ) -> SmtpSession:
        """Connect with opportunistic STARTTLS; if the TLS handshake fails, retry in clear."""

        async def attempt(starttls: bool) -> SmtpSession:
            return await SmtpSession.connect(
                target.address,
                target.port,
                helo_name=self.config.server.hostname,
                timeouts=timeouts,
                use_starttls=starttls,
                server_hostname=target.host,
            )

        try:
            return await attempt(policy.use_starttls)
        except SmtpConnectError as exc:
            if not (policy.use_starttls and exc.tls_failure):
                raise
            log.warning(
                "STARTTLS with %s failed (%s); retrying without TLS", target.describe(), exc
            )
            return await attempt(False)

    async def _body(self, msg: QueuedMessage) -> bytes:
        if msg.body is None:
            body = await self.spool.load_body(msg.envelope.queue_id)
            if msg.body is not None:  # another destination's connection loaded it meanwhile
                return msg.body
            msg.body = body
            self.cached_bytes += len(body)
        return msg.body

    def _fail_destination(self, dest: Destination, item: WorkItem, outcome: Outcome) -> None:
        """A site-level failure applies to every item waiting for this destination."""
        items = [item, *dest.ready]
        dest.ready.clear()
        log.info("destination %s: %s (%d messages)", dest.name, outcome.diagnostic, len(items))
        for it in items:
            self._settle(it, {id(r): outcome for r in it.recipients})

    def _apply_result(
        self, item: WorkItem, result: TransactionResult, session: SmtpSession
    ) -> None:
        host = session.remote_host
        outcomes = {
            id(r.recipient): classify_reply(r.reply, scope=Scope.RECIPIENT, remote_mta=host)
            for r in result.results
        }
        self._settle(
            item,
            outcomes,
            source_ip=session.local_address,
            destination_ip=session.peer_address,
            peer_dsn=session.extensions.dsn,
        )

    # -- outcomes ----------------------------------------------------------------------------
    def _settle(
        self,
        item: WorkItem,
        outcomes: dict[int, Outcome],
        *,
        source_ip: str = "",
        destination_ip: str = "",
        peer_dsn: bool = False,
    ) -> None:
        msg = item.message
        env = msg.envelope
        now = self.clock()
        policy = self._destination(item.domain).policy
        records: list[AccountingRecord] = []
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
                if not peer_dsn and rcpt.notify is not None and wants_dsn(rcpt, "delivered"):
                    msg.relayed.append(rcpt)
            elif outcome.verdict is Verdict.PERMANENT:
                rcpt.status = RcptStatus.BOUNCED
                rtype, action = RecordType.BOUNCED, "failed"
            else:
                decision = decide_retry(
                    retry_after=policy.retry_after,
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
                    queue=item.domain,
                    vmta=env.vmta,
                    job_id=env.job_id,
                    env_id=env.envid or "",
                    msg_id=env.msg_id,
                    size=env.size,
                )
            )
        self.accounting.write_many(records)
        msg.inflight -= 1
        last = msg.inflight == 0
        if last:
            self._drop_body(msg)  # later attempts reload it; keeps memory bounded
        self._spawn(self._persist(msg, item.recipients, last), f"persist-{env.queue_id}")

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
        """Every recipient is final: send the DSN (if any), then drop the spool file."""
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

    async def _send_dsn(self, env: Envelope, failed: list[Recipient], action: str) -> None:
        try:
            original = await self.spool.load_body(env.queue_id)
        except Exception:  # the notice still goes out, with what is known
            log.exception("cannot load %s for its DSN; returning headers only", env.queue_id)
            original = b""
        now = self.clock()
        dsn_id = self.new_queue_id()
        data = build_dsn(
            env,
            [
                FailedRecipient(
                    recipient=r,
                    status=status_from_text(
                        r.last_reply, "2.0.0" if action == "relayed" else "5.0.0"
                    ),
                    diagnostic=r.last_reply,
                    remote_mta=r.last_mta,
                )
                for r in failed
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
            "%s: DSN %s to <%s> for %d recipients", env.queue_id, dsn_id, env.sender, len(failed)
        )
        self.submit(dsn_env, data)

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
        for dest in self.destinations.values():
            while dest.idle:
                waiter = dest.idle.popleft()
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
